import numpy as np
import pytest

from edge_lowrank.rank import LayerSpec, choose_rank, energy_rank, round_rank
from edge_lowrank.rank.select import RankError, kept_energy


def _spec(shape=(3, 3, 32, 64), hw=8):
    return LayerSpec("conv", "conv", shape, (((hw, hw), (hw, hw)),), True)


def test_round_rank_multiple_and_cap():
    assert round_rank(1, 64) == 8
    assert round_rank(9, 64) == 16
    assert round_rank(63, 60) == 60  # never above full rank
    assert round_rank(3, 4, 8) == 4
    with pytest.raises(RankError, match="rank_multiple"):
        round_rank(3, 4, 0)


def test_energy_rank_keeps_at_least_the_share():
    s = np.random.default_rng(0).random(50) ** 3
    for e in (0.1, 0.5, 0.9, 0.99, 1.0):
        r = energy_rank(s, e)
        assert kept_energy(s, r) >= e - 1e-9
        assert r == 1 or kept_energy(s, r - 1) < e


def test_choose_rank_rules():
    w = np.random.default_rng(1).normal(size=(3, 3, 32, 64))
    spec = _spec()
    assert choose_rank("tucker2", spec, w, rank=16).rank == (16, 16)
    assert choose_rank("tucker2", spec, w, rank=50, multiple=1).rank == (32, 50)  # r1 capped at c_in
    assert choose_rank("channel", spec, w, fraction=0.5).rank == (32,)
    assert choose_rank("cp", spec, w, fraction=0.5).rank == (16,)  # cp: fraction of min(c_in, c_out)
    c = choose_rank("spatial", spec, w, energy=0.8, multiple=1)
    assert c.kept_energy >= 0.8
    ch = choose_rank("tucker2-spatial", spec, w, energy=0.9)
    assert len(ch.rank) == 3 and all(r % 8 == 0 for r in ch.rank)
    # the cost ratios follow the ranks
    small, big = (choose_rank("channel", spec, w, rank=r) for r in (8, 32))
    assert small.mac_ratio < big.mac_ratio and small.param_ratio < big.param_ratio


def test_energy_monotone_in_rank():
    w = np.random.default_rng(2).normal(size=(3, 3, 16, 16))
    ranks = [choose_rank("tucker2", _spec(w.shape), w, energy=e, multiple=1).rank for e in (0.3, 0.6, 0.9, 0.99)]
    assert all(all(b >= a for a, b in zip(x, y)) for x, y in zip(ranks, ranks[1:]))


def test_vbmf_finds_the_planted_rank():
    rng = np.random.default_rng(3)
    w = (rng.normal(size=(288, 6)) @ rng.normal(size=(6, 64)) * 2 + 0.05 * rng.normal(size=(288, 64)))
    w = w.reshape(3, 3, 32, 64)
    assert choose_rank("channel", _spec(), w, vbmf=True, multiple=1).rank == (6,)


@pytest.mark.parametrize("kwargs, match", [({"rank": 0}, "rank"), ({"rank": -3}, "rank"),
                                           ({"fraction": 1.5}, "rank_fraction"), ({"energy": 0.0}, "energy"),
                                           ({"rank": 4, "energy": 0.5}, "exactly one"), ({}, "exactly one")])
def test_bad_rules(kwargs, match):
    with pytest.raises(RankError, match=match):
        choose_rank("channel", _spec(), np.ones((3, 3, 32, 64)), **kwargs)
