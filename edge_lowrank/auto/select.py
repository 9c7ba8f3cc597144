"""Pick one option per layer so the model meets a cost budget with the least summed kernel error.

A multiple-choice knapsack, solved by dynamic programming over the budget cut into `bins` steps (each
option's cost rounded up to whole steps, so the choice always fits the budget); a greedy pass then spends
what the rounding left over on the upgrades with the best error saved per unit of cost. Exact on the grid
and fast in numpy (ResNet-50: 53 layers x 30 options x 4,000 steps). Pure numpy, no Keras.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Selection:
    picks: tuple[int, ...]  # index of the chosen option per layer (0: the original)
    cost: float  # fixed + chosen options' costs
    budget: float
    error: float
    met: bool


def choose(layers: list[list[tuple[float, float]]], budget: float, fixed: float = 0.0,
           bins: int = 4000) -> Selection:
    """Choose per layer among (error, cost) options; option 0 of each layer is the original (error 0).

    Args:
        layers: per layer, its options as (error, cost).
        budget: the total cost allowed (fixed included).
        fixed: the cost of everything that is not a candidate layer.
        bins: steps the budget is cut into.

    Returns:
        A `Selection`; `met` is False when even the cheapest options overrun the budget (then those are picked).
    """
    def total(picks):
        return fixed + sum(opts[i][1] for opts, i in zip(layers, picks))

    def err(picks):
        return sum(opts[i][0] for opts, i in zip(layers, picks))

    originals = tuple(0 for _ in layers)
    if total(originals) <= budget and all(o[0][0] <= min(e for e, _ in o) for o in layers):  # (a priced
        # damage, e.g. plus a price on MACs, can make an original worse than its options)
        return Selection(originals, total(originals), budget, 0.0, True)
    cheapest = tuple(min(range(len(o)), key=lambda i: (o[i][1], o[i][0])) for o in layers)
    if total(cheapest) > budget:
        return Selection(cheapest, total(cheapest), budget, err(cheapest), False)
    room = budget - fixed
    step = room / bins
    best = np.zeros(bins + 1)  # best[b]: least error of the layers so far within b steps
    back = []
    for opts in layers:
        new = np.full(bins + 1, np.inf)
        arg = np.zeros(bins + 1, dtype=np.int32)
        for i, (e, c) in enumerate(opts):
            k = int(math.ceil(c / step - 1e-9))
            if k > bins:
                continue
            cand = np.full(bins + 1, np.inf)
            cand[k:] = best[:bins + 1 - k] + e
            better = cand < new
            new[better], arg[better] = cand[better], i
        best = new
        back.append(arg)
    b = int(np.argmin(best))
    if not np.isfinite(best[b]):  # rounding up left no room: fall back to the cheapest options
        return Selection(cheapest, total(cheapest), budget, err(cheapest), True)
    picks = []
    for opts, arg in zip(reversed(layers), reversed(back)):
        i = int(arg[b])
        picks.append(i)
        b -= int(math.ceil(opts[i][1] / step - 1e-9))
    picks = picks[::-1]
    # spend the slack the rounding left: the upgrade with the most error saved per unit of extra cost
    while True:
        slack = budget - total(picks)
        pick, best_gain = None, 0.0
        for li, opts in enumerate(layers):
            e0, c0 = opts[picks[li]]
            for oi, (e, c) in enumerate(opts):
                if e < e0 and c - c0 <= slack:
                    gain = (e0 - e) / max(c - c0, 1e-12)
                    if gain > best_gain:
                        pick, best_gain = (li, oi), gain
        if pick is None:
            break
        picks[pick[0]] = pick[1]
    picks = tuple(picks)
    return Selection(picks, total(picks), budget, err(picks), True)


def task_frontier(costs, damages) -> list[int]:
    """Indices of the options no other option beats on both cost and damage (index 0, the original, always).

    A cost may be a tuple (e.g. measured cost and MACs under a MAC budget): beating takes every entry.

    Example:
        >>> task_frontier([10, 6, 5, 5, 3], [0, 0.2, 0.1, 0.3, 0.4])
        [0, 2, 4]
    """
    cs = [tuple(c) if isinstance(c, (tuple, list)) else (c,) for c in costs]
    keep = [0]
    for i in range(1, len(cs)):
        beaten = False
        for j in range(1, len(cs)):
            if j == i or damages[j] > damages[i] or any(a > b for a, b in zip(cs[j], cs[i])):
                continue
            if cs[j] != cs[i] or damages[j] < damages[i] or j < i:  # strictly better somewhere, or a duplicate
                beaten = True
                break
        if not beaten:
            keep.append(i)
    return keep


def best_scheme(schemes, costs, damages, floor: float = 1e-6):
    """The scheme whose options cost the least damage over the costs every scheme reaches, or None.

    `schemes[i]`, `costs[i]`, `damages[i]` describe option i (None for the original, which is ignored).
    Each scheme's damage at cost c is the least damage among its options costing at most c (its frontier);
    schemes are compared by the mean log damage over every option cost at or above the dearest scheme's
    cheapest option (where every frontier is defined). None when fewer than two schemes are present.

    Example:
        >>> best_scheme([None, "a", "a", "b", "b"], [10, 4, 6, 4, 6], [0, 0.4, 0.1, 0.8, 0.2])
        'a'
    """
    names = sorted({s for s in schemes if s is not None})
    if len(names) < 2:
        return None
    pts = {s: [(c, d) for sc, c, d in zip(schemes, costs, damages) if sc == s] for s in names}
    start = max(min(c for c, _ in p) for p in pts.values())
    grid = sorted({c for sc, c in zip(schemes, costs) if sc is not None and c >= start})

    def frontier(p, c):
        return min(d for ci, d in p if ci <= c)

    score = {s: float(np.mean([np.log(max(frontier(p, c), 0.0) + floor) for c in grid])) for s, p in pts.items()}
    return min(names, key=lambda s: (score[s], names.index(s)))
