"""Graphs with residual Adds, nested models, shared layers and BatchNorm; reload without edge_lowrank."""

import json
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edge_lowrank.rewrite import CompressionPolicy, compress  # noqa: E402

L = keras.layers


def _residual_model(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((12, 12, 3))
    x = L.Conv2D(16, 3, padding="same", name="stem")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU()(x)
    y = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="b1")(x)
    s = L.Conv2D(16, 1, strides=2, name="short")(x)
    x = L.Add()([y, s])
    inner = keras.Sequential([keras.Input((6, 6, 16)), L.Conv2D(24, 3, padding="same", name="ic"),
                              L.BatchNormalization(name="ic_bn"), L.ReLU()], name="inner")
    x = inner(x)
    x = L.GlobalAveragePooling2D()(x)
    shared = L.Dense(24, activation="relu", name="shared")
    x = shared(shared(x))
    out = L.Dense(10, activation="softmax", name="head")(x)
    model = keras.Model(inp, out, name="resnetish")
    rng = np.random.default_rng(seed)
    for lyr in (model.get_layer("stem_bn"), inner.get_layer("ic_bn")):  # non-trivial BN statistics
        c = lyr.gamma.shape[0]
        lyr.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(size=c) * 0.1, rng.normal(size=c) * 0.1,
                         rng.uniform(0.5, 2.0, c)])
    return model


@pytest.mark.slow
def test_residual_nested_shared_full_rank_parity_and_fresh_process_reload(tmp_path):
    model = _residual_model()
    x = np.random.default_rng(0).normal(size=(4, 12, 12, 3)).astype("float32")
    new, rep = compress(model, CompressionPolicy("channel", rank_fraction=1.0, rank_multiple=1,
                                                 skip_unprofitable=False))
    acts = {d.name: d.action for d in rep.layers}
    assert acts == {"stem": "factorized", "stem_bn": "folded", "b1": "factorized", "short": "factorized",
                    "inner/ic": "factorized", "inner/ic_bn": "folded", "shared": "factorized",
                    "head": "factorized"}
    ref = model.predict(x, verbose=0)
    np.testing.assert_allclose(new.predict(x, verbose=0), ref, rtol=1e-4, atol=1e-6)
    assert [t.shape for t in new.inputs] == [t.shape for t in model.inputs]
    assert new.name == model.name and new.get_layer("inner").get_layer("ic").name == "ic"
    # the shared Dense stays one block called twice (its weights are shared)
    assert sum(1 for lyr in new.layers if lyr.name == "shared") == 1
    path = tmp_path / "rewritten.keras"
    new.save(path)
    np.save(tmp_path / "x.npy", x)
    code = (
        "import os, sys, json, numpy as np\n"
        "os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n"
        "import keras\n"
        f"m = keras.models.load_model({str(path)!r}, safe_mode=True)\n"
        f"y = m.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0)\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, y)\n"
        "print(json.dumps({'edge_lowrank': any(k.startswith('edge_lowrank') for k in sys.modules)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "TF_ENABLE_ONEDNN_OPTS": "0",
                                            "PYTHONNOUSERSITE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"edge_lowrank": False}
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ref, rtol=1e-4, atol=1e-6)


def test_fold_batchnorm_off_keeps_bn_and_sequential_models_work():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((10, 10, 2)), L.Conv2D(8, 3, name="c"), L.BatchNormalization(name="bn"),
                              L.Flatten(), L.Dense(4, name="d")])
    x = np.random.default_rng(1).normal(size=(2, 10, 10, 2)).astype("float32")
    new, rep = compress(model, CompressionPolicy("spatial", rank_fraction=1.0, rank_multiple=1,
                                                 fold_batchnorm=False, skip_unprofitable=False))
    assert isinstance(new, keras.Sequential)
    assert type(new.get_layer("bn")).__name__ == "BatchNormalization"
    assert {d.name: d.action for d in rep.layers} == {"c": "factorized", "d": "kept"}
    np.testing.assert_allclose(new.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-4, atol=1e-6)


def test_separable_pointwise_and_budget():
    keras.utils.set_random_seed(2)
    inp = keras.Input((8, 8, 16))
    x = L.SeparableConv2D(64, 3, padding="same", depth_multiplier=2, name="sep")(inp)
    x = L.Conv2D(64, 3, padding="same", name="c")(x)
    model = keras.Model(inp, x)
    xin = np.random.default_rng(2).normal(size=(2, 8, 8, 16)).astype("float32")
    new, rep = compress(model, CompressionPolicy("weight-svd", rank_fraction=1.0, rank_multiple=1,
                                                 skip_unprofitable=False))
    assert [d.action for d in rep.layers] == ["factorized", "kept"]
    np.testing.assert_allclose(new.predict(xin, verbose=0), model.predict(xin, verbose=0), rtol=1e-4, atol=1e-5)
    _, rep = compress(model, CompressionPolicy("tucker2", target_mac_ratio=0.5))
    assert rep.macs_after <= 0.5 * rep.macs_before
    assert rep.macs_after >= 0.3 * rep.macs_before


def test_residual_nested_shared_parity_tucker2():
    model = _residual_model(3)
    x = np.random.default_rng(3).normal(size=(2, 12, 12, 3)).astype("float32")
    new, rep = compress(model, CompressionPolicy("tucker2", rank_fraction=1.0, rank_multiple=1,
                                                 skip_unprofitable=False))
    assert {d.name for d in rep.layers if d.action == "factorized"} == {"stem", "b1", "inner/ic"}
    assert "1x1 conv" in {d.name: d for d in rep.layers}["short"].reason
    np.testing.assert_allclose(new.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-4, atol=1e-6)
