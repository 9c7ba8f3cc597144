"""Rank selection: an explicit rank, a fraction of full rank, kept energy, or EVBMF, rounded to a multiple.

Every selector returns a `RankChoice`. Ranks are rounded up to a multiple of `multiple` (8 by default: int8
SIMD kernels process channels in groups of 8 or 16, so a rank of 13 costs what 16 does) and capped at the
full rank of each entry.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from edge_lowrank.errors import EdgeLowrankError
from edge_lowrank.rank import schemes as _schemes
from edge_lowrank.rank.vbmf import evbmf_rank


class RankError(EdgeLowrankError, ValueError):
    """A rank rule that cannot be applied (out of range, several rules at once)."""


@dataclasses.dataclass(frozen=True)
class RankChoice:
    """Ranks for one layer (one entry per factor boundary) and what they keep and cost.

    `kept_energy` is the share of squared singular values kept (per entry, the smallest), `param_ratio` and
    `mac_ratio` are factorized / original.
    """

    rank: tuple[int, ...]
    kept_energy: float | None
    param_ratio: float
    mac_ratio: float


def round_rank(r: int, full: int, multiple: int = 8) -> int:
    """Round `r` up to a multiple of `multiple`, at least `multiple`, never above `full`.

    Example:
        >>> round_rank(13, 64), round_rank(70, 64), round_rank(0, 4), round_rank(5, 64, 1)
        (16, 64, 4, 5)
    """
    if multiple < 1:
        raise RankError(f"Invalid value for argument `rank_multiple`. Expected an int >= 1. "
                         f"Received: rank_multiple={multiple}.")
    r = max(int(r), 1)
    return int(min(full, max(multiple, math.ceil(r / multiple) * multiple)))


def energy_rank(squared_spectrum, energy: float) -> int:
    """Smallest r whose top-r squared singular values hold at least `energy` of the total.

    Example:
        >>> energy_rank([4.0, 3.0, 2.0, 1.0], 0.7)
        2
    """
    if not 0.0 < energy <= 1.0:
        raise RankError(f"Invalid value for argument `energy`. Expected a float in (0, 1]. Received: energy={energy}.")
    s = np.sort(np.asarray(squared_spectrum, np.float64))[::-1]
    total = float(s.sum())
    if total <= 0:
        return 1
    cum = np.cumsum(s) / total
    return int(min(np.searchsorted(cum, energy - 1e-12) + 1, len(s)))


def kept_energy(squared_spectrum, r: int) -> float:
    s = np.sort(np.asarray(squared_spectrum, np.float64))[::-1]
    total = float(s.sum())
    return 1.0 if total <= 0 else float(s[:r].sum() / total)


def check_policy_numbers(rank=None, fraction=None, energy=None, where: str = "") -> None:
    """Reject out-of-range values early with the argument named (the Keras message form)."""
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank <= 0):
        raise RankError(f"Invalid value for argument `rank`. Expected a positive int. Received: rank={rank!r}{where}.")
    if fraction is not None and not 0.0 < fraction <= 1.0:
        raise RankError(f"Invalid value for argument `rank_fraction`. Expected a float in (0, 1]. "
                         f"Received: rank_fraction={fraction}{where}.")
    if energy is not None and not 0.0 < energy <= 1.0:
        raise RankError(f"Invalid value for argument `energy`. Expected a float in (0, 1]. "
                         f"Received: energy={energy}{where}.")


def choose_rank(scheme: str, spec: "_schemes.LayerSpec", kernel, *, rank: int | None = None,
                fraction: float | None = None, energy: float | None = None, vbmf: bool = False,
                multiple: int = 8, eigenvalues=None) -> RankChoice:
    """Pick the ranks of one layer for `scheme` by exactly one rule.

    Args:
        scheme: one of `SCHEMES`.
        spec: the layer's shapes and calls.
        kernel: its kernel (BatchNorm already folded), for the spectra.
        rank: an explicit rank for every entry (capped per entry at its full rank).
        fraction: a fraction of the nominal full rank of each entry.
        energy: share of squared singular values to keep, per entry.
        vbmf: use the EVBMF rank of each entry's matrix.
        multiple: rounding multiple.
        eigenvalues: response covariance spectrum, for `output`.

    Raises:
        ValueError: no rule or more than one, or a value out of range.
    """
    given = [x is not None for x in (rank, fraction, energy)] + [bool(vbmf)]
    if sum(given) != 1:
        raise RankError("Give exactly one of `rank`, `rank_fraction`, `energy`, `vbmf` "
                         f"(received {sum(given)}).")
    check_policy_numbers(rank, fraction, energy, f" for layer '{spec.name}'")
    full = _schemes.full_ranks(scheme, spec)
    n_entries = len(full)
    need_spectra = energy is not None or vbmf
    spec_list = _schemes.spectra(scheme, kernel, eigenvalues, spec.n_responses) if (need_spectra or scheme == "output") else []

    def pick(i, sq, shape):
        if energy is not None:
            return energy_rank(sq, energy)
        return max(evbmf_rank(np.sqrt(np.clip(sq, 0, None)), shape), 1)

    ranks = []
    for i in range(n_entries):
        if rank is not None:
            r = min(int(rank), full[i])
        elif fraction is not None:
            r = math.ceil(fraction * _schemes.nominal_ranks(scheme, spec)[i])
        elif i < len(spec_list):
            r = pick(i, *spec_list[i])
        else:  # tucker2-spatial's third entry: the spatial spectrum of the Tucker core at (r1, r2)
            sq, shape = _schemes.core_spectrum(kernel, ranks[0], ranks[1])
            r = pick(i, sq, shape)
        ranks.append(r if rank is not None else round_rank(r, full[i], multiple))
    if rank is not None:
        ranks = [round_rank(r, full[i], multiple) for i, r in enumerate(ranks)]
    ranks = tuple(ranks)
    kept = None
    if spec_list:
        kept = float(min(kept_energy(sq, ranks[i]) for i, (sq, _) in enumerate(spec_list)))
    p0, m0 = _schemes.original_cost(spec)
    p1, m1 = _schemes.cost(scheme, spec, ranks)
    return RankChoice(ranks, kept, p1 / p0 if p0 else 1.0, m1 / m0 if m0 else 1.0)
