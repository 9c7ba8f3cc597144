"""`CompressionPolicy`: what to rewrite and how, validated when it is made."""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_lowrank.rank.schemes import SCHEMES
from edge_lowrank.rank.select import RankError, check_policy_numbers

DEFAULT_ENERGY = 0.9


@dataclasses.dataclass(frozen=True)
class CompressionPolicy:
    """A scheme and one rank rule for the whole model.

    Args:
        scheme: one of `SCHEMES`.
        rank, rank_fraction, energy, vbmf, target_mac_ratio, target_param_ratio: the rank rule; give at most
            one (none means `energy=0.9`).
        rank_multiple: ranks are rounded up to a multiple of it (1 turns rounding off), capped at full rank.
        fold_batchnorm: fold a BatchNormalization that follows a conv into it before factorizing.
        calib_data: input images (N, H, W, C) for the data-driven `output` scheme.
        layers: names of the layers to consider (nested ones as `outer/inner` or plain `inner`); None: all.
        cp_time_budget_s, cp_n_iter_max: bound each CP fit (ALS) in time and iterations.
        skip_unprofitable: keep a layer whose factorization would not reduce its parameters and MACs.
        layer_ranks: explicit ranks for some layers, {name: int or tuple (one entry per rank of the scheme)},
            overriding the rule for them (no rounding; an entry above that layer's full rank is an error).
    """

    scheme: str = "tucker2"
    rank: int | None = None
    rank_fraction: float | None = None
    energy: float | None = None
    vbmf: bool = False
    target_mac_ratio: float | None = None
    rank_multiple: int = 8
    fold_batchnorm: bool = True
    calib_data: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    layers: tuple[str, ...] | None = None
    target_param_ratio: float | None = None
    cp_time_budget_s: float | None = 30.0
    cp_n_iter_max: int = 100
    skip_unprofitable: bool = True
    layer_ranks: dict | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise RankError(f"Invalid value for argument `scheme`. Expected one of {', '.join(SCHEMES)}. "
                             f"Received: scheme={self.scheme!r}.")
        rules = {"rank": self.rank, "rank_fraction": self.rank_fraction, "energy": self.energy,
                 "vbmf": self.vbmf or None, "target_mac_ratio": self.target_mac_ratio,
                 "target_param_ratio": self.target_param_ratio}
        given = [k for k, v in rules.items() if v is not None]
        if len(given) > 1:
            raise RankError(f"Give one rank rule, not several. Received: {', '.join(given)}.")
        check_policy_numbers(self.rank, self.rank_fraction, self.energy)
        for name in ("target_mac_ratio", "target_param_ratio"):
            v = getattr(self, name)
            if v is not None and not 0.0 < v <= 1.0:
                raise RankError(f"Invalid value for argument `{name}`. Expected a float in (0, 1]. "
                                 f"Received: {name}={v}.")
        if isinstance(self.rank_multiple, bool) or not isinstance(self.rank_multiple, (int, np.integer)) \
                or self.rank_multiple < 1:
            raise RankError(f"Invalid value for argument `rank_multiple`. Expected an int >= 1. "
                             f"Received: rank_multiple={self.rank_multiple!r}.")
        for name, r in (self.layer_ranks or {}).items():
            rs = (r,) if isinstance(r, (int, np.integer)) else tuple(r)
            if not rs or any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x <= 0 for x in rs):
                raise RankError(f"Invalid value for argument `layer_ranks`. Expected positive ints. "
                                f"Received: {r!r} for layer '{name}'.")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(self.layers))

    @property
    def rule(self) -> dict:
        """The rank rule in effect, as keyword arguments of `choose_rank` (or a budget)."""
        if self.rank is not None:
            return {"rank": int(self.rank)}
        if self.rank_fraction is not None:
            return {"fraction": float(self.rank_fraction)}
        if self.vbmf:
            return {"vbmf": True}
        if self.target_mac_ratio is not None or self.target_param_ratio is not None:
            return {}
        return {"energy": float(self.energy if self.energy is not None else DEFAULT_ENERGY)}

    def describe(self) -> str:
        r = self.rule
        if not r:
            return (f"target MAC ratio {self.target_mac_ratio}" if self.target_mac_ratio is not None
                    else f"target parameter ratio {self.target_param_ratio}")
        (k, v), = r.items()
        return "VBMF" if k == "vbmf" else f"{k} {v}"
