"""A global budget: one kept-energy threshold for every layer, found by bisection so that the model's MACs
(or parameters) land at or under `ratio` times the original.

A common energy threshold spreads ranks by sensitivity: a layer whose spectrum decays fast (little error per
rank dropped) gets a small rank, a flat-spectrum layer keeps more. Layers whose factorization would not
shrink them at the threshold count at their original cost (the rewriter keeps them).
"""

from __future__ import annotations

import warnings


from edge_lowrank.rank import schemes as _schemes
from edge_lowrank.rank.select import RankError, energy_rank, round_rank


def budget_energy(layers, ratio: float, *, fixed_cost: int, metric: str = "macs", multiple: int = 8,
                  iterations: int = 40) -> tuple[float, list[tuple[int, ...]]]:
    """Find the largest common energy whose ranks meet the budget.

    Args:
        layers: list of (scheme, LayerSpec, kernel, eigenvalues-or-None) for the candidate layers.
        ratio: target total (MACs or params) / original total, in (0, 1].
        fixed_cost: MACs (or params) of everything that is not a candidate.
        metric: "macs" or "params".

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
    if t_hi <= target:
        return hi, r_hi
    best = (lo, r_lo)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        t, r = total(mid)
        if t <= target:
            lo, best = mid, (mid, r)
        else:
            hi = mid
    return best
