"""The options `auto` weighs for one layer: keep it, or a scheme at one rank, each with its kernel error.
Pure numpy: costs (measured latency, instructions or MACs) are attached later by `edge_lowrank.auto.costs`.

The error of an option is the relative squared Frobenius error of the layer's kernel (BatchNorm folded),
read from the spectra without factorizing: exact for the truncated SVDs (spatial, channel, weight-svd) and
the HOSVD bound (tail of the input-mode spectrum plus tail of the output-mode spectrum) for tucker2. It is the
quantity a common energy threshold equalizes across layers, so summing it over layers is the same notion of
damage the MAC-budget rule uses.

Ranks are a grid of multiples of `multiple` (int8 kernels run channels in groups of 8 or 16); the measured
costs then decide which of those are worth it: a rank that costs what the next one up does is dominated.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_lowrank.rank import schemes as S
from edge_lowrank.rank.select import round_rank

LAYER_SCHEMES = ("spatial", "channel", "tucker2", "weight-svd")  # one layer replaced by a factor block
# output-channels thins a producer/consumer pair, with calibration data only (edge_lowrank.auto.thin_units)
AUTO_SCHEMES = LAYER_SCHEMES + ("output-channels",)
MAX_RANKS_PER_SCHEME = 10


@dataclasses.dataclass(frozen=True)
class Option:
    """One way to run a layer: `scheme` None means the layer as it is."""

    scheme: str | None
    ranks: tuple[int, ...] | None
    error: float  # relative squared kernel error (0 for the original)
    macs: int
    params: int
    cost: float | None = None  # measured: microseconds, or instructions, per inference

    @property
    def label(self) -> str:
        return "original" if self.scheme is None else f"{self.scheme} {'x'.join(map(str, self.ranks))}"


def schemes_for(spec: S.LayerSpec, allowed=LAYER_SCHEMES) -> tuple[str, ...]:
    """The schemes that apply to this layer's shape, in `allowed`'s order (channel on a Dense or 1x1 layer is
    its weight-svd: one option, labelled weight-svd)."""
    if spec.is_pointwise:
        return ("weight-svd",) if "weight-svd" in allowed or "channel" in allowed else ()
    if 1 in spec.kernel_shape[:2]:
        out = ("channel",)
    else:
        out = ("spatial", "channel", "tucker2")
    return tuple(s for s in allowed if s in out)


def same_as(scheme: str, spec: S.LayerSpec) -> str:
    """The option label `scheme` has on this layer: the channel scheme factorizes a Dense or 1x1 layer by the
    same SVD as weight-svd (`rank.schemes.cost` and `spectra` treat them alike), so it is that option.

    Without this a single scheme's choice could not be found among `auto`'s options on such layers: the
    channel scheme's choice on the sample VGG (its 6,272 x 512 Dense cut) was priced with the Dense whole
    and never measured against `auto`'s own choice."""
    return "weight-svd" if scheme == "channel" and spec.is_pointwise else scheme


def rank_grid(full: int, multiple: int, limit: int = MAX_RANKS_PER_SCHEME) -> list[int]:
    """Multiples of `multiple` below `full`, thinned geometrically to at most `limit` values.

    Example:
        >>> rank_grid(64, 8)
        [8, 16, 24, 32, 40, 48, 56]
    """
    ranks = list(range(multiple, full, multiple))
    if len(ranks) <= limit:
        return ranks
    picks = np.unique(np.round(np.geomspace(1, len(ranks), limit)).astype(int) - 1)
    return [ranks[i] for i in picks]


def _tail(sq: np.ndarray) -> np.ndarray:
    """tail[r] = share of the squared spectrum beyond the first r values (tail[0] = 1)."""
    s = np.sort(np.clip(np.asarray(sq, np.float64), 0, None))[::-1]
    total = s.sum()
    if total <= 0:
        return np.zeros(len(s) + 1)
    return np.concatenate([[1.0], 1.0 - np.cumsum(s) / total]).clip(0, 1)


def layer_options(spec: S.LayerSpec, kernel, *, schemes=LAYER_SCHEMES, multiple: int = 8,
                  limit: int = MAX_RANKS_PER_SCHEME, extra=()) -> list[Option]:
    """The original layer (first) and every (scheme, rank) on the grid that has fewer MACs than it.

    `extra`: more (scheme, ranks) to include (e.g. what a single scheme's MAC budget gives this layer).
    """
    p0, m0 = S.original_cost(spec)
    out = [Option(None, None, 0.0, m0, p0)]
    extra = [(same_as(sc, spec), tuple(int(r) for r in rs)) for sc, rs in extra]
    for scheme in schemes_for(spec, schemes):
        full = S.full_ranks(scheme, spec)
        sp = S.spectra(scheme, kernel)
        tails = [_tail(sq) for sq, _ in sp]
        if scheme == "tucker2":
            cin, cout = spec.kernel_shape[2], spec.kernel_shape[3]
            grid = []
            for r1 in rank_grid(full[0], multiple, limit):
                r2 = round_rank(int(round(r1 * cout / cin)), full[1], multiple)
                grid.append((r1, min(r2, full[1])))
        else:
            grid = [(r,) for r in rank_grid(full[0], multiple, limit)]
        grid += [rs for sc, rs in extra if sc == scheme and rs not in grid and len(rs) == len(full)
                 and all(r <= f for r, f in zip(rs, full)) and any(r < f for r, f in zip(rs, full))]
        for ranks in grid:
            p1, m1 = S.cost(scheme, spec, ranks)
            if m1 >= m0:
                continue
            err = sum(float(t[min(r, len(t) - 1)]) for t, r in zip(tails, ranks))
            out.append(Option(scheme, tuple(int(r) for r in ranks), min(err, 1.0), m1, p1))
    return out
