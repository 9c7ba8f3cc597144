"""Rank selection (no Keras): per-layer rules and a global MAC or parameter budget."""

from edge_lowrank.rank.budget import budget_energy
from edge_lowrank.rank.schemes import SCHEMES, LayerSpec, cost, full_ranks, original_cost
from edge_lowrank.rank.select import RankChoice, choose_rank, energy_rank, round_rank
from edge_lowrank.rank.vbmf import evbmf_rank

__all__ = ["budget_energy", "SCHEMES", "LayerSpec", "cost", "full_ranks", "original_cost", "RankChoice",
           "choose_rank", "energy_rank", "round_rank", "evbmf_rank"]
