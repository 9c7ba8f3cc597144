"""Scheme `output-channels`: channel selection and least-squares refit (numpy), and the thinned Keras models
(inverted residuals, residual Adds, Sequential and nested models): exactness at full width, MAC budgets,
stock layers only, reload, refit vs naive dropping on held-out data, int8 in one XNNPACK partition, TFLM."""

import itertools

import numpy as np
import pytest

from edge_lowrank.errors import DataError, ModelError
from edge_lowrank.factorize import channel_select as CS
from edge_lowrank.rank.select import RankError

keras = pytest.importorskip("keras")

from edge_lowrank.profile import profile_model  # noqa: E402
from edge_lowrank.rewrite import CompressionPolicy, compress  # noqa: E402
from edge_lowrank.rewrite.thin import thin  # noqa: E402

L = keras.layers
STOCK = {"InputLayer", "Conv2D", "DepthwiseConv2D", "BatchNormalization", "ReLU", "Add", "Dense",
         "GlobalAveragePooling2D", "Sequential", "Functional", "Activation"}


# ------------------------------------------------------------------------------------------ numpy only


def _redundant_data(rng, mix, n=4000):
    """Inputs whose channels are mixtures of a few sources (plus a little noise): a few channels carry all."""
    x = rng.normal(size=(n, len(mix))) @ mix + 0.01 * rng.normal(size=(n, mix.shape[1]))
    return np.maximum(x, 0) + 0.1 * x  # leaky, so not exactly linear


def test_refit_reproduces_and_beats_naive_on_held_out_rows():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(12, 7)), rng.normal(size=7)
    mix = rng.normal(size=(5, 12))
    fit, held = _redundant_data(rng, mix), _redundant_data(rng, mix)
    a, n = CS.augmented_moment(fit)
    a /= n
    ah, nh = CS.augmented_moment(held)
    ah /= nh
    path = CS.eliminate(a, w, b)
    assert sorted(path.order.tolist()) == list(range(12))
    assert path.errors[12] == 0 and path.errors[0] == 1 and np.all(np.diff(path.errors[1:]) <= 1e-9)
    k, nb, err = CS.refit(a, w, b, np.arange(12))
    np.testing.assert_array_equal(k, w)  # full width: the original layer
    np.testing.assert_array_equal(nb, b)
    assert err == 0.0
    keep = path.keep(6)
    k, nb, err = CS.refit(a, w, b, keep)
    nk, nnb = CS.naive(w, b, keep)
    refit_held, naive_held = CS.output_error(ah, w, b, k, nb, keep), CS.output_error(ah, w, b, nk, nnb, keep)
    assert refit_held < 0.7 * naive_held
    # the refit is the least-squares fit of the original outputs from the kept channels (and a bias)
    x1 = np.c_[np.ones(len(fit)), fit[:, keep]]
    sol = np.linalg.lstsq(x1, fit @ w + b, rcond=None)[0]
    np.testing.assert_allclose(k, sol[1:], atol=0.05)
    # greedy elimination lands within 10 % of the best of all 924 subsets of 6, and beats a random one
    best = min(CS.refit(a, w, b, np.array(s))[2] for s in itertools.combinations(range(12), 6))
    assert err <= 1.1 * best
    rand = np.sort(rng.choice(12, 6, replace=False))
    assert err <= CS.refit(a, w, b, rand)[2] + 1e-9
    assert abs(path.errors[6] - err) < 0.05  # the path's error estimate at that width


def test_wide_consumers_eliminate_in_blocks_close_to_the_exact_greedy_path():
    """Above 256 channels alive several are removed per step (VGG-16's 4,096-wide classifier took 20+ min one
    at a time): the refit error at the widths a budget picks stays within a few percent of the exact greedy path's,
    the path's own estimate stays close to the refit it predicts, and `stop_width` gives the same channels."""
    rng = np.random.default_rng(5)
    c, n_out = 640, 24
    mix = rng.normal(size=(40, c))
    fit = _redundant_data(rng, mix, 6000)
    w, b = rng.normal(size=(c, n_out)), rng.normal(size=n_out)
    a, n = CS.augmented_moment(fit)
    a /= n
    exact = CS.eliminate(a, w, b, chunk_divisor=0)
    blocked = CS.eliminate(a, w, b)
    assert sorted(blocked.order.tolist()) == list(range(c))
    assert np.all(np.diff(blocked.errors[1:]) <= 1e-9) and blocked.errors[c] == 0
    for width in (320, 256, 128):
        e_exact = CS.refit(a, w, b, exact.keep(width))[2]
        e_block = CS.refit(a, w, b, blocked.keep(width))[2]
        assert e_block <= 1.05 * e_exact + 1e-3, (width, e_block, e_exact)
        assert abs(blocked.errors[width] - e_block) < 0.05 * max(e_block, 0.1)
    part = CS.eliminate(a, w, b, stop_width=300)  # stops inside a blocked step
    np.testing.assert_array_equal(part.keep(300), blocked.keep(300))
    np.testing.assert_array_equal(part.keep(400), blocked.keep(400))
    assert np.isnan(part.errors[200]) and abs(part.errors[300] - blocked.errors[300]) < 1e-9


def test_patches_match_a_keras_conv():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 9, 8, 3)).astype(np.float32)
    for strides, padding, dil in [((1, 1), "same", (1, 1)), ((2, 2), "same", (1, 1)), ((2, 1), "valid", (1, 1)),
                                  ((1, 1), "same", (2, 2))]:
        conv = L.Conv2D(4, (3, 2), strides=strides, padding=padding, dilation_rate=dil, use_bias=False)
        y = np.asarray(conv(x)).reshape(-1, 4)
        p = CS.patches(x, (3, 2), strides, padding, dil)
        np.testing.assert_allclose(p @ conv.kernel.numpy().reshape(-1, 4), y, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------ Keras models


def _randomize_bn(m, seed=0):
    rng = np.random.default_rng(seed)
    for layer in m.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.3, n), rng.normal(0, 0.3, n),
                               rng.uniform(0.5, 2, n)])
    return m


def inverted_residual_model():
    """MobileNetV2-style: 1x1 expand -> BN -> ReLU6 -> depthwise -> BN -> ReLU6 -> 1x1 project -> BN (+ Add)."""
    keras.utils.set_random_seed(0)
    i = keras.Input((16, 16, 3), batch_size=1)
    x = L.ReLU(6.0)(L.BatchNormalization(name="stem_bn")(L.Conv2D(16, 3, padding="same", use_bias=False,
                                                                  name="stem")(i)))
    for b, (c, s) in enumerate([(16, 1), (24, 2), (24, 1)]):
        y = L.Conv2D(x.shape[-1] * 4, 1, use_bias=False, name=f"b{b}_expand")(x)
        y = L.ReLU(6.0)(L.BatchNormalization(name=f"b{b}_expand_bn")(y))
        y = L.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False, name=f"b{b}_dw")(y)
        y = L.ReLU(6.0)(L.BatchNormalization(name=f"b{b}_dw_bn")(y))
        y = L.BatchNormalization(name=f"b{b}_project_bn")(L.Conv2D(c, 1, use_bias=False, name=f"b{b}_project")(y))
        x = L.Add()([x, y]) if s == 1 and x.shape[-1] == c else y
    x = L.GlobalAveragePooling2D()(L.ReLU()(L.Conv2D(64, 1, name="head")(x)))
    return _randomize_bn(keras.Model(i, L.Dense(10, name="logits")(x)))


def resnet_model():
    """Basic blocks: 3x3 conv-BN-ReLU -> 3x3 conv-BN, Add with the (1x1 strided) shortcut."""
    keras.utils.set_random_seed(1)
    i = keras.Input((16, 16, 3), batch_size=1)
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(i)))
    for s, (c, st) in enumerate([(16, 1), (32, 2)]):
        sc = x if st == 1 else L.Conv2D(c, 1, strides=st, use_bias=False, name=f"s{s}_short")(x)
        y = L.ReLU()(L.BatchNormalization(name=f"s{s}_bn1")(
            L.Conv2D(c, 3, strides=st, padding="same", use_bias=False, name=f"s{s}_conv1")(x)))
        y = L.BatchNormalization(name=f"s{s}_bn2")(L.Conv2D(c, 3, padding="same", use_bias=False,
                                                            name=f"s{s}_conv2")(y))
        x = L.ReLU()(L.Add(name=f"s{s}_add")([sc, y]))
    x = L.GlobalAveragePooling2D()(x)
    return _randomize_bn(keras.Model(i, L.Dense(10, name="logits")(x)))


def _data(n, seed, shape=(16, 16, 3)):
    return np.random.default_rng(seed).uniform(-1, 1, (n,) + shape).astype(np.float32)


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def _filters(m):
    return {layer.name: layer.kernel.shape[-1] for layer in m.layers if type(layer) in (L.Conv2D, L.Dense)}


@pytest.mark.parametrize("build", [inverted_residual_model, resnet_model])
def test_full_width_reproduces_outputs(build):
    m, x = build(), _data(48, 0)
    new, rep = compress(m, CompressionPolicy("output-channels", rank_fraction=1.0, calib_data=x,
                                             skip_unprofitable=False))
    assert rep.changed and _rel(new.predict(x, verbose=0), m.predict(x, verbose=0)) <= 1e-5


def _consumer_error(m, new, name, x):
    """Relative error of layer `name`'s output (the BN after a consumer: where a bias shift lands)."""
    ref = keras.Model(m.inputs, m.get_layer(name).output).predict(x, verbose=0)
    got = keras.Model(new.inputs, new.get_layer(name).output).predict(x, verbose=0)
    return _rel(got, ref)


@pytest.mark.parametrize("build, consumer_bn, tied", [
    (inverted_residual_model, "b0_project_bn", ("b0_project", "stem")),
    (resnet_model, "s1_bn2", ("s0_conv2", "s1_conv2", "stem", "s1_short")),
])
def test_half_macs_thinner_stock_reloadable_and_refit_beats_naive(build, consumer_bn, tied, tmp_path):
    m = build()
    calib, held = _data(128, 0), _data(64, 1)
    policy = CompressionPolicy("output-channels", target_mac_ratio=0.5, calib_data=calib)
    new, rep = compress(m, policy)
    assert rep.macs_after <= 0.5 * rep.macs_before and rep.macs_after >= 0.4 * rep.macs_before
    assert profile_model(new).macs == rep.macs_after
    before, after = _filters(m), _filters(new)
    assert any(after[k] < before[k] for k in before) and all(after[k] <= before[k] for k in before)
    assert {type(layer).__name__ for layer in new.layers} <= STOCK
    rows = {d.name: d for d in rep.layers}
    for name in tied:  # channels tied across an Add (or several consumers): kept, with the reason
        assert after[name] == before[name]
        if rows[name].action == "kept":
            assert "tied across branches" in rows[name].reason
        else:
            assert "output channels kept" in rows[name].reason and "tied across branches" in rows[name].reason
    path = tmp_path / "thin.keras"
    new.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_allclose(again.predict(held, verbose=0), new.predict(held, verbose=0), rtol=1e-5, atol=1e-6)
    naive, _ = thin(m, policy, refit=False)
    assert _filters(naive) == after  # same channels, only the consumer's weights differ
    e_refit, e_naive = _consumer_error(m, new, consumer_bn, held), _consumer_error(m, naive, consumer_bn, held)
    assert e_refit < 0.7 * e_naive
    assert _rel(new.predict(held, verbose=0), m.predict(held, verbose=0)) < \
        _rel(naive.predict(held, verbose=0), m.predict(held, verbose=0))


def test_sequential_and_nested_models():
    keras.utils.set_random_seed(2)
    seq = keras.Sequential([keras.Input((12, 12, 2)), L.Conv2D(32, 3, activation="relu", name="c1"),
                            L.BatchNormalization(name="bn1"), L.Conv2D(24, 3, name="c2"), L.ReLU(),
                            L.GlobalAveragePooling2D(), L.Dense(16, activation="relu", name="d1"),
                            L.Dense(5, name="d2")], name="inner")
    i = keras.Input((12, 12, 2))
    outer = keras.Model(i, L.Activation("softmax")(seq(i)))
    x = _data(96, 3, (12, 12, 2))
    for m in (seq, outer):
        full, _ = compress(m, CompressionPolicy("output-channels", rank_fraction=1.0, calib_data=x,
                                                skip_unprofitable=False))
        assert _rel(full.predict(x, verbose=0), m.predict(x, verbose=0)) <= 1e-5
        new, rep = compress(m, CompressionPolicy("output-channels", rank_fraction=0.5, calib_data=x))
        inner = new if m is seq else new.get_layer("inner")
        assert _filters(inner) == {"c1": 16, "c2": 16, "d1": 8, "d2": 5}
        names = {d.name for d in rep.layers if d.action == "factorized"}
        assert ("c1" if m is seq else "inner/c1") in names
        assert new.predict(x[:2], verbose=0).shape == (2, 5)


def test_explicit_widths_and_energy():
    m, x = inverted_residual_model(), _data(64, 0)
    new, rep = compress(m, CompressionPolicy("output-channels", layer_ranks={"b0_expand": 8, "head": 40},
                                             rank=32, calib_data=x))
    f = _filters(new)
    assert f["b0_expand"] == 8 and f["head"] == 40 and f["b1_expand"] == 32 and f["b2_expand"] == 32
    low, _ = compress(m, CompressionPolicy("output-channels", energy=0.5, calib_data=x))
    high, _ = compress(m, CompressionPolicy("output-channels", energy=0.999, calib_data=x))
    assert profile_model(low).macs <= profile_model(high).macs


@pytest.mark.parametrize("kwargs, error, match", [
    ({"rank": 8}, DataError, "calibration"),
    ({"vbmf": True, "calib_data": True}, RankError, "VBMF"),
    ({"layer_ranks": {"nope": 8}, "calib_data": True}, ModelError, "nope"),
    ({"layer_ranks": {"b0_expand": 65}, "calib_data": True}, ModelError, "at most 64"),
    ({"rank": 4000, "calib_data": True}, ModelError, "channel count"),
])
def test_bad_input_one_clear_error(kwargs, error, match):
    m = inverted_residual_model()
    if kwargs.get("calib_data") is True:
        kwargs["calib_data"] = _data(8, 0)
    with pytest.raises(error, match=match) as e:
        compress(m, CompressionPolicy("output-channels", **kwargs))
    assert len(str(e.value).splitlines()) == 1


def test_calib_data_that_does_not_fit():
    with pytest.raises(DataError, match="does not fit"):
        compress(inverted_residual_model(), CompressionPolicy("output-channels", rank=8,
                                                              calib_data=_data(4, 0, (8, 8, 3))))


def test_int8_one_xnnpack_partition_and_tflm():
    from converters import to_tflite
    from converters.audit import audit_ops

    m, x = inverted_residual_model(), _data(64, 0)
    new, rep = compress(m, CompressionPolicy("output-channels", target_mac_ratio=0.5, calib_data=x))
    flat = to_tflite(new, precision="int8", representative_data=x[:16])
    audit = audit_ops(flat)
    assert audit.xnnpack_partitions == 1 and not audit.unexplained_undelegated
    tflm = pytest.importorskip("tflite_micro")
    assert tflm is not None
    from converters.tflm import tflm_check

    check = tflm_check(flat)
    assert check.arena_size > 0 and check.max_abs_diff_vs_litert <= 2


def test_refit_of_a_3x3_consumer_matches_least_squares():
    """Rows of a k x k consumer are position-major like its kernel: the refit must be the lstsq solution."""
    rng = np.random.default_rng(3)
    x = np.maximum(rng.normal(size=(6, 7, 7, 5)), 0).astype(np.float32)
    w, b = rng.normal(size=(3, 3, 5, 4)), rng.normal(size=4)
    p = CS.patches(x, (3, 3), (1, 1), "same")
    a, n = CS.augmented_moment(p)
    keep = np.array([0, 2, 3])
    k, nb, err = CS.refit(a / n, w, b, keep, ridge=0.0)
    sub = CS.patches(x[..., keep], (3, 3), (1, 1), "same")
    sol = np.linalg.lstsq(np.c_[np.ones(len(sub)), sub], p @ w.reshape(-1, 4) + b, rcond=None)[0]
    np.testing.assert_allclose(k.reshape(-1, 4), sol[1:], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(nb, sol[0], rtol=1e-3, atol=1e-3)


def test_cli_takes_the_scheme_and_needs_calibration_data(tmp_path, capsys):
    from edge_lowrank.cli.main import main

    path = tmp_path / "m.keras"
    inverted_residual_model().save(path)
    code = main(["compress", str(path), "--scheme", "output-channels", "--target-mac-ratio", "0.5"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "calibration" in err and "output-channels" in err


def test_asymmetric_refit_absorbs_upstream_error():
    """When earlier cuts changed the consumer's inputs, the asymmetric fit (thinned inputs -> original outputs)
    reproduces the original outputs better than the symmetric one applied to those inputs."""
    rng = np.random.default_rng(4)
    w, b = rng.normal(size=(12, 7)), rng.normal(size=7)
    mix = rng.normal(size=(5, 12))
    distort = np.eye(12) + 0.3 * rng.normal(size=(12, 12))  # what upstream cuts did to the inputs

    def pair(n):
        xo = _redundant_data(rng, mix, n)
        return xo, xo @ distort + 0.2

    fit_o, fit_t = pair(4000)
    held_o, held_t = pair(4000)
    norm = lambda a: a[0] / a[1]  # noqa: E731
    a_oo, a_tt = norm(CS.augmented_moment(fit_o)), norm(CS.augmented_moment(fit_t))
    a_to = CS.cross_moment(fit_t, fit_o) / len(fit_t)
    path = CS.eliminate(a_tt, w, b, cross=a_to, orig=a_oo)
    keep = path.keep(8)
    sym_k, sym_b, _ = CS.refit(a_oo, w, b, keep)
    asy_k, asy_b, asy_err = CS.refit(a_tt, w, b, keep, cross=a_to, orig=a_oo)
    y = held_o @ w + b
    err = lambda k, bb: _rel(held_t[:, keep] @ k + bb, y)  # noqa: E731
    assert err(asy_k, asy_b) < 0.5 * err(sym_k, sym_b)
    # full width: the asymmetric refit is the least-squares map from the distorted inputs
    k, bb, _ = CS.refit(a_tt, w, b, np.arange(12), ridge=0.0, cross=a_to, orig=a_oo)
    sol = np.linalg.lstsq(np.c_[np.ones(len(fit_t)), fit_t], fit_o @ w + b, rcond=None)[0]
    np.testing.assert_allclose(k, sol[1:], atol=2e-2)  # float32 moments of nearly collinear channels
    assert 0 <= asy_err < 1


def test_cli_writes_the_thinned_model(tmp_path, capsys):
    import json

    from edge_lowrank.cli.main import main

    path, data, out, rep = tmp_path / "m.keras", tmp_path / "calib.npz", tmp_path / "thin.keras", tmp_path / "r.json"
    m = inverted_residual_model()
    m.save(path)
    np.savez(data, x=(_data(64, 0) + 1) / 2)  # images in [0, 1], as the CLI expects by default
    code = main(["compress", str(path), "--scheme", "output-channels", "--calib-data", str(data),
                 "--target-mac-ratio", "0.5", "-o", str(out), "--json", str(rep), "-q"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert "b0_expand" in cap.out and "tied across branches" in cap.out
    rows = {r["name"]: r for r in json.loads(rep.read_text())["layers"]}
    assert rows["b0_expand"]["action"] == "factorized" and rows["b0_expand"]["ranks"][0] < 64
    assert rows["stem"]["action"] == "kept"
    again = keras.saving.load_model(out)
    assert _filters(again)["b0_expand"] == rows["b0_expand"]["ranks"][0]
