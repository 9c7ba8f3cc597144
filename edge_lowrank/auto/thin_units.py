"""`output-channels` inside `auto`: a thinnable producer/consumer pair as one unit of the per-layer choice.

Thinning changes two layers at once (the producer's output channels, the consumer's input channels, and the
per-channel layers between them: BatchNorm, activation, the depthwise conv of an inverted residual), so it
cannot be one more option of one layer. Each pair `rewrite.thin` can cut becomes a *unit*: one row of the
choice whose options are every combination of the two layers' own options (each factorized on its own, or
kept) and the pair thinned to a width on the rank grid. A layer is therefore either factorized or thinned as
part of its pair, never both. Pairs are made disjoint (a layer in one unit at most: in a plain chain
conv1 -> conv2 -> conv3 the pair with the most MACs wins), so unit costs add up.

- Cost of a width: the measured cost of the chain (producer, the layers between, consumer) at that width,
  one micro model from the same cached cost table as the factor blocks (`auto.costs`), minus the chain at
  full width, added to the unit's original cost (the two layers' own measured costs plus what the chain
  costs beyond them). Never slower: a width whose chain does not beat the full-width chain is dropped.
- Error of a width: the consumer's relative output error after the greedy channel elimination and
  least-squares refit (`factorize.channel_select`), squared, the same notion as a factorization's relative
  squared kernel error (which is the output error under white inputs).
- Output shift (the data-aware objective): the original model with the consumer's kernel replaced by the
  refit one on the kept channels and zero on the dropped ones, which computes exactly what the thinned
  model computes (`TaskProbe` applies it like any other option).

Channels are ranked on calibration data, so without data auto does not offer output-channels (the report
says so). The chosen pairs are thinned by `rewrite.thin` after the per-layer rewrite (`apply_thinning`), on
the inputs the rewritten model gives them.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from edge_lowrank.auto.candidates import Option

SCHEME = "output-channels"


@dataclasses.dataclass(frozen=True)
class JointOption(Option):
    """An option of a unit: `parts` = ((plan, Option), (plan, Option)) for the two layers on their own, or
    `width` for the pair thinned (scheme "output-channels")."""

    parts: tuple = dataclasses.field(default=(), compare=False)
    width: int | None = None
    index: tuple | None = None  # (producer option, consumer option) indices in the per-layer rows
    unit: object = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        if self.width is not None:
            return f"{SCHEME} {self.width}"
        return "; ".join(f"{p.site.name}: {o.label}" for p, o in self.parts)


@dataclasses.dataclass
class Unit:
    """A producer/consumer pair as one row of auto's choice."""

    pair: object  # rewrite.thin._Pair with its greedy path
    producer: object  # the compress plans of the two layers
    consumer: object
    chain_key: str = ""
    chain_full: float | None = None  # measured chain cost at full width
    chain_cost: dict = dataclasses.field(default_factory=dict)  # width -> measured chain cost
    shifts: dict = dataclasses.field(default_factory=dict)  # width -> output shift (data-aware objective)
    extra: set = dataclasses.field(default_factory=set)  # widths the output-channels scheme alone would take
    between_macs: int = 0
    bn_after: object = None  # the BatchNorm after a consumer without bias (takes the refit's bias shift)
    full_macs: int = 0  # producer + between + consumer
    single: int | None = None  # the width output-channels alone takes at auto's MAC budget

    @property
    def name(self) -> str:
        return self.pair.name

    @property
    def site(self):  # for code that names rows by their first layer
        return self.producer.site


def find_units(model, plans, calib, verbose: bool = False) -> tuple[list[Unit], list[str]]:
    """The disjoint pairs whose producer and consumer are both among auto's `plans`, each ranked on `calib`
    (greedy elimination on the consumer's reconstruction); and one note per pair left out, with why."""
    import time

    from edge_lowrank.factorize import channel_select as CS
    from edge_lowrank.profile import profile_model
    from edge_lowrank.rewrite import thin as T

    prof = profile_model(model).by_name()

    def macs_of(pr, layers):
        return sum(getattr(prof.get(pr.prefix + layer.name), "macs", 0) for layer in layers)

    by_layer = {id(p.site.layer): p for p in plans}
    pairs, feeders = T._find_pairs(model)
    cands, notes = [], []
    for pr in pairs:
        if pr.reason is not None:
            continue
        prod, cons = by_layer.get(id(pr.producer)), by_layer.get(id(pr.consumer))
        if prod is None or cons is None:
            notes.append(f"{pr.name}: its {'producer' if prod is None else 'consumer'} is not among the layers "
                         f"auto rewrites")
            continue
        macs = macs_of(pr, [pr.producer, *pr.between, pr.consumer])
        cands.append((macs, pr, prod, cons))
    used, units = set(), []
    for macs, pr, prod, cons in sorted(cands, key=lambda c: -c[0]):
        if id(pr.producer) in used or id(pr.consumer) in used:
            notes.append(f"{pr.name}: shares a layer with a pair that saves more MACs (pairs are disjoint)")
            continue
        used.update((id(pr.producer), id(pr.consumer)))
        units.append(Unit(pr, prod, cons, between_macs=int(macs_of(pr, pr.between)), full_macs=int(macs)))
    if not units:
        return [], notes
    order = {id(p): i for i, p in enumerate(plans)}
    units.sort(key=lambda u: order[id(u.producer)])
    T._collect_moments([u.pair for u in units], feeders, calib)
    bn = T._bn_after([u.pair for u in units])
    for u in units:
        t0 = time.monotonic()
        k, b = T._consumer_kernel(u.pair)
        u.pair.path = CS.eliminate(u.pair.moment, k, b, u.pair.ridge)
        u.bn_after = bn.get(id(u.pair.consumer))
        if verbose:
            print(f"  auto: {u.name}: {u.pair.channels} channels ranked on '{u.pair.consumer.name}' in "
                  f"{time.monotonic() - t0:.1f} s", flush=True)
    return units, notes


def widths(unit: Unit, multiple: int, limit: int) -> list[int]:
    """Multiples of `multiple` below the pair's channels, evenly thinned to `limit` (a pair is cut by a
    fraction of its width, not by orders of magnitude like a rank), plus the widths in `unit.extra`."""
    c = unit.pair.channels
    grid = list(range(multiple, c, multiple))
    if len(grid) > limit:
        grid = [grid[i] for i in np.unique(np.round(np.linspace(0, len(grid) - 1, limit)).astype(int))]
    return sorted(set(grid) | {w for w in unit.extra if 0 < w < c})


def chain_model(unit: Unit, width: int):
    """The producer, the layers between and the consumer, fresh stock layers, the producer cut to `width`."""
    import keras

    inp = keras.Input(shape=tuple(unit.producer.input_shape), batch_size=1)
    layers = []
    for i, layer in enumerate([unit.pair.producer, *unit.pair.between, unit.pair.consumer]):
        cfg = dict(layer.get_config())
        cfg.pop("name", None)
        if i == 0:
            cfg["filters" if "filters" in cfg else "units"] = int(width)
        layers.append(layer.__class__.from_config(cfg))
    return keras.Sequential([inp, *layers])


def chain_key(unit: Unit, width: int) -> str:
    cfgs = []
    for layer in [unit.pair.producer, *unit.pair.between, unit.pair.consumer]:
        cfg = {k: v for k, v in layer.get_config().items() if k not in ("name", "trainable", "dtype")}
        cfgs.append([type(layer).__name__, cfg])
    return "chain:" + json.dumps({"layers": cfgs, "input": [int(d) for d in unit.producer.input_shape],
                                  "width": int(width)}, sort_keys=True, default=str)


def measure_chains(units, table, multiple: int, limit: int) -> None:
    """Each unit's chain cost at full width and at every width of its grid (one batch in the cost table);
    with `table` None the cost is the chain's MACs."""
    from edge_lowrank.rank.schemes import original_cost

    items, where = [], []
    for u in units:
        for w in [u.pair.channels] + widths(u, multiple, limit):
            where.append((u, w))
            if table is not None:
                items.append((chain_key(u, w), lambda u=u, w=w: chain_model(u, w)))
    values = table.lookup(items) if table is not None else None
    for i, (u, w) in enumerate(where):
        if values is not None:
            u.chain_cost[w] = float(values[i])
        else:  # MACs: the chain's scale with the width
            m = original_cost(u.producer.spec)[1] + original_cost(u.consumer.spec)[1] + u.between_macs
            u.chain_cost[w] = float(m * w / u.pair.channels)
        if w == u.pair.channels:
            u.chain_full = u.chain_cost[w]


def unit_options(unit: Unit, p_opts, c_opts, multiple: int, limit: int, p_shifts=None, c_shifts=None):
    """The unit's options (index 0: both layers as they are) and, with shifts, their output shifts (the
    two layers' own shifts added; a width's shift is left None for the caller to measure)."""
    between_cost = max(0.0, unit.chain_full - p_opts[0].cost - c_opts[0].cost)
    opts, shifts = [], []
    for i, po in enumerate(p_opts):
        for j, co in enumerate(c_opts):
            scheme = None if i == j == 0 else "per-layer"
            opts.append(JointOption(scheme, None, po.error + co.error, po.macs + co.macs + unit.between_macs,
                                    po.params + co.params, po.cost + co.cost + between_cost,
                                    parts=((unit.producer, po), (unit.consumer, co)), index=(i, j)))
            if p_shifts is not None:
                shifts.append(p_shifts[i] + c_shifts[j])
    base_cost, base_macs = opts[0].cost, opts[0].macs
    c = unit.pair.channels
    for w in widths(unit, multiple, limit):
        chain = unit.chain_cost[w]
        if chain >= unit.chain_full:  # never slower than the pair it replaces
            continue
        err = float(unit.pair.path.errors[w]) ** 2
        opts.append(JointOption(SCHEME, (int(w),), min(err, 1.0), int(round(base_macs * w / c)),
                                int(round((p_opts[0].params + c_opts[0].params) * w / c)),
                                base_cost + chain - unit.chain_full, width=int(w), unit=unit))
        if p_shifts is not None:
            shifts.append(None)
    return opts, (shifts if p_shifts is not None else None)


def probe_changes(unit: Unit, width: int) -> list:
    """(variable, new value) pairs that make the original model compute the pair thinned to `width`: the
    consumer's refit kernel on the kept channels, zero on the dropped ones, and the refit's bias."""
    from edge_lowrank.factorize import channel_select as CS
    from edge_lowrank.rewrite import thin as T

    p = unit.pair
    keep = p.path.keep(width)
    k, b = T._consumer_kernel(p)
    nk, nb, _ = CS.refit(p.moment, k, b, keep, p.ridge)
    full = np.zeros_like(k)
    full[..., keep, :] = nk
    out = [(p.consumer.kernel, full)]
    if b is not None:
        out.append((p.consumer.bias, nb))
    elif unit.bn_after is not None:  # BN(z + d) with its moving mean raised by d, as thin does
        mm = unit.bn_after.moving_mean
        out.append((mm, np.asarray(mm.numpy(), np.float64) - nb))
    return out  # (a consumer without bias and without a BN after it: the small bias shift is left out)


def apply_thinning(model, policy, thinned: dict, verbose: bool = False):
    """`rewrite.thin` on `model` (auto's per-layer rewrite done) for the chosen pairs at their widths:
    (new model, the thin report's rows for the layers it changed)."""
    from edge_lowrank.rewrite.policy import CompressionPolicy
    from edge_lowrank.rewrite.thin import thin

    names = tuple(thinned)
    tp = CompressionPolicy(SCHEME, calib_data=policy.calib_data, layers=names, rank_multiple=policy.rank_multiple,
                           layer_ranks={n: int(v["width"]) for n, v in thinned.items()},
                           fold_batchnorm=policy.fold_batchnorm)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its report is merged into auto's, which warns for the whole
        new, rep = thin(model, tp, verbose=verbose)
    return new, [d for d in rep.layers if d.action == "factorized"]


def single_widths(units, target_macs: float, other_macs: float, multiple: int) -> dict | None:
    """What the output-channels scheme alone does at a MAC budget (`rewrite.thin`'s rule: one error threshold
    for every pair, the smallest that meets it): {id(unit): width}, or None when even the narrowest widths
    miss it. `other_macs`: the MACs of everything outside the units."""
    def at(tau):
        return {id(u): u.pair.path.width_for_error(tau, multiple) for u in units}

    def macs(ws):
        return other_macs + sum(u.full_macs * ws[id(u)] / u.pair.channels for u in units)

    if macs(at(1.0)) > target_macs:
        return None
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if macs(at(mid)) > target_macs else (lo, mid)
    return at(hi)
