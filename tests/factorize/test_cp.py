import numpy as np
import pytest

from edge_lowrank.factorize import FactorizationError, cp
from edge_lowrank.factorize.cp import full_rank


def test_full_rank_bound_is_exact():
    w = np.random.default_rng(0).normal(size=(3, 3, 4, 5))
    f = cp(w, full_rank(w.shape))
    np.testing.assert_allclose(f.to_kernel(), w, atol=1e-9)


def test_recovers_a_low_cp_rank_kernel_with_balanced_factors():
    rng = np.random.default_rng(1)
    a, b, c, d = (rng.normal(size=(n, 6)) for n in (3, 3, 16, 16))
    w = np.einsum("ir,jr,cr,nr->ijcn", a, b, c * 50.0, d)  # one mode much larger than the others
    f = cp(w, 6, n_iter_max=500)
    assert f.relative_error < 1e-4
    norms = [np.linalg.norm(k.reshape(-1, 6) if k.shape[-1] == 6 else k.reshape(6, -1).T, axis=0)
             for k in (f.first, f.last)]
    vert = np.linalg.norm(f.vertical[:, 0, :, 0], axis=0)
    hor = np.linalg.norm(f.horizontal[0, :, :, 0], axis=0)
    for n in norms + [hor]:
        np.testing.assert_allclose(n, vert, rtol=1e-6)  # every component split evenly over the 4 factors


def test_iteration_budget_is_honoured():
    w = np.random.default_rng(2).normal(size=(3, 3, 16, 16))
    assert cp(w, 8, n_iter_max=3).n_iter <= 3
    assert cp(w, 8, time_budget_s=0.0).n_iter <= 1


def test_bad_rank():
    with pytest.raises(FactorizationError, match="full rank is 18"):
        cp(np.ones((3, 3, 2, 4)), 19)
