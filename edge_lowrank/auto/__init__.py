"""`auto`: a scheme and ranks per layer, chosen on measured cost per op shape (see `edge_lowrank.auto.plan`).

candidates.py (numpy): the options of a layer and their kernel errors. select.py (numpy): the budgeted choice.
costs.py: the cached cost table (micro models converted by `converters`, timed by `device_bench.costs`).
sensitivity.py: options priced by the model's output shift on calibration data. thin_units.py: thinnable
producer/consumer pairs (`output-channels`, with calibration data) as units of the choice.
plan.py: ties them to `edge_lowrank.rewrite.compress` (`CompressionPolicy(scheme="auto", ...)`).
"""
