"""The `edge-lowrank run` pipeline: stages cached by their inputs, a versioned report, plots, HTML and gates.

`stages.Pipeline(config).run()` does the work; `config` holds every setting (flags and TOML), `cache` the
resume records, `assemble` the report files, `gates` the CI budget, `report`/`plots`/`html` the renderings.
"""
