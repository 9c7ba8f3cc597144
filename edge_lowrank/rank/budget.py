"""A global budget: one kept-energy threshold for every layer, found by bisection so that the model's MACs
(or parameters) land at or under `ratio` times the original.

A common energy threshold spreads ranks by sensitivity: a layer whose spectrum decays fast (little error per
rank dropped) gets a small rank, a flat-spectrum layer keeps more. Layers whose factorization would not
shrink them at the threshold count at their original cost (the rewriter keeps them). Ranks rounded to a
multiple move the total in steps, so what the threshold leaves of the budget is then spent layer by layer
(`_fill`), in the order the threshold itself would have raised them.
"""

from __future__ import annotations

import heapq
import warnings

import numpy as np

from edge_lowrank.rank import schemes as _schemes
from edge_lowrank.rank.select import RankError, energy_rank, round_rank


def budget_energy(layers, ratio: float, *, fixed_cost: int, metric: str = "macs", multiple: int = 8,
                  iterations: int = 40, fill: bool = True) -> tuple[float, list[tuple[int, ...]]]:
    """Find the largest common energy whose ranks meet the budget.

    Args:
        layers: list of (scheme, LayerSpec, kernel, eigenvalues-or-None) for the candidate layers.
        ratio: target total (MACs or params) / original total, in (0, 1].
        fixed_cost: MACs (or params) of everything that is not a candidate.
        metric: "macs" or "params".
        fill: after the common threshold, raise single layers (lowest next threshold first) into what is
            left of the budget, so rounded ranks land close to it rather than a rank step under it.

    Returns:
        (energy, ranks per layer). Warns when even the smallest ranks do not meet the budget.
    """
    if not 0.0 < ratio <= 1.0:
        raise RankError(f"Invalid value for the target ratio. Expected a float in (0, 1]. Received: {ratio}.")
    idx = 1 if metric == "macs" else 0
    prepared = []
    for scheme, spec, kernel, eigs in layers:
        full = _schemes.full_ranks(scheme, spec)
        sp = _schemes.spectra(scheme, kernel, eigs, spec.n_responses)
        prepared.append((scheme, spec, kernel, full, sp, _schemes.original_cost(spec)[idx], {}))
    original = fixed_cost + sum(p[5] for p in prepared)
    target = ratio * original

    def ranks_at(e, p):
        scheme, spec, kernel, full, sp, _, cache = p
        rs = [round_rank(energy_rank(sq, e), full[i], multiple) for i, (sq, _) in enumerate(sp)]
        if len(full) == 3:  # tucker2-spatial: third rank from the core's spatial spectrum
            key = (rs[0], rs[1])
            if key not in cache:
                cache[key] = _schemes.core_spectrum(kernel, *key)[0]
            rs.append(round_rank(energy_rank(cache[key], e), full[2], multiple))
        return tuple(rs)

    def total(e):
        out, chosen = fixed_cost, []
        for p in prepared:
            rs = ranks_at(e, p)
            c = _schemes.cost(p[0], p[1], rs)[idx]
            chosen.append(rs)
            out += min(c, p[5])
        return out, chosen

    lo, hi = 1e-6, 1.0
    t_lo, r_lo = total(lo)
    if t_lo > target:
        warnings.warn(f"The budget ratio {ratio} cannot be met with this scheme: the smallest ranks give "
                      f"{t_lo / original:.3f} of the original {metric}.", stacklevel=2)
        return lo, r_lo
    t_hi, r_hi = total(hi)
    if t_hi <= target:  # every spectrum kept whole; cp's ranks can still grow past its spectrum's length
        return hi, (_fill(prepared, hi, r_hi, target, idx, ranks_at, fixed_cost, multiple) if fill else r_hi)
    best = (lo, r_lo)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        t, r = total(mid)
        if t <= target:
            lo, best = mid, (mid, r)
        else:
            hi = mid
    if not fill:
        return best
    return best[0], _fill(prepared, best[0], best[1], target, idx, ranks_at, fixed_cost, multiple)


def _next_step(p, e, ranks, ranks_at):
    """The lowest energy above `e` at which this layer's ranks grow, and the ranks there (None: at full)."""
    sp = p[4]
    cands = sorted({min(float(c), 1.0) for sq, _ in sp for c in _cumulative(sq) if c > e + 1e-12})
    for c in cands:
        rs = ranks_at(c, p)
        if rs != tuple(ranks):
            return c, rs
    return None


def _cumulative(sq):
    s = np.sort(np.asarray(sq, np.float64))[::-1]
    t = float(s.sum())
    return np.cumsum(s) / t if t > 0 else np.ones(1)


def _fill(prepared, energy, ranks, target, idx, ranks_at, fixed_cost, multiple):
    """Spend what the common threshold leaves of the budget: raise single layers, lowest next threshold
    first (the order the common threshold itself would take), while the total stays within `target`.

    Rounding ranks to a multiple makes the common-threshold total move in steps; on small models the
    bisection alone landed at 0.41 of the MACs for a 0.5 budget.
    """
    ranks = [tuple(r) for r in ranks]

    def c(p, rs):
        return min(_schemes.cost(p[0], p[1], rs)[idx], p[5])

    spent = fixed_cost + sum(c(p, rs) for p, rs in zip(prepared, ranks))
    heap = []
    for i, p in enumerate(prepared):
        step = _next_step(p, energy, ranks[i], ranks_at)
        if step is not None:
            heap.append((step[0], i, step[1]))
    heapq.heapify(heap)
    while heap:
        e, i, rs = heapq.heappop(heap)
        p = prepared[i]
        delta = c(p, rs) - c(p, ranks[i])
        if spent + delta > target:
            continue  # its later steps cost more still: this layer stays where it is
        spent += delta
        ranks[i] = rs
        step = _next_step(p, e, rs, ranks_at)
        if step is not None:
            heapq.heappush(heap, (step[0], i, step[1]))
    # Past the whole spectrum (cp: its SVD proxy has min(k*k*c_in, c_out) values, its CP rank bound is
    # k*k*min(c_in, c_out)): one `multiple` at a time, the layer furthest below its nominal rank first,
    # never to a cost at or above the layer's own (the rewriter would keep it).
    active = [i for i in range(len(prepared)) if ranks[i] != tuple(prepared[i][3])]
    while active:
        i = min(active, key=lambda j: (ranks[j][0] / _schemes.nominal_ranks(prepared[j][0], prepared[j][1])[0], j))
        p = prepared[i]
        rs = tuple(min(r + multiple, f) for r, f in zip(ranks[i], p[3]))
        new = _schemes.cost(p[0], p[1], rs)[idx]
        delta = new - c(p, ranks[i])
        if rs == ranks[i] or new >= p[5] or spent + delta > target:
            active.remove(i)
            continue
        spent += delta
        ranks[i] = rs
    return ranks
