"""Data-aware auto: options priced by the model's output shift on calibration images."""

import warnings

import keras
import numpy as np
import pytest

from edge_lowrank.auto.candidates import LAYER_SCHEMES, layer_options
from edge_lowrank.auto.select import best_scheme, task_frontier
from edge_lowrank.auto.sensitivity import KernelApprox, TaskProbe, divergence
from edge_lowrank.rank.select import RankError
from edge_lowrank.rewrite import CompressionPolicy, compress


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    x = inp = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="c2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(32, 1, name="pw")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(5, activation="softmax", name="fc")(x)
    m = keras.Model(inp, out)
    rng = np.random.default_rng(seed)  # BatchNorm statistics far from the identity, so folding matters
    bn = m.get_layer("bn2")
    bn.set_weights([rng.uniform(0.5, 2, 32), rng.normal(0, 0.3, 32), rng.normal(0, 0.3, 32), rng.uniform(0.2, 3, 32)])
    return m


def _calib(n=32, seed=1):
    return np.random.default_rng(seed).standard_normal((n, 12, 12, 3)).astype(np.float32)


def _live_plans(m) -> dict:
    """{layer name: plan} of the layers auto weighs in `m` (what `plan_auto` receives), by running auto once."""
    from edge_lowrank.auto import plan as P

    plans = {}
    orig = P.plan_auto

    def spy(model, policy, live, **kw):
        plans.update({p.site.name: p for p in live})
        return orig(model, policy, live, **kw)

    P.plan_auto = spy
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compress(m, CompressionPolicy("auto", target_mac_ratio=0.9, cost_target="macs", auto_objective="kernel"))
    finally:
        P.plan_auto = orig
    return plans


@pytest.mark.parametrize("scheme,ranks,k", [("spatial", (8,), 3), ("channel", (8,), 3), ("weight-svd", (8,), 1),
                                            ("tucker2", (8, 16), 3)])
def test_truncated_kernel_has_the_candidates_error(scheme, ranks, k):
    from edge_lowrank.rank.schemes import LayerSpec

    w = np.random.default_rng(0).standard_normal((k, k, 16, 32))
    spec = LayerSpec("c", "conv", w.shape, (((8, 8), (8, 8)),), True)
    opt = next(o for o in layer_options(spec, w, schemes=(scheme,)) if o.ranks == ranks)
    approx = KernelApprox(w).kernel(scheme, ranks)
    err = float(np.sum((approx - w) ** 2) / np.sum(w ** 2))
    if scheme == "tucker2":  # HOSVD: at most the bound the candidates carry
        assert 0 < err <= opt.error + 1e-9
    else:  # truncated SVD: exactly the error read from the spectrum
        assert err == pytest.approx(opt.error, rel=1e-6)


@pytest.mark.parametrize("scheme,rank", [("spatial", 8), ("channel", 8)])
def test_probe_predicts_the_rewritten_model_and_restores_the_kernel(scheme, rank):
    from edge_lowrank.auto.candidates import Option

    m = _model()
    x = _calib()
    before = m.get_layer("c2").kernel.numpy().copy()
    # the rewrite of c2 alone (BatchNorm folded into it) at that rank
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one, _ = compress(m, CompressionPolicy(scheme, layers=("c2",), layer_ranks={"c2": rank}, rank_multiple=1))
    want = np.asarray(one.predict(x, verbose=0))
    probe = TaskProbe(m, x)
    p = _live_plans(m)["c2"]
    assert p.bn is not None
    shift, agree = probe.measure([(p, Option(scheme, (rank,), 0.0, 0, 0))])
    # the probe's modified model gives the rewritten model's outputs
    var = m.get_layer("c2").kernel
    var.assign(before + probe._delta(p, Option(scheme, (rank,), 0.0, 0, 0)).astype(np.float32))
    got = np.asarray(m.predict(x, verbose=0))
    var.assign(before)
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert shift == pytest.approx(divergence(probe.ref, [want]), rel=1e-3, abs=1e-7)
    np.testing.assert_array_equal(m.get_layer("c2").kernel.numpy(), before)  # restored
    assert 0.0 <= agree <= 1.0


def test_task_frontier_drops_options_beaten_on_cost_and_shift():
    # (cost, shift): 1 is beaten by 2 (cheaper, less shift); 3 ties 2 on cost with more shift
    assert task_frontier([10, 6, 5, 5, 3], [0, 0.2, 0.1, 0.3, 0.4]) == [0, 2, 4]
    assert task_frontier([10, 4, 4], [0, 0.1, 0.1]) == [0, 1]  # exact duplicates: the first stays
    assert task_frontier([10], [0]) == [0]
    # (cost, MACs): option 1 is slower than option 2 but has fewer MACs, so a MAC budget may need it
    assert task_frontier([(10, 10), (5, 3), (4, 5)], [0, 0.3, 0.1]) == [0, 1, 2]


def test_best_scheme_compares_frontiers_where_all_schemes_reach():
    # b is cheaper at its cheapest but worse wherever both exist (costs 4 and 6)
    assert best_scheme([None, "a", "a", "b", "b", "b"], [10, 4, 6, 2, 4, 6], [0, 0.1, 0.05, 0.5, 0.4, 0.2]) == "a"
    # a frontier is the least damage at or below a cost: a's dear, bad option does not count against it
    assert best_scheme([None, "a", "a", "b"], [10, 3, 5, 3], [0, 0.1, 0.9, 0.2]) == "a"
    assert best_scheme([None, "a", "a"], [10, 3, 5], [0, 0.1, 0.2]) is None  # one scheme: nothing to choose


@pytest.mark.parametrize("objective", ["task", "shift"])
def test_data_aware_objectives_report_what_they_measured(objective):
    m = _model()
    x = _calib()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new, rep = compress(m, CompressionPolicy("auto", target_mac_ratio=0.5, cost_target="macs", calib_data=x,
                                                 auto_objective=objective,
                                                 auto_schemes=("spatial", "channel", "weight-svd")))
    a = rep.auto
    assert a["objective"].startswith(f"{objective}:") and "calibration images" in a["objective"]
    cands = a["candidates"]
    assert {objective, "kernel error"} <= set(cands)
    chosen = [n for n, c in cands.items() if c["chosen"]]
    assert len(chosen) == 1 and a["objective"].endswith(f"the least shift: {chosen[0]}")
    # whole choices measured together: the one that moves the output least, within the budget
    assert cands[chosen[0]]["shift"] == min(c["shift"] for c in cands.values() if c["met"])
    assert a["budget_met"] and all(c["macs"] <= 0.5 * a["original_cost"] + 1e-6 for c in cands.values())
    assert all(d["shift"] is not None and d["shift"] >= -1e-9 for d in a["layers"].values())
    # what was built moves the output as much as the probe measured (truncated SVDs are exact)
    got = divergence([np.asarray(m.predict(x, verbose=0))], [np.asarray(new.predict(x, verbose=0))])
    assert got == pytest.approx(cands[chosen[0]]["shift"], rel=0.05, abs=1e-5)


def test_without_data_or_when_asked_the_objective_is_kernel_error():
    m = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, rep = compress(m, CompressionPolicy("auto", target_mac_ratio=0.5, cost_target="macs"))
        # output-channels comes with data only: leave it out to compare like with like
        _, rep_k = compress(m, CompressionPolicy("auto", target_mac_ratio=0.5, cost_target="macs",
                                                 calib_data=_calib(), auto_objective="kernel",
                                                 auto_schemes=LAYER_SCHEMES))
    assert rep.auto["objective"].startswith("kernel error: no calibration data")
    assert rep_k.auto["objective"].startswith("kernel error: asked for")
    assert rep.auto["candidates"] is None and rep_k.auto["candidates"] is None
    assert [d.ranks for d in rep.layers] == [d.ranks for d in rep_k.layers]
    with pytest.raises(RankError, match="auto_objective"):
        CompressionPolicy("auto", auto_objective="accuracy")


def test_compress_cli_prices_on_calibration_data(tmp_path, capsys):
    import json

    from edge_lowrank.cli.main import main

    path = tmp_path / "m.keras"
    _model().save(path)
    data = tmp_path / "calib.npz"
    np.savez(data, x=np.random.default_rng(2).uniform(0, 1, (24, 12, 12, 3)).astype(np.float32))
    # no fine-tuning asked for: the least output shift by default
    for given, said in (("task", "task"), ("kernel", "kernel error"), (None, "shift")):
        rep = tmp_path / f"{given}.json"
        code = main(["compress", str(path), "--scheme", "auto", "--target-mac-ratio", "0.5", "--cost-target", "macs",
                     "--calib-data", str(data), "-o", str(tmp_path / "small.keras"), "--json", str(rep)]
                    + (["--auto-objective", given] if given else []))
        out = capsys.readouterr().out
        assert code == 0 and f"auto objective: {said}" in out
        assert json.loads(rep.read_text())["auto"]["objective"].startswith(said)


def test_probe_on_a_separable_pointwise_and_a_conv1d():
    """The kernel the probe substitutes is the pointwise one of a SeparableConv2D, the 3-D one of a Conv1D."""
    from edge_lowrank.auto.candidates import Option

    keras.utils.set_random_seed(0)
    inp = keras.Input((10, 10, 4))
    x = keras.layers.SeparableConv2D(16, 3, padding="same", name="sep")(inp)
    x = keras.layers.Reshape((100, 16))(x)
    x = keras.layers.Conv1D(12, 3, name="c1d")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    m = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x))
    x = np.random.default_rng(0).standard_normal((16, 10, 10, 4)).astype(np.float32)
    plans = _live_plans(m)
    probe = TaskProbe(m, x)
    for name, scheme, rank in (("sep", "weight-svd", 2), ("c1d", "channel", 4)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            one, rep = compress(m, CompressionPolicy(scheme, layers=(name,), layer_ranks={name: rank},
                                                     rank_multiple=1, skip_unprofitable=False))
        assert rep.changed
        want = divergence(probe.ref, [np.asarray(one.predict(x, verbose=0))])
        got, _ = probe.measure([(plans[name], Option(scheme, (rank,), 0.0, 0, 0))])
        assert want > 0 and got == pytest.approx(want, rel=1e-3, abs=1e-7)


def test_few_probes_interpolate_between_measured_options():
    from edge_lowrank.auto.sensitivity import probe_plan

    assert probe_plan(22.7e6, 82, 200) == (200, None)  # the sample ResNet: every option on 200 images
    assert probe_plan(1.02e9, 1300, 200) == (32, 3)  # ResNet-50 at 112 x 112: a few per layer and scheme
    m = _model()
    p = _live_plans(m)["c2"]
    opts = layer_options(p.spec, p.kernel, schemes=("spatial",), multiple=2)[1:]
    assert len(opts) > 3
    probe = TaskProbe(m, _calib())
    every = probe.layer_shifts(p, opts)
    before = probe.evaluations
    few = probe.layer_shifts(p, opts, probes=3)
    assert probe.evaluations - before == 3
    ends = [min(range(len(opts)), key=lambda i: opts[i].error), max(range(len(opts)), key=lambda i: opts[i].error)]
    for i in ends:  # the extremes are measured, the rest lie between them
        assert few[i] == pytest.approx(every[i], rel=1e-6)
    assert all(min(every) * 0.99 <= f <= max(every) * 1.01 for f in few)


def test_a_single_schemes_cuts_of_1x1_and_dense_layers_are_among_autos_options():
    """The channel scheme factorizes a 1x1 conv or a Dense by weight-svd's SVD. Its choice there must be found
    among `auto`'s options (labelled weight-svd), or the scheme is priced with those layers whole and its own
    choice is never measured against `auto`'s (the sample VGG at 3x: channel cuts its big Dense, measured
    58 µs on the host, priced at 93 µs, and `auto` returned a slower, less accurate model)."""
    from edge_lowrank.profile import profile_model

    m, x = _model(), _calib()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, rep = compress(m, CompressionPolicy("auto", target_mac_ratio=0.4, cost_target="macs", calib_data=x,
                                               auto_objective="task", auto_schemes=("spatial", "channel", "weight-svd")))
        by_channel, rep_c = compress(m, CompressionPolicy("channel", target_mac_ratio=0.4))
    assert any(d.name == "pw" and d.ranks for d in rep_c.layers)  # channel cuts the 1x1 conv here
    # auto's price of the channel scheme is what compress builds for it (an independent MAC count)
    assert rep.auto["single_schemes"]["single_scheme_cost"]["channel"] == profile_model(by_channel).macs
    assert "channel" in rep.auto["candidates"]
