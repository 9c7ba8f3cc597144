"""The pure-numpy half of `auto`: options and their kernel errors, and the budgeted choice."""

import numpy as np
import pytest

from edge_lowrank import factorize as F
from edge_lowrank.auto.candidates import layer_options, rank_grid, schemes_for
from edge_lowrank.auto.select import choose
from edge_lowrank.rank.schemes import LayerSpec, original_cost


def _spec(k=3, cin=32, cout=48, hw=14):
    return LayerSpec("conv", "conv", (k, k, cin, cout), (((hw, hw), (hw, hw)),), True, None, (1, 1), "same")


def test_rank_grid_holds_multiples_below_full_rank():
    assert rank_grid(64, 8) == [8, 16, 24, 32, 40, 48, 56]
    g = rank_grid(512, 8, limit=10)
    assert len(g) <= 10 and all(r % 8 == 0 and r < 512 for r in g) and g == sorted(set(g))


def test_schemes_follow_the_kernel_shape():
    assert schemes_for(_spec()) == ("spatial", "channel", "tucker2", "weight-svd")[:3]
    assert schemes_for(_spec(k=1)) == ("weight-svd",)
    dense = LayerSpec("fc", "dense", (64, 10), (((1, 1), (1, 1)),), True)
    assert schemes_for(dense) == ("weight-svd",)
    # channel on a Dense or 1x1 layer is the same SVD: offered, labelled weight-svd
    assert schemes_for(dense, ("channel",)) == schemes_for(_spec(k=1), ("channel",)) == ("weight-svd",)
    assert schemes_for(dense, ("spatial",)) == ()


def test_a_single_schemes_rank_off_the_grid_is_an_option_under_its_label():
    dense = LayerSpec("fc", "dense", (96, 64), (((1, 1), (1, 1)),), True)
    w = np.random.default_rng(3).standard_normal((96, 64))
    opts = layer_options(dense, w, schemes=("channel",), extra=[("channel", (12,))])
    assert [o.ranks for o in opts if o.scheme == "weight-svd"] == [(8,), (16,), (24,), (32,), (12,)]  # 40+ cost more MACs
    assert all(o.scheme in (None, "weight-svd") for o in opts)


@pytest.mark.parametrize("scheme,fn", [("channel", F.channel), ("spatial", F.spatial)])
def test_option_error_is_the_truncated_svd_error(scheme, fn):
    w = np.random.default_rng(0).standard_normal((3, 3, 32, 48))
    opts = [o for o in layer_options(_spec(), w, schemes=(scheme,)) if o.scheme]
    assert opts, "no option below the original's MACs"
    for o in opts:
        got = fn(w, o.ranks[0]).relative_error ** 2
        assert o.error == pytest.approx(got, rel=1e-6, abs=1e-9)


def test_tucker2_error_bounds_the_hosvd_error():
    w = np.random.default_rng(1).standard_normal((3, 3, 32, 48))
    for o in [o for o in layer_options(_spec(), w, schemes=("tucker2",)) if o.scheme]:
        assert F.tucker2(w, o.ranks, n_iter=0).relative_error ** 2 <= o.error + 1e-9


def test_options_cost_fewer_macs_than_the_original_which_comes_first():
    w = np.random.default_rng(2).standard_normal((3, 3, 32, 48))
    opts = layer_options(_spec(), w)
    assert opts[0].scheme is None and opts[0].error == 0.0
    assert all(o.macs < original_cost(_spec())[1] for o in opts[1:])


def test_choose_meets_the_budget_with_least_error():
    # two layers, options (error, cost); budget 10 over a fixed 2
    layers = [[(0.0, 6.0), (0.1, 4.0), (0.5, 1.0)], [(0.0, 6.0), (0.05, 3.0), (0.9, 1.0)]]
    sel = choose(layers, budget=10.0, fixed=2.0)
    assert sel.met and sel.cost <= 10.0
    best = min(((a, b) for a in range(3) for b in range(3)
                if 2 + layers[0][a][1] + layers[1][b][1] <= 10),
               key=lambda ab: layers[0][ab[0]][0] + layers[1][ab[1]][0])
    assert sel.picks == best


def test_choose_keeps_everything_when_the_budget_allows_and_flags_an_impossible_one():
    layers = [[(0.0, 5.0), (0.2, 2.0)]]
    assert choose(layers, budget=5.0).picks == (0,)
    sel = choose(layers, budget=1.0)
    assert not sel.met and sel.picks == (1,)


def test_choose_matches_brute_force_on_random_problems():
    rng = np.random.default_rng(3)
    import itertools

    for _ in range(20):
        layers = []
        for _ in range(4):
            n = rng.integers(2, 5)
            costs = np.sort(rng.uniform(1, 10, n))[::-1]
            errs = np.concatenate([[0.0], np.sort(rng.uniform(0, 1, n - 1))])
            layers.append(list(zip(errs, costs)))
        budget = sum(o[0][1] for o in layers) * 0.6
        sel = choose(layers, budget)
        feasible = [p for p in itertools.product(*[range(len(o)) for o in layers])
                    if sum(o[i][1] for o, i in zip(layers, p)) <= budget]
        if not feasible:
            assert not sel.met
            continue
        opt = min(sum(o[i][0] for o, i in zip(layers, p)) for p in feasible)
        assert sel.met
        assert sel.cost <= budget + 1e-9
        assert sel.error <= opt + 0.02  # exact on the DP's cost grid; rounding costs a sliver at most
