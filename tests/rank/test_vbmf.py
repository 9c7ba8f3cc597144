import numpy as np

from edge_lowrank.rank import evbmf_rank


def test_planted_rank_recovered_across_shapes():
    rng = np.random.default_rng(0)
    for (m, n, r) in ((60, 80, 5), (200, 50, 10), (64, 576, 12)):
        y = rng.normal(size=(m, r)) @ rng.normal(size=(r, n)) * 2 + rng.normal(size=(m, n)) * 0.5
        assert evbmf_rank(np.linalg.svd(y, compute_uv=False), y.shape) == r


def test_pure_noise_keeps_almost_nothing():
    y = np.random.default_rng(1).normal(size=(100, 120))
    assert evbmf_rank(np.linalg.svd(y, compute_uv=False), y.shape) <= 2


def test_degenerate_inputs():
    assert evbmf_rank([3.0], (1, 5)) == 1
    assert evbmf_rank([0.0, 0.0], (2, 2)) == 0
