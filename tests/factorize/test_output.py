import numpy as np
import pytest

from edge_lowrank.errors import DataError
from edge_lowrank.factorize import channel, output


def _patches(x, k):
    """im2col of NHWC images for a 'valid' k x k conv: (N*positions, k*k*C)."""
    n, h, w, c = x.shape
    cols = [x[:, i:i + h - k + 1, j:j + w - k + 1] for i in range(k) for j in range(k)]
    return np.stack(cols, axis=3).reshape(-1, k * k * c)


def _response_error(f, patches, w, b):
    y = patches @ w.reshape(-1, w.shape[-1]) + b
    y_hat = patches @ f.to_kernel().reshape(-1, w.shape[-1]) + f.bias
    return np.linalg.norm(y - y_hat) / np.linalg.norm(y - y.mean(0))


def test_full_rank_exact_and_mean_through_bias():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(3, 3, 2, 6)), rng.normal(size=6)
    p = _patches(rng.normal(size=(8, 7, 7, 2)) + 3.0, 3)
    f = output(w, 6, p @ w.reshape(-1, 6) + b, bias=b)
    np.testing.assert_allclose(f.to_kernel(), w, atol=1e-9)
    np.testing.assert_allclose(f.bias, b, atol=1e-9)


def test_beats_channel_on_fashion_mnist_responses():
    """At equal rank the data-driven fit reconstructs held-out responses better than the weight SVD."""
    from edge_lowrank.data import load_dataset

    try:
        calib = load_dataset("fashion-mnist:calib").x[:200]
        held = load_dataset("fashion-mnist:test").x[:100]
    except Exception as e:  # the data set is a system package
        pytest.skip(f"Fashion-MNIST not available: {e}")
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(5, 5, 1, 32)), rng.normal(size=32) * 0.1
    pc, ph = _patches(calib[:, ::2, ::2], 5), _patches(held[:, ::2, ::2], 5)
    for r in (2, 4, 8):
        fo = output(w, r, pc @ w.reshape(-1, 32) + b, bias=b)
        fc = channel(w, r, bias=b)
        assert _response_error(fo, ph, w, b) < _response_error(fc, ph, w, b)


def test_needs_responses_of_the_right_shape():
    with pytest.raises(DataError, match="responses"):
        output(np.ones((3, 3, 2, 4)), 2, np.ones((10, 5)))
    with pytest.raises(DataError, match="at least 2"):
        output(np.ones((3, 3, 2, 4)), 2, np.ones((1, 4)))
