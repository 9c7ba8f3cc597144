"""Full-rank rewrites reproduce the original layers; counts match what Keras holds."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edge_lowrank.profile import profile_model  # noqa: E402
from edge_lowrank.rewrite import CompressionPolicy, compress  # noqa: E402

L = keras.layers
CONVS = {  # name: Conv2D kwargs; odd input size so 'same' with stride 2 pads unevenly
    "s1_same_relu": dict(kernel_size=3, padding="same", activation="relu"),
    "s2_same_nobias": dict(kernel_size=3, strides=2, padding="same", use_bias=False),
    "s2_valid": dict(kernel_size=3, strides=2, padding="valid"),
    "dil2_same": dict(kernel_size=3, dilation_rate=2, padding="same"),
    "even_s2_same": dict(kernel_size=(2, 3), strides=2, padding="same"),
    "s21_valid": dict(kernel_size=3, strides=(2, 1), padding="valid"),
    "pw_s2": dict(kernel_size=1, strides=2, padding="same"),
}


def _branchy_model(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((13, 13, 4))
    outs = [L.Conv2D(6, name=n, bias_initializer="random_normal", **kw)(inp) for n, kw in CONVS.items()]
    flat = L.Flatten()(inp)
    outs.append(L.Dense(5, activation="tanh", bias_initializer="random_normal", name="dense")(flat))
    return keras.Model(inp, outs)


FULL = {"cp": dict(rank=36)}  # cp's full rank is the CP-rank bound k_h*k_w*min(c_in, c_out)


@pytest.mark.parametrize("scheme", ["spatial", "channel", "tucker2", "weight-svd", "output", "cp",
                                    "tucker2-spatial"])
def test_full_rank_reproduces_every_layer(scheme):
    model = _branchy_model()
    x = np.random.default_rng(0).normal(size=(3, 13, 13, 4)).astype("float32")
    calib = np.random.default_rng(1).normal(size=(64, 13, 13, 4)).astype("float32")
    rule = FULL.get(scheme, dict(rank_fraction=1.0))
    new, rep = compress(model, CompressionPolicy(scheme, rank_multiple=1, skip_unprofitable=False,
                                                 calib_data=calib, **rule))
    done = {d.name for d in rep.layers if d.action == "factorized"}
    expect = {"spatial": 6, "channel": 8, "tucker2": 6, "weight-svd": 2, "output": 8, "cp": 5,
              "tucker2-spatial": 6}[scheme]
    assert len(done) == expect, rep.render()
    for a, b in zip(model.predict(x, verbose=0), new.predict(x, verbose=0)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=2e-5)
    kinds = {type(lyr).__name__ for _, lyr in _leaves(new)}
    assert kinds <= {"InputLayer", "Conv2D", "DepthwiseConv2D", "Dense", "Flatten", "ZeroPadding2D"}


def _leaves(model, prefix=""):
    for lyr in model.layers:
        if isinstance(lyr, keras.Model):
            yield from _leaves(lyr, prefix + lyr.name + "/")
        else:
            yield prefix + lyr.name, lyr


@pytest.mark.parametrize("scheme", ["spatial", "tucker2", "cp", "tucker2-spatial"])
def test_counts_match_the_keras_model(scheme):
    model = _branchy_model(1)
    new, rep = compress(model, CompressionPolicy(scheme, rank=4, rank_multiple=1))
    prof = profile_model(new)
    assert (rep.params_after, rep.macs_after) == (prof.params, prof.macs)
    for d in rep.layers:
        if d.action != "factorized":
            continue
        rows = [r for r in prof.layers if r.name.startswith(d.name + "/")]
        assert rows, d.name
        assert sum(r.params for r in rows) == d.params_after, d.name
        assert sum(r.macs for r in rows) == d.macs_after, d.name
        assert d.params_after < d.params_before and d.macs_after < d.macs_before
    assert rep.changed and rep.macs_after < rep.macs_before


def test_error_never_grows_with_rank():
    model = _branchy_model(2)
    errs = []
    for r in (1, 2, 4, 6):
        _, rep = compress(model, CompressionPolicy("tucker2", rank=r, rank_multiple=1, skip_unprofitable=False,
                                                   layers=("s1_same_relu",)))
        (row,) = [d for d in rep.layers if d.action == "factorized"]
        errs.append(row.rel_error)
    assert all(b <= a + 1e-7 for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 1e-5


def test_input_model_is_not_modified():
    model = _branchy_model(3)
    before = [w.copy() for w in model.get_weights()]
    names = [lyr.name for lyr in model.layers]
    compress(model, CompressionPolicy("channel", rank=2, rank_multiple=1))
    assert [lyr.name for lyr in model.layers] == names
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
