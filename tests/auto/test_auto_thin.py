"""auto with output-channels: thinnable producer/consumer pairs as units of the choice (auto/thin_units.py)."""

import warnings

import keras
import numpy as np
import pytest

from edge_lowrank.rewrite import CompressionPolicy, compress

L = keras.layers


def _model():
    """Two inverted residual blocks (1x1 expand -> BN -> ReLU6 -> depthwise -> BN -> ReLU6 -> 1x1 project -> BN,
    Add): the expand/project pairs can be thinned; the depthwise convs cannot be factorized."""
    keras.utils.set_random_seed(0)
    x = inp = keras.Input((16, 16, 3), batch_size=1)
    x = L.ReLU(6.0)(L.Conv2D(16, 3, padding="same", name="stem")(x))
    for b in range(2):
        y = L.ReLU(6.0)(L.BatchNormalization(name=f"b{b}_expand_bn")(L.Conv2D(96, 1, use_bias=False,
                                                                             name=f"b{b}_expand")(x)))
        y = L.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"b{b}_dw")(y)
        y = L.ReLU(6.0)(L.BatchNormalization(name=f"b{b}_dw_bn")(y))
        y = L.BatchNormalization(name=f"b{b}_project_bn")(L.Conv2D(16, 1, use_bias=False, name=f"b{b}_project")(y))
        x = L.Add()([x, y])
    out = L.Dense(10, activation="softmax", name="fc")(L.GlobalAveragePooling2D()(x))
    m = keras.Model(inp, out)
    rng = np.random.default_rng(0)  # BatchNorm statistics away from the identity
    for layer in m.layers:
        if isinstance(layer, L.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, c), rng.normal(0, 0.3, c), rng.normal(0, 0.3, c),
                               rng.uniform(0.2, 3, c)])
    return m


def _calib(n=32):
    return np.random.default_rng(1).uniform(-1, 1, (n, 16, 16, 3)).astype(np.float32)


@pytest.mark.slow
def test_auto_thins_pairs_at_a_mac_budget_measured_on_the_host(tmp_path, monkeypatch):
    from converters import to_tflite
    from converters.audit import audit_ops

    monkeypatch.setenv("EDGE_LOWRANK_CACHE", str(tmp_path / "cache"))
    m, x = _model(), _calib()
    new, rep = compress(m, CompressionPolicy("auto", target_mac_ratio=0.5, calib_data=x))
    a = rep.auto
    assert rep.macs_after <= 0.5 * rep.macs_before
    # 1x1 factors of these narrow convs are slower than a thinner pair: auto thins, per pair it says so
    assert a["thinned"] and "output-channels offered on 2" in a["thinning"]
    assert "output-channels" in a["single_schemes"]["single_scheme_cost"]  # itself a contender
    for name, t in a["thinned"].items():
        d = a["layers"][name]
        assert d["chosen"] == f"output-channels {t['width']}" and d["cost_after"] < d["cost_before"]
        assert new.get_layer(name).kernel.shape[-1] == t["width"] < t["channels"]
        assert new.get_layer(t["consumer"]).kernel.shape[-2] == t["width"]
        assert new.get_layer(name.replace("expand", "dw")).kernel.shape[-2] == t["width"]
    # the report, per layer: the thinned producer, its depthwise conv and the refit consumer
    rows = {d.name: d for d in rep.layers}
    for name, t in a["thinned"].items():
        for layer in (name, name.replace("expand", "dw"), t["consumer"]):
            assert rows[layer].scheme == "output-channels" and rows[layer].ranks == (t["width"],)
    assert rep.render().count("output-channels") >= 6 and "auto: output-channels offered" in rep.render()
    # the predicted cost is at most the fastest single scheme's that meets the budget
    assert a["predicted_cost"] <= a["single_schemes"]["cost_to_beat"] * (1 + 1e-9)
    # stock layers: reloads with plain Keras; int8 in one XNNPACK partition
    path = tmp_path / "thin.keras"
    new.save(path)
    again = keras.models.load_model(path)
    np.testing.assert_allclose(again.predict(x[:4], verbose=0), new.predict(x[:4], verbose=0), atol=1e-6)
    audit = audit_ops(to_tflite(new, precision="int8", representative_data=x[:16]))
    assert audit.xnnpack_partitions == 1 and not audit.unexplained_undelegated


def test_without_calibration_data_output_channels_is_not_offered():
    m = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, rep = compress(m, CompressionPolicy("auto", target_mac_ratio=0.5, cost_target="macs"))
    assert "not offered" in rep.auto["thinning"] and "calibration data" in rep.auto["thinning"]
    assert not rep.auto["thinned"] and all(d.scheme != "output-channels" for d in rep.layers)
    assert "output-channels not offered" in rep.render()


def test_output_channels_alone_meets_the_mac_budget():
    m, x = _model(), _calib()
    new, rep = compress(m, CompressionPolicy("auto", target_mac_ratio=0.5, cost_target="macs", calib_data=x,
                                             auto_schemes=("output-channels",)))
    assert rep.macs_after <= 0.5 * rep.macs_before and set(rep.auto["thinned"]) == {"b0_expand", "b1_expand"}
    assert {d.scheme for d in rep.layers if d.action == "factorized"} == {"output-channels"}
    assert rep.auto["predicted_cost"] == pytest.approx(rep.macs_after)  # cost in MACs: the prediction is exact


def test_probe_of_a_thinned_pair_is_the_thinned_model():
    """What auto prices a width with (the consumer's refit kernel on the kept channels, zero on the dropped
    ones, in the original model) computes what the model `rewrite.thin` builds at that width computes."""
    from edge_lowrank.auto.sensitivity import TaskProbe
    from edge_lowrank.auto.thin_units import JointOption, find_units, probe_changes
    from edge_lowrank.rewrite import base
    from edge_lowrank.rewrite.thin import thin

    m, x = _model(), _calib()
    plans = [base._Plan(s) for s in base.G.sites(m, "") if type(s.layer) in (L.Conv2D, L.Dense)]
    units, _ = find_units(m, plans, x)
    u = next(u for u in units if u.name == "b0_expand")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # both pairs live, so that their calibration rows are sampled as find_units sampled them; b1 kept whole
        new, _ = thin(m, CompressionPolicy("output-channels", layers=("b0_expand", "b1_expand"),
                                           layer_ranks={"b0_expand": 24, "b1_expand": 96}, calib_data=x),
                      asymmetric=False)
    saved = [(var, var.numpy().copy()) for var, _ in probe_changes(u, 24)]
    for var, value in probe_changes(u, 24):
        var.assign(np.asarray(value, np.float32))
    probed = keras.Model(m.inputs, m.get_layer("b0_project_bn").output).predict(x, verbose=0)
    for var, old in saved:
        var.assign(old)
    thinned = keras.Model(new.inputs, new.get_layer("b0_project_bn").output).predict(x, verbose=0)
    np.testing.assert_allclose(probed, thinned, rtol=1e-4, atol=1e-4 * float(np.abs(thinned).max()))
    # the probe sets and restores the same variables
    before = u.pair.consumer.kernel.numpy().copy()
    shift, agree = TaskProbe(m, x).measure([(u, JointOption("output-channels", (24,), 0.0, 0, 0, width=24, unit=u))])
    np.testing.assert_array_equal(u.pair.consumer.kernel.numpy(), before)
    assert shift > 0 and 0 <= agree <= 1


def _plain_model():
    """A plain conv chain (VGG-like): its pairs have no depthwise conv between producer and consumer."""
    keras.utils.set_random_seed(0)
    x = inp = keras.Input((16, 16, 3), batch_size=1)
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="c1")(x)
    x = L.Conv2D(32, 3, padding="same", activation="relu", name="c2")(x)
    x = L.MaxPooling2D()(x)
    x = L.Conv2D(48, 3, padding="same", activation="relu", name="c3")(x)
    out = L.Dense(10, activation="softmax", name="fc")(L.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


@pytest.mark.parametrize("objective", ["task", "shift"])
def test_plain_pairs_are_offered_only_when_nothing_is_fine_tuned(objective):
    """Under `task` (fine-tuning follows) thinned plain conv pairs are not offered: measured, they recover less
    in distillation than factorized layers (the frontier); depthwise pairs stay offered (test above)."""
    m, x = _plain_model(), _calib()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, rep = compress(m, CompressionPolicy("auto", target_mac_ratio=0.5, cost_target="macs", calib_data=x,
                                               auto_objective=objective))
    line = rep.auto["thinning"]
    if objective == "task":
        assert "offered on no pair" in line and "1 plain conv pair not offered" in line
        assert not rep.auto["thinned"] and all(d.scheme != "output-channels" for d in rep.layers)
    else:
        assert line.startswith("output-channels offered on 1 ")
