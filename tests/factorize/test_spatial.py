import numpy as np
import pytest

from edge_lowrank.factorize import FactorizationError, spatial
from edge_lowrank.factorize.spatial import full_rank


def _conv_valid(x, w):
    """Reference 'valid' cross-correlation, NHWC x HWIO."""
    kh, kw = w.shape[:2]
    ho, wo = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], ho, wo, w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += x[:, i:i + ho, j:j + wo] @ w[i, j]
    return out


def test_full_rank_exact_and_factors_compose():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 5, 4, 6))
    f = spatial(w, full_rank(w.shape))
    np.testing.assert_allclose(f.to_kernel(), w, atol=1e-10)
    # the vertical conv then the horizontal conv equals the original conv
    x = rng.normal(size=(2, 9, 9, 4))
    y = _conv_valid(_conv_valid(x, f.vertical), f.horizontal)
    np.testing.assert_allclose(y, _conv_valid(x, w), atol=1e-9)
    assert f.vertical.shape == (3, 1, 4, 12) and f.horizontal.shape == (1, 5, 12, 6)


def test_error_monotone_and_optimal():
    w = np.random.default_rng(2).normal(size=(3, 3, 8, 8))
    errs = [spatial(w, r).relative_error for r in range(1, 25)]
    assert all(b <= a + 1e-12 for a, b in zip(errs, errs[1:]))
    assert errs[-1] < 1e-12


def test_bad_kernel_shape():
    with pytest.raises(FactorizationError, match="dimensions"):
        spatial(np.ones((3, 3)), 1)
