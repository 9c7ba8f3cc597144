import numpy as np
import pytest

from edge_lowrank.rank import LayerSpec, budget_energy, cost, original_cost


def _layers(rng):
    out = []
    for i, (c, hw) in enumerate(((16, 16), (32, 8), (64, 4))):
        w = rng.normal(size=(3, 3, c, 2 * c))
        if i == 0:  # a layer whose spectrum decays fast: cheap to compress
            w = np.einsum("ijc,cn->ijcn", w[..., 0], rng.normal(size=(c, 2 * c))) * 0.01 + w * 1e-3
        out.append(("tucker2", LayerSpec(f"c{i}", "conv", w.shape, (((hw, hw), (hw, hw)),), True), w, None))
    return out


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.8])
def test_budget_is_met_and_close(ratio):
    layers = _layers(np.random.default_rng(0))
    fixed = 1000
    e, ranks = budget_energy(layers, ratio, fixed_cost=fixed, multiple=1)
    orig = fixed + sum(original_cost(s)[1] for _, s, _, _ in layers)
    total = fixed + sum(min(cost("tucker2", s, r)[1], original_cost(s)[1]) for (_, s, _, _), r in zip(layers, ranks))
    assert total <= ratio * orig
    assert total >= 0.8 * ratio * orig  # bisection lands near the budget, not far under it


def test_sensitivity_spreads_ranks():
    layers = _layers(np.random.default_rng(0))
    _, ranks = budget_energy(layers, 0.5, fixed_cost=0, multiple=1)
    # the fast-decaying layer gets a smaller share of its full rank than the flat ones
    share = [r[0] / s.kernel_shape[2] for (_, s, _, _), r in zip(layers, ranks)]
    assert share[0] < min(share[1:])


def test_unreachable_budget_warns():
    layers = _layers(np.random.default_rng(0))
    with pytest.warns(UserWarning, match="cannot be met"):
        budget_energy(layers, 0.01, fixed_cost=10 ** 9)


def test_fill_spends_what_rounding_leaves():
    layers = _layers(np.random.default_rng(0))
    orig = sum(original_cost(s)[1] for _, s, _, _ in layers)

    def total(ranks):
        return sum(min(cost("tucker2", s, r)[1], original_cost(s)[1]) for (_, s, _, _), r in zip(layers, ranks))

    _, plain = budget_energy(layers, 0.5, fixed_cost=0, multiple=8, fill=False)
    _, filled = budget_energy(layers, 0.5, fixed_cost=0, multiple=8)
    assert total(plain) <= total(filled) <= 0.5 * orig
    assert all(all(f >= p for f, p in zip(fr, pr)) for fr, pr in zip(filled, plain))  # ranks only grow
    assert all(r % 8 == 0 or r == full for rs, (_, s, _, _) in zip(filled, layers)
               for r, full in zip(rs, (s.kernel_shape[2], s.kernel_shape[3])))


def test_cp_grows_past_its_spectrum_proxy():
    """cp's energy ranks stop at min(k*k*c_in, c_out); a loose budget still raises them towards it."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 3, 16, 8))
    spec = LayerSpec("c", "conv", w.shape, (((16, 16), (16, 16)),), False)
    _, (ranks,) = budget_energy([("cp", spec, w, None)], 0.9, fixed_cost=0, multiple=8)
    assert ranks[0] > 8 and cost("cp", spec, ranks)[1] <= 0.9 * original_cost(spec)[1]
