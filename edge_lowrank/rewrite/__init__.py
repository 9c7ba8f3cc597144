"""Keras graph surgery: `compress(model, policy) -> (new_model, RewriteReport)`.

Importing this package imports Keras (lazily, on first use of `compress`).
"""

from edge_lowrank.rank.schemes import SCHEMES
from edge_lowrank.rewrite.base import compress
from edge_lowrank.rewrite.policy import CompressionPolicy
from edge_lowrank.rewrite.report import LayerDecision, RewriteReport

__all__ = ["SCHEMES", "compress", "CompressionPolicy", "LayerDecision", "RewriteReport"]
