import numpy as np

from edge_lowrank.factorize import tucker2, tucker2_spatial


def test_full_rank_exact_and_monotone_in_r3():
    w = np.random.default_rng(0).normal(size=(3, 3, 6, 8))
    np.testing.assert_allclose(tucker2_spatial(w, (6, 8, 18)).to_kernel(), w, atol=1e-9)
    errs = [tucker2_spatial(w, (6, 8, r3)).relative_error for r3 in (2, 6, 12, 18)]
    assert all(b <= a + 1e-9 for a, b in zip(errs, errs[1:]))
    # splitting the core can only add error to the plain Tucker-2 at the same (r1, r2)
    assert tucker2_spatial(w, (4, 4, 4)).relative_error >= tucker2(w, (4, 4)).relative_error - 1e-9
