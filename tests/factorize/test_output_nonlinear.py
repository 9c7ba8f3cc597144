"""The nonlinear, asymmetric `output` fit (Zhang et al. TPAMI 2016), numpy only."""

import numpy as np
import pytest

from edge_lowrank.errors import DataError
from edge_lowrank.factorize import output
from edge_lowrank.factorize.output_nonlinear import output_fit


def _layer(seed=0, n=6000):
    """A 3x3 conv (as patches @ kernel) on correlated inputs, with a bias: responses that are low-rank-ish."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(3, 3, 8, 24)) / 8
    b = rng.normal(size=24) * 0.1
    x = rng.normal(size=(n, 72)) @ rng.normal(size=(72, 72)) * 0.3
    return w, b, x, x @ w.reshape(72, 24) + b


def _post_relu_error(f, x, y):
    t = np.maximum(y, 0)
    pred = np.maximum(x @ f.to_kernel().reshape(x.shape[1], -1) + f.bias, 0)
    return np.linalg.norm(t - pred) / np.linalg.norm(t - t.mean(0))


def test_full_rank_reproduces_the_layer_after_relu():
    w, b, x, y = _layer()
    f = output_fit(w, 24, y, bias=b, relu=True)
    assert np.allclose(f.to_kernel(), w, atol=1e-8)
    assert np.allclose(f.bias, b, atol=1e-8)
    assert _post_relu_error(f, x, y) < 1e-8 and f.response_error < 1e-8


@pytest.mark.parametrize("rank", [4, 8, 16])
def test_nonlinear_beats_linear_after_relu(rank):
    w, b, x, y = _layer()
    lin = output(w, rank, y, b)
    nl = output_fit(w, rank, y, bias=b, relu=True)
    e_lin, e_nl = _post_relu_error(lin, x, y), _post_relu_error(nl, x, y)
    assert e_nl <= e_lin + 1e-12
    assert e_nl < 0.995 * e_lin, (e_lin, e_nl)  # it optimizes that error: a real gain, not a tie
    assert nl.response_error == pytest.approx(e_nl, rel=1e-6)
    assert nl.linear_response_error == pytest.approx(e_lin, rel=1e-6)  # it starts from the linear fit
    assert nl.relu and nl.iterations == 25


def test_linear_symmetric_fit_is_todays_output():
    w, b, _, y = _layer()
    a, c = output(w, 8, y, b), output_fit(w, 8, y, bias=b)
    assert np.allclose(a.to_kernel(), c.to_kernel(), atol=1e-8) and np.allclose(a.bias, c.bias, atol=1e-8)


def test_asymmetric_fit_corrects_the_input_drift():
    w, b, x, y = _layer()
    rng = np.random.default_rng(3)
    xt = x @ (np.eye(72) + rng.normal(size=(72, 72)) * 0.05) + 0.05  # what a compressed prefix might give
    yt = xt @ w.reshape(72, 24) + b
    sym, asym = output_fit(w, 12, y, bias=b), output_fit(w, 12, y, yt, bias=b)

    def err(f):
        return np.linalg.norm(y - xt @ f.to_kernel().reshape(72, -1) - f.bias) / np.linalg.norm(y - y.mean(0))

    assert err(asym) < 0.9 * err(sym), (err(asym), err(sym))
    assert asym.asymmetric and not sym.asymmetric


def test_bad_pairs_are_one_line_errors():
    w, b, _, y = _layer(n=100)
    with pytest.raises(DataError, match="paired"):
        output_fit(w, 4, y, y[:50])
    with pytest.raises(DataError, match="NaN"):
        output_fit(w, 4, np.full_like(y, np.nan))
