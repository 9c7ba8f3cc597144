"""benchmarks/bench_auto_trial.py: trials of two seeds on a tiny Fashion-MNIST model (MAC costs)."""

import json

import keras
import pytest


def test_trials_per_seed_on_a_tiny_model(load_bench, tmp_path, capsys):
    pytest.importorskip("device_bench.datasets").load_dataset("fashion-mnist:calib")  # the data must be here
    keras.utils.set_random_seed(0)
    x = inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="c1")(x)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="c3")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3, name="drop")(x)
    path = tmp_path / "m.keras"
    keras.Model(inp, keras.layers.Dense(10, activation="softmax", name="fc")(x)).save(path)
    out = tmp_path / "res.json"
    mod = load_bench("bench_auto_trial")
    assert mod.main(["--model", str(path), "--budgets", "2", "--samples", "200", "--seeds", "0,1",
                     "--train-samples", "400", "--cost-target", "macs", "--json", str(out)]) == 0
    assert "trial 200 images, seed 1" in capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [(r["samples"], r["seed"]) for r in rows] == [(200, 0), (200, 1)]
    for r in rows:
        assert len(r["after"]) >= 2 and r["chosen"] == min(r["after"], key=r["after"].get)
        assert set(r["after"]) <= set(r["before"])
    assert rows[0]["after"] != rows[1]["after"]  # the seed reaches the trials (order and dropout masks)
