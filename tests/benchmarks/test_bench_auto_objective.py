"""benchmarks/bench_auto_objective.py: objectives side by side on a tiny Fashion-MNIST model (MAC costs)."""

import json

import keras
import pytest


@pytest.mark.slow
def test_variants_and_spearman_on_a_tiny_model(load_bench, tmp_path, capsys):
    pytest.importorskip("device_bench.datasets").load_dataset("fashion-mnist:calib")  # the data must be here
    keras.utils.set_random_seed(0)
    x = inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="c1")(x)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", name="c2")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    path = tmp_path / "m.keras"
    keras.Model(inp, keras.layers.Dense(10, activation="softmax", name="fc")(x)).save(path)
    out = tmp_path / "res.json"
    mod = load_bench("bench_auto_objective")
    assert mod.main(["--model", str(path), "--variants", "spatial,auto-kernel,auto-task", "--cost-target", "macs",
                     "--train-samples", "128", "--test-samples", "128", "--spearman", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "auto-task" in text and "per-option Spearman" in text
    data = json.loads(out.read_text())
    v = data["variants"]
    assert set(v) == {"spatial", "auto-kernel", "auto-task"}
    assert all(r["macs_ratio"] <= 0.5 + 1e-9 and 0 <= r["top1_after"] <= 100 for r in v.values())
    assert v["auto-task"]["objective"].startswith("task:") and v["auto-kernel"]["objective"].startswith("kernel")
    assert data["spearman"]["options"] == len(data["options"]) > 0
    assert -1 <= data["spearman"]["spearman_shift"] <= 1
