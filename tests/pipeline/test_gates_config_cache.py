"""The pieces of `run` that need no model: gate choice and messages, TOML settings, the stage cache."""

import argparse

import pytest

from edge_lowrank.pipeline import config, gates
from edge_lowrank.pipeline.cache import StageCache, stage_key


def variant(vid, top1, latency_us, size_bytes, arena=None, ref_top1=0.90, ref_latency=1000.0):
    return {"id": vid, "top1": top1, "host_median_us": latency_us, "size_bytes": size_bytes,
            "arena_bytes": arena, "accuracy_drop_pp": (ref_top1 - top1) * 100,
            "speedup_gate": ref_latency / latency_us, "error": None}


VARIANTS = [variant("baseline-float32", 0.90, 1000, 400_000), variant("baseline-int8", 0.899, 300, 110_000),
            variant("tucker2-int8", 0.885, 200, 60_000), variant("cp-int8", 0.80, 150, 50_000)]


def test_best_is_the_fastest_variant_meeting_every_gate():
    out = gates.evaluate(VARIANTS, {"max_accuracy_drop": 1.0})
    assert out.passed and out.best == "baseline-int8"
    out = gates.evaluate(VARIANTS, {"max_accuracy_drop": 2.0, "max_size_kb": 100})
    assert out.best == "tucker2-int8" and set(out.passing) == {"tucker2-int8"}
    assert gates.evaluate(VARIANTS, {}).best == "cp-int8"


def test_no_variant_names_the_closest_and_its_shortfall():
    out = gates.evaluate(VARIANTS, {"max_accuracy_drop": 2.0, "min_speedup": 6.0})
    assert not out.passed and out.best is None
    assert "the closest, tucker2-int8, misses --min-speedup 6 by 1 x (reaches 5 x)" in out.message
    out = gates.evaluate(VARIANTS, {"max_arena_kb": 64})
    assert "not measured" in out.message  # no arena figure is a miss, never a pass


def parse(argv):
    p = argparse.ArgumentParser()
    config.add_arguments(p)
    return config.from_args(p.parse_args(argv))


def test_toml_fills_what_flags_leave_and_flags_win(tmp_path):
    f = tmp_path / "ci.toml"
    f.write_text('[run]\nschemes = ["spatial", "cp"]\nmin-speedup = 2\nmax_size_kb = 300\nc-arrays = false\n')
    cfg = parse(["--config", str(f), "--min-speedup", "2.5"])
    assert cfg.scheme_list() == ("spatial", "cp") and cfg.min_speedup == 2.5 and cfg.max_size_kb == 300.0
    assert cfg.c_arrays is False and cfg.gates() == {"max_accuracy_drop": 1.0, "min_speedup": 2.5,
                                                      "max_size_kb": 300.0}
    assert parse(["--schemes", "all"]).scheme_list() == config.ALL_SCHEMES


def test_reestimate_setting():
    """BN re-estimation before fine-tuning is a `run` setting too (flag and TOML), validated in one line."""
    assert parse([]).reestimate == "affine" and parse(["--reestimate", "none"]).reestimate == "none"
    with pytest.raises(config.ConfigError, match="Expected affine, mean or none"):
        config.RunConfig(reestimate="bn").validate()


def test_finetune_recipe_settings(tmp_path):
    """Learning rate, schedule and augmentation of the distillation: flags and TOML, checked in one line;
    the help text renders (argparse %-formats it)."""
    p = argparse.ArgumentParser()
    config.add_arguments(p)
    assert "warmup-cosine" in p.format_help()
    cfg = parse([])
    assert (cfg.finetune_lr, cfg.finetune_schedule, cfg.finetune_augment) == (5e-4, "auto", "none")
    f = tmp_path / "ft.toml"
    f.write_text('[run]\nfinetune-lr = 1e-3\nfinetune-schedule = "warmup-cosine"\nfinetune-augment = "flip"\n')
    cfg = parse(["--config", str(f), "--finetune-augment", "flip+shift"])
    assert (cfg.finetune_lr, cfg.finetune_schedule, cfg.finetune_augment) == (1e-3, "warmup-cosine", "flip+shift")
    for bad, match in (({"finetune_schedule": "step"}, "finetune_schedule"), ({"finetune_lr": 0.0}, "finetune_lr"),
                       ({"finetune_augment": "rotate"}, "finetune_augment")):
        with pytest.raises(config.ConfigError, match=match):
            config.RunConfig(**bad).validate()


def test_auto_trial_setting_and_stage_key():
    """`--auto-trial N`: auto's whole choices judged by a distillation on N fine-tuning images; in the model
    stage's key only when a trial happens (fine-tuning on data), so other runs keep their cached stages."""
    import types

    from edge_lowrank.pipeline.stages import Pipeline

    assert parse([]).auto_trial == 5000 and parse(["--auto-trial", "0"]).auto_trial == 0
    with pytest.raises(config.ConfigError, match="auto_trial"):
        config.RunConfig(auto_trial=-1).validate()

    def policy(flags, train=True):
        pipe = Pipeline(parse(flags))
        pipe.inp = types.SimpleNamespace(train=object() if train else None)
        return pipe._policy_kwargs("auto")

    assert policy(["--finetune-epochs", "1"])["trial_samples"] == 5000
    assert policy(["--finetune-epochs", "1", "--auto-trial", "800"])["trial_samples"] == 800
    for flags, train in ((["--finetune-epochs", "1", "--auto-trial", "0"], True), (["--finetune-epochs", "0"], True),
                         (["--finetune-epochs", "1"], False)):
        assert "trial_samples" not in policy(flags, train)


@pytest.mark.parametrize("text, match", [
    ("rank = 0\n", "Expected a positive int"),
    ("target-mac-ratio = 1.5\n", r"Expected a float in \(0, 1\]"),
    ("schemes = 'tucker2,nope'\n", "Received: nope"),
    ("progress = 'yes'\n", "Expected true or false"),
    ("[run\n", "not valid TOML"),
])
def test_bad_toml_is_a_config_error(tmp_path, text, match):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(config.ConfigError, match=match):
        parse(["--config", str(f)])


def test_cache_reuses_only_matching_records_with_intact_files(tmp_path):
    cache = StageCache(tmp_path)
    art = tmp_path / "tflite" / "a.tflite"
    art.parent.mkdir()
    art.write_bytes(b"model bytes")
    key = stage_key({"model": "abc", "precision": "int8"})
    assert key == stage_key({"precision": "int8", "model": "abc"})
    cache.store("export:a", key, {"size": 11}, [art])
    assert cache.lookup("export:a", key) == {"size": 11}
    assert cache.lookup("export:a", stage_key({"model": "abc", "precision": "float32"})) is None
    art.write_bytes(b"changed")  # an artefact edited or truncated since: the stage must run again
    assert cache.lookup("export:a", key) is None
    art.unlink()
    assert cache.lookup("export:a", key) is None
