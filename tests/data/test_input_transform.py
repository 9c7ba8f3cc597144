"""The one input transform (device_bench/transform.py), the seeded per-class split, and the metadata they leave."""

import json

import numpy as np
import pytest

from device_bench.datasets import Dataset, split_dataset, split_indices
from device_bench.transform import InputTransform, from_settings, leading_preprocessing, resolve
from edge_lowrank.errors import DataError


@pytest.mark.parametrize("spec, scale, offset", [("0,255", 255.0, 0.0), ("-1,1", 2.0, -1.0), ("0,1", 1.0, 0.0)])
def test_range_maps_unit_images_onto_the_model_range(spec, scale, offset):
    t = from_settings(input_range=spec)
    assert (t.scale, t.offset, t.source) == (scale, offset, "user")
    lo, hi = (float(v) for v in spec.split(","))
    assert t.model_range == (lo, hi)
    np.testing.assert_allclose(t.apply(np.array([0.0, 0.5, 1.0], np.float32)), [lo, (lo + hi) / 2, hi])


def test_scale_and_offset_equal_the_range_that_states_the_same_map():
    assert from_settings(input_scale=2.0, input_offset=-1.0) == from_settings(input_range="-1,1")
    assert from_settings() is None  # nothing stated: the model decides (see resolve)
    assert from_settings(input_range="any").model_range is None


@pytest.mark.parametrize("kwargs, match", [
    ({"input_range": "0,255", "input_scale": 255.0}, "either --input-range or --input-scale"),
    ({"input_range": "255,0"}, "LOW must be below HIGH"),
    ({"input_range": "0-255"}, "Expected LOW,HIGH"),
    ({"input_range": "0,inf"}, "finite"),
    ({"input_scale": 0.0}, "non-zero"),
])
def test_bad_transforms_are_one_line(kwargs, match):
    with pytest.raises(DataError, match=match) as e:
        from_settings(**kwargs)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("spec", ["0,1", "0,255", "-1,1", "-0.5,2"])
def test_normalization_follows_tflite_metadata_convention_on_pixels(spec):
    """(pixel - mean) / std, the TFLite metadata convention, gives exactly image * scale + offset."""
    t = from_settings(input_range=spec)
    norm = t.normalization()
    pixels = np.arange(256, dtype=np.float64)
    via_metadata = (pixels - norm["mean"][0]) / norm["std"][0]
    np.testing.assert_allclose(via_metadata, t.apply(pixels / 255.0), rtol=1e-5, atol=1e-5)
    assert InputTransform().normalization()["std"] == [255.0]  # [0, 1] floats: mean 0, std 255
    assert from_settings(input_range="-1,1").normalization()["mean"] == [127.5]


def test_out_of_range_model_inputs_are_refused_with_what_to_do():
    t = InputTransform()
    t.check(np.array([0.0, 1.0]), "ok")
    with pytest.raises(DataError, match=r"spans \[0, 255\].*--input-range"):
        t.check(np.array([0.0, 255.0]), "Data x")
    InputTransform(checked=False).check(np.array([-7.0, 300.0]), "any range")


def test_a_leading_rescaling_or_normalization_is_honoured():
    keras = pytest.importorskip("keras")
    L = keras.layers

    def model(*pre):
        inp = keras.Input((4, 4, 1))
        x = inp
        for layer in pre:
            x = layer(x)
        return keras.Model(inp, L.Dense(2)(L.Flatten()(x)))

    pixels = model(L.Rescaling(1 / 255.0))
    t, note = resolve(None, pixels)
    assert (t.scale, t.offset, t.source) == (255.0, 0.0, "model") and "0..255 pixels" in note
    t, note = resolve(None, model(L.Rescaling(2.0, offset=-1.0)))  # takes [0, 1] images itself
    assert t.identity and "[0, 1] images" in note
    norm = L.Normalization()
    norm.adapt(np.random.default_rng(0).integers(0, 256, (32, 4, 4, 1)).astype("float32"))
    t, _ = resolve(None, model(norm))
    assert t.scale == 255.0
    stated = from_settings(input_range="-1,1")
    t, note = resolve(stated, pixels)
    assert t is stated and "stated transform" in note  # the user's statement wins, with a note
    assert resolve(None, model()) == (InputTransform(), None)
    assert [type(x).__name__ for x in leading_preprocessing(pixels)] == ["Rescaling"]
    nested = keras.Sequential([keras.Input((4, 4, 1)), pixels, L.Dense(3)])  # preprocessing inside a nested model
    assert resolve(None, nested)[0].scale == 255.0


def test_split_is_per_class_seeded_disjoint_and_complete():
    y = np.repeat(np.arange(5), [50, 20, 10, 3, 1])
    train, test = split_indices(len(y), y, 0.2, seed=0)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(y)
    per_class = [int(np.sum(y[test] == c)) for c in range(5)]
    assert per_class == [10, 4, 2, 1, 0]  # round(0.2 n), at least one when a class has two, never all
    again = split_indices(len(y), y, 0.2, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((train, test), again))
    other = split_indices(len(y), y, 0.2, seed=1)[1]
    assert not np.array_equal(test, other)
    ds = Dataset(np.zeros((84, 2, 2, 1), np.float32), None, "u")  # unlabelled: one group
    tr, te = split_dataset(ds, 0.25, seed=3)
    assert (len(tr), len(te)) == (63, 21) and te.y is None and "test part" in te.name
    with pytest.raises(DataError, match="test_fraction"):
        split_indices(10, None, 1.0, 0)
    with pytest.raises(DataError, match="Cannot split"):
        split_indices(1, None, 0.2, 0)


def test_metadata_records_the_normalization_and_inspect_shows_it(tmp_path, capsys, repo_root):
    pytest.importorskip("ai_edge_litert")
    from converters.metadata import embed_metadata, normalization_metadata, read_metadata, read_normalization
    from edge_lowrank.cli.main import main
    flat = (repo_root / "tests" / "fixtures" / "split_dynamic_batch.tflite").read_bytes()
    t = from_settings(input_range="-1,1")
    tagged = embed_metadata(flat, {"variant": "x", **normalization_metadata(t)})
    assert read_normalization(tagged) == t.normalization()
    assert read_metadata(tagged)["input_transform"]["scale"] == 2.0
    assert read_normalization(flat) is None
    path = tmp_path / "m.tflite"
    path.write_bytes(tagged)
    assert main(["inspect", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["metadata"]["input_normalization"]
    assert shown["mean"] == [127.5] and shown["std"] == [127.5]
    assert main(["inspect", str(path)]) == 0
    assert "input: model_input = (pixel - 127.5) / 127.5, pixels in 0..255" in capsys.readouterr().out
    assert InputTransform().normalization()["mean"] == [0.0] and str(InputTransform().normalization()["mean"][0]) == "0.0"
    from device_bench.transform import recorded

    assert recorded(path) == InputTransform(scale=2.0, offset=-1.0, source="metadata")


def test_toml_and_flags_state_the_same_transform(tmp_path):
    import argparse

    from edge_lowrank.pipeline.config import ConfigError, add_arguments, from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    toml = tmp_path / "c.toml"
    toml.write_text("[run]\ninput-range = [0, 255]\ntest-fraction = 0.3\n")
    cfg = from_args(parser.parse_args(["--config", str(toml)]))
    assert cfg.input_transform() == from_settings(input_range="0,255") and cfg.test_fraction == 0.3
    cfg = from_args(parser.parse_args(["--input-scale", "255"]))
    assert cfg.input_transform() == from_settings(input_range="0,255")
    with pytest.raises(ConfigError, match="either --input-range"):
        from_args(parser.parse_args(["--config", str(toml), "--input-scale", "2"]))
    with pytest.raises(ConfigError, match="test_fraction"):
        from_args(parser.parse_args(["--test-fraction", "1"]))
