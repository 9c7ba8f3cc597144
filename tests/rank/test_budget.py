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
