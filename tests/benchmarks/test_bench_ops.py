"""benchmarks/bench_ops.py: a per-op profile that adds up, on a tiny model and a private cost table."""

import json

import keras
import pytest


@pytest.mark.slow
def test_profile_lists_every_mac_layer_and_the_whole_model(load_bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGE_LOWRANK_CACHE", str(tmp_path / "cache"))
    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.Input((12, 12, 16)), keras.layers.Conv2D(8, (3, 1), padding="same", name="v"),
                              keras.layers.Conv2D(16, (1, 3), padding="same", name="h")], name="block")
    x = inp = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="stem")(x)
    x = inner(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(4, name="fc")(x)
    path = tmp_path / "m.keras"
    keras.Model(inp, out).save(path)
    mod = load_bench("bench_ops")
    assert mod.main([str(path), "--json", str(tmp_path / "ops.json")]) == 0
    text = capsys.readouterr().out
    assert "block/v" in text and "whole model" in text and "GMAC/s" in text
    data = json.loads((tmp_path / "ops.json").read_text())
    (res,) = data["models"]
    assert [r["layer"] for r in res["layers"]] == ["stem", "block/v", "block/h", "fc"]
    assert all(r["int8_us"] > 0 and r["float32_us"] > 0 for r in res["layers"])
    assert sum(r["macs"] for r in res["layers"]) == res["macs"]
    assert res["whole_us"]["int8"] > 0 and data["peaks"]["int8"][0] > 0


def test_bad_model_path_is_one_line_exit_2(load_bench, capsys):
    assert load_bench("bench_ops").main(["nope.keras"]) == 2
    assert "nope.keras" in capsys.readouterr().err
