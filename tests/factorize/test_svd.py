import numpy as np
import pytest

from edge_lowrank.factorize import FactorizationError, weight_svd
from edge_lowrank.factorize.svd import max_useful_rank


def test_full_rank_is_exact_and_factors_are_balanced():
    w = np.random.default_rng(0).normal(size=(48, 20))
    f = weight_svd(w, 20, bias=np.ones(20))
    np.testing.assert_allclose(f.to_kernel(), w, rtol=1e-10, atol=1e-10)
    assert f.relative_error < 1e-12
    # balanced: the i-th column of A and row of B have the same norm sqrt(s_i)
    np.testing.assert_allclose(np.linalg.norm(f.first, axis=0), np.linalg.norm(f.second, axis=1), rtol=1e-9)
    first, second, bias = f
    assert first.shape == (48, 20) and second.shape == (20, 20) and bias.shape == (20,)
    assert f.n_params == 48 * 20 + 20 * 20 + 20


def test_error_is_eckart_young_and_monotone():
    w = np.random.default_rng(1).normal(size=(1, 1, 32, 16))
    errs = [weight_svd(w, r).relative_error for r in range(1, 17)]
    assert all(b <= a + 1e-12 for a, b in zip(errs, errs[1:]))
    s = np.linalg.svd(w[0, 0], compute_uv=False)
    np.testing.assert_allclose(errs[3], np.sqrt(np.sum(s[4:] ** 2) / np.sum(s ** 2)), rtol=1e-9)
    assert weight_svd(w, 4).first.shape == (1, 1, 32, 4)


def test_max_useful_rank():
    assert max_useful_rank(512, 10) == 9  # 9 * 522 < 5120 <= 10 * 522
    assert max_useful_rank(4, 4) == 1


@pytest.mark.parametrize("rank", [0, -1, 17, 2.5])
def test_bad_rank(rank):
    with pytest.raises(FactorizationError, match="rank"):
        weight_svd(np.ones((16, 32)), rank)


def test_nan_weights():
    w = np.ones((4, 4))
    w[1, 2] = np.nan
    with pytest.raises(FactorizationError, match="NaN or Inf"):
        weight_svd(w, 2)
