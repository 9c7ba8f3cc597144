import numpy as np

from edge_lowrank.factorize import channel


def test_full_rank_exact_and_monotone():
    w = np.random.default_rng(0).normal(size=(3, 3, 4, 16))
    f = channel(w, 16, bias=np.arange(16.0))
    np.testing.assert_allclose(f.to_kernel(), w, atol=1e-10)
    assert f.first.shape == (3, 3, 4, 16) and f.second.shape == (1, 1, 16, 16)
    errs = [channel(w, r).relative_error for r in range(1, 17)]
    assert all(b <= a + 1e-12 for a, b in zip(errs, errs[1:]))


def test_dense_kernel():
    w = np.random.default_rng(1).normal(size=(20, 6))
    f = channel(w, 3)
    assert f.first.shape == (20, 3) and f.second.shape == (3, 6)
