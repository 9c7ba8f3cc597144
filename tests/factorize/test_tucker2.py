import numpy as np
import pytest

from edge_lowrank.factorize import FactorizationError, tucker2


def test_full_rank_exact_and_orthonormal_factors():
    w = np.random.default_rng(0).normal(size=(3, 3, 8, 12))
    f = tucker2(w, (8, 12))
    np.testing.assert_allclose(f.to_kernel(), w, atol=1e-9)
    u = f.first[0, 0]
    np.testing.assert_allclose(u.T @ u, np.eye(8), atol=1e-9)


def test_error_monotone_in_each_rank():
    w = np.random.default_rng(1).normal(size=(3, 3, 16, 16))
    errs = [tucker2(w, r).relative_error for r in (2, 4, 8, 12, 16)]
    assert all(b <= a + 1e-9 for a, b in zip(errs, errs[1:])), errs
    assert tucker2(w, (4, 8)).relative_error <= tucker2(w, (4, 4)).relative_error + 1e-9


def test_matches_or_beats_tensorly_partial_tucker():
    from tensorly.decomposition import partial_tucker

    w = np.random.default_rng(2).normal(size=(3, 3, 24, 32))
    ours = tucker2(w, (8, 12)).relative_error
    (core, (u_in, u_out)), _ = partial_tucker(w, rank=[8, 12], modes=[2, 3], random_state=0)
    ref = np.einsum("ijab,ca,nb->ijcn", core, u_in, u_out)
    theirs = np.linalg.norm(w - ref) / np.linalg.norm(w)
    assert ours <= theirs * 1.001


def test_recovers_exact_low_tucker_rank():
    rng = np.random.default_rng(3)
    core = rng.normal(size=(3, 3, 4, 5))
    u_in, _ = np.linalg.qr(rng.normal(size=(16, 4)))
    u_out, _ = np.linalg.qr(rng.normal(size=(20, 5)))
    w = np.einsum("ijab,ca,nb->ijcn", core, u_in, u_out)
    assert tucker2(w, (4, 5)).relative_error < 1e-8


def test_rank_above_full_rank():
    with pytest.raises(FactorizationError, match=r"rank\[0\]"):
        tucker2(np.ones((3, 3, 4, 4)), (5, 2))


def test_pointwise_kernel_is_the_svd_optimum():
    w = np.random.default_rng(4).normal(size=(1, 1, 24, 40))
    s = np.linalg.svd(w[0, 0], compute_uv=False)
    f = tucker2(w, (10, 10))
    np.testing.assert_allclose(f.relative_error, np.sqrt(np.sum(s[10:] ** 2) / np.sum(s ** 2)), rtol=1e-9)
