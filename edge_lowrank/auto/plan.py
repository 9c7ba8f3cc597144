"""`auto`: a scheme and ranks per layer, chosen on measured cost (latency or ARM instructions), not on MACs.

Why: MACs are a poor proxy under XNNPACK. A depthwise k x 1 conv runs at a tenth of a dense conv's MAC rate
in int8, so a cp block can be slower than the 3x3 conv it replaces; at narrow widths a Tucker-2 chain pays
three ops' overhead for few MACs saved. So every option of every layer (the layer itself; spatial, channel,
tucker2 or weight-svd at each rank on a grid of multiples of 8) is measured as a micro model on the target
(`edge_lowrank.auto.costs`, cached per op shape), options that do not beat the original layer are dropped,
and `edge_lowrank.auto.select` picks one per layer: the least summed kernel error that fits the budget.
With calibration data the options are also priced on the task (`edge_lowrank.auto.sensitivity`: the model's
output shift with each option alone): the data pick each layer's scheme, kernel error spreads the cut across
layers, and whole choices are measured together (`auto_objective`, docs/auto.md).

Budgets:
    target_latency_ratio r: the model's cost (measured whole-model cost of everything that is not a
        candidate layer, plus the chosen options' measured costs) at most r times the original's.
    target_mac_ratio r: whole-model MACs at most r times the original's. Each single scheme's own ranks at
        that budget are measured too; within the fastest one's predicted cost, the least kernel error whose
        MACs meet the budget (a price on MACs, by bisection): at least as fast as the fastest single scheme.
With `cost_target="macs"` nothing is measured (options cost their MACs): a quick, device-free mode.

With calibration data, `output-channels` is offered too (`edge_lowrank.auto.thin_units`): each thinnable
producer/consumer pair becomes one unit of the choice whose options are its two layers' own options combined
and the pair thinned to a width (the chain measured at that width in the same cost table, the consumer's
refit error as its damage), so a layer is either factorized or thinned with its pair; the chosen pairs are
thinned by `rewrite.thin` after the per-layer rewrite. At a MAC budget output-channels alone is one of the
single schemes to beat.

cp is left out of the options: its kernel error needs a full ALS fit per rank, and its depthwise factors
run slowly in int8 under XNNPACK (see README's frontier table).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from edge_lowrank.auto.candidates import AUTO_SCHEMES, MAX_RANKS_PER_SCHEME, Option, layer_options, same_as
from edge_lowrank.auto.select import Selection, best_scheme, choose, task_frontier
from edge_lowrank.auto.thin_units import Unit, find_units, measure_chains, single_widths, unit_options
from edge_lowrank.rank.schemes import cost as scheme_cost, original_cost
from edge_lowrank.rank.select import RankChoice


# The summed damage is sum(error ** ERROR_POWER): 1 is the plain sum of kernel errors; above 1 spreads the cut
# over more layers instead of concentrating it where the error per unit of cost is lowest.
ERROR_POWER = 1.0


@dataclasses.dataclass
class AutoResult:
    """What auto decided, for the rewrite report."""

    unit: str
    budget_rule: str
    original_cost: float | None
    predicted_cost: float | None
    fixed_cost: float | None
    budget_met: bool
    layers: dict  # name -> {"chosen": label, "cost_before", "cost_after", "options": n}
    measured: int  # micro models measured in this call (0 when all came from the cache)
    table: str | None
    single_schemes: dict | None = None  # MAC budget: each single scheme's predicted cost, and the one to beat
    objective: str = "kernel error"  # what was minimized, and why (task needs calibration data)
    candidates: dict | None = None  # task objective: whole choices measured together (shift, agreement, cost)
    thinned: dict | None = None  # output-channels: {producer: {"width", "channels", "consumer"}} chosen
    thinning: str | None = None  # whether output-channels was offered, on how many pairs, or why not
    trial: dict | None = None  # whole choices judged by a short fine-tune (`compress` with trial data)
    alternatives: list | None = None  # the whole choices that meet the budget, the least shift first
    try_choice: object = dataclasses.field(default=None, repr=False)  # name -> sets the plans to that choice

    def to_dict(self) -> dict:
        out = dataclasses.asdict(dataclasses.replace(self, try_choice=None))
        out.pop("try_choice")
        return out


def _shaped_factors(scheme: str, spec, ranks, bias, rng):
    """Factors of the right shapes with random values (for timing: latency does not depend on them)."""
    from edge_lowrank import factorize as F

    def rnd(*shape):
        fan_in = int(np.prod(shape[:-1])) or 1
        return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)

    k = spec.kernel_shape
    if spec.kind != "conv" or scheme == "weight-svd":
        (r,) = ranks
        lead = tuple(k[:-2])
        ones = np.ones(r)
        return F.SVDFactors(first=rnd(*lead, k[-2], r), second=rnd(*lead, r, k[-1]), bias=bias, relative_error=0.0,
                            singular_values=ones)
    kh, kw, cin, cout = k
    if scheme == "spatial":
        (r,) = ranks
        return F.SpatialFactors(vertical=rnd(kh, 1, cin, r), horizontal=rnd(1, kw, r, cout), bias=bias,
                                relative_error=0.0, singular_values=np.ones(r))
    if scheme == "channel":
        (r,) = ranks
        return F.ChannelFactors(first=rnd(kh, kw, cin, r), second=rnd(1, 1, r, cout), bias=bias, relative_error=0.0,
                                singular_values=np.ones(r))
    if scheme == "tucker2":
        r1, r2 = ranks
        return F.Tucker2Factors(first=rnd(1, 1, cin, r1), core=rnd(kh, kw, r1, r2), last=rnd(1, 1, r2, cout),
                                bias=bias, relative_error=0.0, n_iter=0)
    raise ValueError(f"auto does not time the {scheme} scheme.")


def micro_model(layer, spec, input_shape, has_bias: bool, option: Option):
    """The layer alone (option.scheme None) or its factor block, on the layer's input shape."""
    import keras

    from edge_lowrank.rewrite.blocks import build_block

    inp = keras.Input(shape=tuple(input_shape), batch_size=1)
    if option.scheme is None:
        cfg = dict(layer.get_config())
        cfg["use_bias"] = bool(has_bias)
        cfg.pop("name", None)
        return keras.Sequential([inp, layer.__class__.from_config(cfg)])
    rng = np.random.default_rng(0)
    bias = (rng.standard_normal(spec.kernel_shape[-1]) * 0.1).astype(np.float32) if has_bias else None
    factors = _shaped_factors(option.scheme, spec, option.ranks, bias, rng)
    dk = layer.depthwise_kernel.numpy() if isinstance(layer, keras.layers.SeparableConv2D) else None
    return keras.Sequential([inp, build_block(layer, factors, tuple(input_shape), dk)])


def _single_scheme_ranks(plans, policy, total_macs) -> dict:
    """{scheme: {id(plan): ranks}}: what each single scheme's MAC budget (one energy threshold, as
    `compress` does for that scheme) gives every layer it takes."""
    from edge_lowrank.rank import budget_energy, original_cost

    out = {}
    for s in policy.auto_schemes:
        mine = [p for p, allowed in plans if s in allowed]
        if not mine:
            continue
        fixed = total_macs - sum(original_cost(p.spec)[1] for p in mine)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, ranks = budget_energy([(s, p.spec, p.kernel, None) for p in mine], policy.target_mac_ratio,
                                     fixed_cost=fixed, metric="macs", multiple=policy.rank_multiple)
        out[s] = {id(p): tuple(int(r) for r in rs) for p, rs in zip(mine, ranks)}
    return out


def _single_meets(scheme, ranks, rows, fixed_macs, target_macs) -> bool:
    """Whether a single scheme's ranks meet the MAC budget (layers it would not shrink stay as they are)."""
    total = fixed_macs
    for p, opts in rows:
        r = ranks.get(id(p))
        m0 = opts[0].macs
        total += min(m0, scheme_cost(scheme, p.spec, r)[1]) if r else m0
    return total <= target_macs * (1 + 1e-9)


def _choose_with_macs(layers, rows, limit, fixed, macs_of, target_macs, iterations: int = 30):
    """Least damage within the cost `limit` whose MACs meet the budget: a price on MACs, found by bisection."""
    sel = choose(layers, limit, fixed)
    if not sel.met:
        return None
    if macs_of(sel.picks) <= target_macs:
        return sel
    scale = max(max(d for d, _ in opts) for opts in layers) or 1.0
    per_mac = scale / max(target_macs, 1.0)
    lo, hi, best = 0.0, per_mac, None
    for _ in range(60):  # find a price high enough
        priced = [[(d + hi * o.macs, c) for (d, c), o in zip(opts, r[1])] for opts, r in zip(layers, rows)]
        sel = choose(priced, limit, fixed)
        if sel.met and macs_of(sel.picks) <= target_macs:
            best = sel
            break
        hi *= 4.0
    if best is None:
        return None
    for _ in range(iterations):
        mid = (lo + hi) / 2
        priced = [[(d + mid * o.macs, c) for (d, c), o in zip(opts, r[1])] for opts, r in zip(layers, rows)]
        sel = choose(priced, limit, fixed)
        if sel.met and macs_of(sel.picks) <= target_macs:
            hi, best = mid, sel
        else:
            lo = mid
    # the price on MACs leaves a gap (a Lagrangian optimum): spend what is left of both budgets on the upgrades
    # that save the most damage
    picks = list(best.picks)

    def cost(ps):
        return fixed + sum(layers[k][i][1] for k, i in enumerate(ps))

    while True:
        move, gain = None, 0.0
        for k, opts in enumerate(layers):
            for i, (d, _) in enumerate(opts):
                saved = opts[picks[k]][0] - d
                if saved <= gain:
                    continue
                trial = picks[:k] + [i] + picks[k + 1:]
                if cost(trial) <= limit * (1 + 1e-9) and macs_of(trial) <= target_macs:
                    move, gain = (k, i), saved
        if move is None:
            break
        picks[move[0]] = move[1]
    err = sum(layers[k][i][0] for k, i in enumerate(picks))
    return dataclasses.replace(best, picks=tuple(picks), cost=cost(picks), error=err)


def plan_auto(model, policy, live, *, eligible, calib=None, verbose: bool = False) -> AutoResult:
    """Set `plan.scheme` and `plan.choice` (or `plan.reason`) on every live plan of `compress`.

    Args:
        model: the original model.
        policy: its `CompressionPolicy` (scheme "auto").
        live: the `compress` plans that can be rewritten (spec, kernel, input shape known).
        eligible: {id(plan): schemes `compress` allows for that layer}.
        calib: checked calibration images (N, H, W, C) or None: int8 calibration of the whole-model timing.
    """
    from edge_lowrank.auto.costs import CostTable, layer_key, model_key
    from edge_lowrank.profile import profile_model

    measure = policy.cost_target != "macs"
    table = CostTable(policy.cost_target, verbose=verbose) if measure else None
    prof = profile_model(model)
    plans = []  # (plan, schemes it may take)
    for p in live:
        if measure and any(d is None for d in p.input_shape[:-1]):
            p.reason = "auto: the input size is not fixed, so the layer's cost cannot be measured"
            continue
        plans.append((p, tuple(s for s in policy.auto_schemes if s in eligible[id(p)])))
    singles = _single_scheme_ranks(plans, policy, prof.macs) if policy.target_mac_ratio is not None else {}
    rows = []  # (plan, options)
    for p, allowed in plans:
        extra = [(s, ranks[id(p)]) for s, ranks in singles.items() if id(p) in ranks]
        rows.append((p, layer_options(p.spec, p.kernel, schemes=allowed, multiple=policy.rank_multiple,
                                      extra=extra)))
    if measure:
        items = []
        for p, opts in rows:
            has_bias = p.bias is not None
            for o in opts:
                items.append((layer_key(p.site.layer, p.input_shape, has_bias, o),
                              lambda p=p, o=o, hb=has_bias: micro_model(p.site.layer, p.spec, p.input_shape, hb, o)))
        values = iter(table.lookup(items))
        rows = [(p, [dataclasses.replace(o, cost=next(values)) for o in opts]) for p, opts in rows]
    else:
        rows = [(p, [dataclasses.replace(o, cost=float(o.macs)) for o in opts]) for p, opts in rows]
    all_rows = rows
    # never a factorized layer slower than the layer it replaced
    rows = [(p, [opts[0]] + [o for o in opts[1:] if o.cost < opts[0].cost]) for p, opts in rows]

    cand_macs = sum(opts[0].macs for _, opts in rows)
    fixed_macs = prof.macs - cand_macs
    if measure:
        whole_calib = calib
        if whole_calib is None:
            whole_calib = np.random.default_rng(0).standard_normal((8,) + tuple(model.inputs[0].shape[1:]))
        whole_calib = np.asarray(whole_calib, np.float32)[:16]
        whole = table.lookup([(model_key(model), lambda: model, whole_calib)])[0] if len(model.inputs) == 1 else None
        cand_cost = sum(opts[0].cost for _, opts in rows)
        fixed = max(0.0, whole - cand_cost) if whole is not None else 0.0
        original = fixed + cand_cost
    else:
        fixed, original = float(fixed_macs), float(prof.macs)

    objective = policy.auto_objective if calib is not None and rows else "kernel"
    units, thinning = [], None
    if "output-channels" in policy.auto_schemes:
        units, thinning = _units(model, policy, rows, calib, table, prof.macs, verbose, objective)
    fixed0, fixed_macs0 = fixed, fixed_macs

    probe, shifts, kernel_rows, kernel_shifts = None, None, rows, None
    if objective != "kernel":
        from edge_lowrank.auto.sensitivity import TaskProbe, probe_plan

        n_calib = len(calib[0]) if isinstance(calib, (list, tuple)) else len(calib)
        images, probes = probe_plan(prof.macs, sum(len(opts) - 1 for _, opts in rows), n_calib)
        probe = TaskProbe(model, calib, images=images)
        shifts = [[0.0] + probe.layer_shifts(p, opts[1:], probes) for p, opts in rows]
        passes = probe.evaluations
        kernel_shifts = shifts
        if objective == "task":
            # the data pick each layer's scheme (the one whose options shift the output least over the costs
            # all reach; kernel error is no guide across schemes) and drop options another one beats on both
            # measured cost and shift; kernel error then spreads the cut across layers and ranks, as
            # fine-tuning recovers it (output shift alone concentrates the cut in layers that look
            # insensitive before fine-tuning, and measured worse after it)
            keep = []
            for (_, opts), ds in zip(rows, shifts):
                best = best_scheme([o.scheme for o in opts], [o.cost for o in opts], ds)
                mine = [i for i, o in enumerate(opts) if i == 0 or best is None or o.scheme == best]
                price = [(opts[i].cost, opts[i].macs) if policy.target_mac_ratio is not None else opts[i].cost
                         for i in mine]  # under a MAC budget a slower option with fewer MACs may be needed
                keep.append([mine[j] for j in task_frontier(price, [ds[i] for i in mine])])
            rows = [(p, [opts[i] for i in k]) for (p, opts), k in zip(rows, keep)]
            shifts = [[ds[i] for i in k] for ds, k in zip(shifts, keep)]
    kernel_rows0 = kernel_rows
    if units:  # each pair's two rows become one (its layers' own options combined, and its widths)
        price = "macs" if policy.target_mac_ratio is not None else "cost"
        rows, shifts = _merge(rows, shifts, units, policy.rank_multiple, probe, probes if probe else None,
                              price if objective == "task" else None)
        if kernel_rows0 is rows:
            kernel_rows, kernel_shifts = rows, shifts
        else:
            kernel_rows, kernel_shifts = _merge(kernel_rows0, kernel_shifts, units, policy.rank_multiple, probe,
                                                probes if probe else None, None)
        between = sum(max(0.0, u.chain_full - _cost0(rows, u.producer) - _cost0(rows, u.consumer)) for u in units)
        fixed, fixed_macs = fixed - between, fixed_macs - sum(u.between_macs for u in units)
    kernel_layers = [[(o.error ** ERROR_POWER, o.cost) for o in opts] for _, opts in rows]
    if objective == "shift":
        layers = [[(d, o.cost) for d, o in zip(ds, opts)] for ds, (_, opts) in zip(shifts, rows)]
    else:
        layers = kernel_layers

    def macs_of(picks, rws=None):
        return fixed_macs + sum(opts[i].macs for (_, opts), i in zip(rws or rows, picks))

    def cost_of(picks, rws=None):
        return fixed + sum(opts[i].cost for (_, opts), i in zip(rws or rows, picks))

    comparison = None
    single_picks = {}  # MAC budget: each single scheme's choice among all never-slower options, when it fits
    if policy.target_mac_ratio is not None:
        target_macs = policy.target_mac_ratio * prof.macs
        rule = f"auto: whole-model MACs at most {policy.target_mac_ratio:g}x"
        # each single scheme at this MAC budget (its uniform-energy ranks, measured): the fastest sets the
        # time to beat. Summed kernel error is no proxy across schemes (channel has the least on the sample
        # ResNet and the worst top-1 after fine-tuning), so speed picks it and error is minimized within it.
        single_cost, single_error = {}, {}
        for s, ranks in singles.items():
            total, err = fixed0, 0.0
            for (p, opts) in all_rows:
                r = ranks.get(id(p))
                o = next((o for o in opts if o.scheme == same_as(s, p.spec) and o.ranks == r), opts[0]) \
                    if r else opts[0]
                total, err = total + o.cost, err + o.error
            single_cost[s], single_error[s] = total, err
            picks = []
            for p, opts in kernel_rows0:
                r = ranks.get(id(p))
                i = next((i for i, o in enumerate(opts) if o.scheme == same_as(s, p.spec) and o.ranks == r), None) \
                    if r else 0
                picks.append(0 if i is None and scheme_cost(s, p.spec, r)[1] >= opts[0].macs else i)
            if None not in picks:
                mapped = _map_picks(picks, kernel_rows0, kernel_rows)
                if mapped is not None:
                    single_picks[s] = mapped
        met_singles = [s for s in singles if _single_meets(s, singles[s], all_rows, fixed_macs0, target_macs)]
        if units and all(u.single is not None for u in units):  # output-channels alone, as rewrite.thin does
            picks = tuple(next((i for i, o in enumerate(opts) if o.width == p.single), 0) if isinstance(p, Unit)
                          else 0 for p, opts in kernel_rows)
            single_cost["output-channels"] = cost_of(picks, kernel_rows)
            single_error["output-channels"] = sum(opts[i].error for (_, opts), i in zip(kernel_rows, picks))
            if macs_of(picks, kernel_rows) <= target_macs * (1 + 1e-9):
                met_singles.append("output-channels")
                single_picks["output-channels"] = picks
        to_beat = min(met_singles, key=lambda s: (single_cost[s], single_error[s])) if met_singles else None
        limit = single_cost[to_beat] if to_beat else original

        def select(lay, rws):
            def macs(picks):
                return macs_of(picks, rws)

            sel = _choose_with_macs(lay, rws, limit, fixed, macs, target_macs)
            if sel is None:  # no choice within that time meets the MACs: fewest MACs that are not slower
                picks = tuple(min(range(len(opts)), key=lambda i: (opts[i].macs, lay[k][i][0]))
                              for k, (_, opts) in enumerate(rws))
                sel = Selection(picks, cost_of(picks, rws), limit, sum(lay[k][i][0] for k, i in enumerate(picks)),
                                False)
            return dataclasses.replace(sel, met=macs(sel.picks) <= target_macs)

        comparison = {"single_scheme_cost": single_cost, "single_scheme_error": single_error,
                      "scheme_to_beat": to_beat, "cost_to_beat": limit if to_beat else None}
    else:
        ratio = policy.target_latency_ratio
        rule = f"auto: {'latency' if policy.cost_target == 'host' else policy.cost_target + ' cost'} " \
               f"at most {ratio:g}x" if measure else f"auto: MACs at most {ratio:g}x"

        def select(lay, rws):
            return choose(lay, ratio * original, fixed)

    selection = select(layers, rows)
    candidates = None
    if probe is not None:
        # per-layer shifts do not add up (damage compounds): measure whole choices with all their layers replaced
        # together, this objective's, kernel error's and each single scheme's that fits the budget, and keep
        # the one that moves the output least. All spread the cut by kernel error, which fine-tuning recovers.
        kernel_only = select([[(o.error ** ERROR_POWER, o.cost) for o in opts] for _, opts in kernel_rows],
                             kernel_rows)
        choices = {objective: (rows, shifts, selection), "kernel error": (kernel_rows, kernel_shifts, kernel_only)}
        for s_, picks in single_picks.items():
            if cost_of(picks, kernel_rows) <= limit * (1 + 1e-9) and macs_of(picks, kernel_rows) <= target_macs:
                choices[s_] = (kernel_rows, kernel_shifts, Selection(
                    picks, cost_of(picks, kernel_rows), limit,
                    sum(opts[i].error ** ERROR_POWER for (_, opts), i in zip(kernel_rows, picks)), True))
        candidates = {}
        for name, (rws, _, sel) in choices.items():
            shift, agree = probe.measure([(p, opts[i]) for (p, opts), i in zip(rws, sel.picks)])
            candidates[name] = {"shift": shift, "agreement": agree, "cost": cost_of(sel.picks, rws),
                                "macs": macs_of(sel.picks, rws), "met": bool(sel.met), "chosen": False}
        pool = [n for n in choices if choices[n][2].met] or list(choices)
        best = min(pool, key=lambda n: (candidates[n]["shift"], n != objective))
        candidates[best]["chosen"] = True
        rows, shifts, selection = choices[best]
        some = "" if probes is None else f"; {probes} per layer and scheme measured, the rest interpolated"
        what = (f"output shift (KL of the softmax) of each option alone on {probe.n} calibration images "
                f"({passes} forward passes{some})")
        objective = (f"task: per layer the scheme with the least {what} at equal measured cost, its options "
                     f"on the cost / shift frontier; kernel error across layers" if objective == "task"
                     else f"shift: summed {what}")
        objective += f"; of {', '.join(choices)} measured together, the least shift: {best}"
    elif calib is not None and policy.auto_objective != "kernel":
        objective = "kernel error: no layer to price on data"
    else:
        objective = ("kernel error: asked for (auto_objective='kernel')" if policy.auto_objective == "kernel"
                     else "kernel error: no calibration data (give calib_data to price options on the task)")
    if not selection.met:
        warnings.warn(f"auto: the budget cannot be met ({rule}); the cheapest options are used.", stacklevel=3)

    result = AutoResult(table.unit if measure else "MACs", rule, original, selection.cost, fixed, selection.met,
                        {}, table.measured if measure else 0, str(table.path) if measure else None, comparison,
                        objective, candidates, None, thinning)
    touched = [q for p, _ in rows for q in ((p.producer, p.consumer) if isinstance(p, Unit) else (p,))]

    def assign(rws, shs, sel) -> None:
        """Set every plan to the choice `sel` over `rws` (shifts `shs`), and the report's per-layer rows."""
        for q in touched:  # a choice tried before may have set them
            q.scheme = q.choice = q.reason = q.factors = None
        detail, thinned = {}, {}
        for k, ((p, opts), i) in enumerate(zip(rws, sel.picks)):
            o = opts[i]
            detail[p.site.name] = {"chosen": o.label, "cost_before": opts[0].cost, "cost_after": o.cost,
                                   "options": len(opts) - 1, "error": o.error,
                                   "shift": None if shs is None else shs[k][i]}
            if isinstance(p, Unit):
                detail[p.site.name]["unit"] = f"pair '{p.name}' -> '{p.consumer.site.name}'"
                if o.width is not None:
                    thinned[p.name] = {"width": o.width, "channels": p.pair.channels,
                                       "consumer": p.consumer.site.name}
                    for q in (p.producer, p.consumer):
                        q.reason = f"auto: output-channels, pair '{p.name}' thinned to {o.width} channels"
                    continue
                for q, qo in o.parts:
                    _apply(q, qo, 1 + sum(o2.width is None for o2 in opts[1:]))
                continue
            _apply(p, o, len(opts))
        for p in live:
            if p.choice is None and p.reason is None:
                p.reason = "auto: not measured"
        result.layers, result.thinned = detail, thinned or None
        result.predicted_cost, result.budget_met = sel.cost, sel.met

    assign(rows, shifts, selection)
    if candidates is not None and len(pool) > 1:  # `compress` may build each and judge it by a short fine-tune
        def try_choice(name: str) -> None:
            assign(*choices[name])
            for n, row in candidates.items():
                row["chosen"] = n == name
        seen, alternatives = set(), []
        for name in dict.fromkeys([best] + pool):  # a choice two objectives share is built and judged once
            rws, _, sel = choices[name]
            key = tuple((p.site.name, opts[i].label) for (p, opts), i in zip(rws, sel.picks))
            if key not in seen:
                seen.add(key)
                alternatives.append(name)
        if len(alternatives) > 1:
            result.alternatives, result.try_choice = alternatives, try_choice
    return result


def _apply(p, o, n_options: int) -> None:
    """Set the compress plan `p` to option `o` (or its reason for being kept)."""
    if o.scheme is None:
        p.reason = ("auto: no option is faster than the layer" if n_options == 1
                    else "auto: keeping it is the best use of the budget")
        return
    p.scheme = o.scheme
    p0, m0 = original_cost(p.spec)
    p1, m1 = scheme_cost(o.scheme, p.spec, o.ranks)
    p.choice = RankChoice(tuple(o.ranks), 1.0 - o.error, p1 / p0 if p0 else 1.0, m1 / m0 if m0 else 1.0)


# ------------------------------------------------------------------------------ output-channels as units


def _units(model, policy, rows, calib, table, total_macs, verbose, objective):
    """The thinnable pairs among `rows`' layers, their chains measured: (units, a line for the report).

    Under the `task` objective (fine-tuning follows) only pairs with a depthwise conv between them are offered.
    Why, measured (docs/benchmarks.md, frontier): thinning a plain conv -> conv pair shifts the output less
    than a factorization at equal cost *before* fine-tuning, so the whole-choice check picks it, but it
    recovers less in distillation: on the sample ResNet auto with every pair offered returned output-channels'
    model at 3x and 4x, 0.46 and 2.41 points below auto without it. Where a depthwise conv sits between, no
    factorization can cut it and thinning is the only way to (MobileNetV2)."""
    if calib is None:
        return [], ("output-channels not offered: it ranks channels on calibration data (give calib_data / "
                    "--calib-data)")
    units, notes = find_units(model, [p for p, _ in rows], calib, verbose)
    if objective == "task" and units:
        plain = {id(u) for u in units if not any(_is_depthwise(b) for b in u.pair.between)}
        if plain:
            units = [u for u in units if id(u) not in plain]
            pairs = f"{len(plain)} plain conv pair{'s' if len(plain) != 1 else ''}"
            notes.insert(0, f"{pairs} not offered: fine-tuning follows (task objective), and "
                         f"thinned plain pairs recover less in distillation than factorized layers "
                         f"(--auto-objective shift offers them)")
    if not units:
        why = f" ({'; '.join(notes[:3])}{'; ...' if len(notes) > 3 else ''})" if notes else ""
        return [], f"output-channels offered on no pair{why}"
    if policy.target_mac_ratio is not None:  # the widths output-channels alone takes at this budget
        alone = single_widths(units, policy.target_mac_ratio * total_macs,
                              total_macs - sum(u.full_macs for u in units), policy.rank_multiple)
        for u in units:
            u.single = None if alone is None else alone[id(u)]
            u.extra = {u.single} if u.single else set()
    measure_chains(units, table, policy.rank_multiple, MAX_RANKS_PER_SCHEME)
    return units, (f"output-channels offered on {len(units)} producer/consumer pairs, each as one choice "
                   f"with its two layers' own options" + (f"; {len(notes)} pairs left out" if notes else ""))


def _is_depthwise(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.DepthwiseConv2D)


def _cost0(rows, plan) -> float:
    """The original measured cost of `plan`'s layer, read from a merged unit row or its own row."""
    for p, opts in rows:
        if p is plan:
            return opts[0].cost
        if isinstance(p, Unit) and (p.producer is plan or p.consumer is plan):
            part = opts[0].parts[0 if p.producer is plan else 1][1]
            return part.cost
    raise KeyError(plan)


def _merge(rws, shs, units, multiple, probe, probes, frontier):
    """`rws` (and shifts `shs`) with each unit's producer and consumer rows replaced by one unit row.
    `frontier` ("cost" or "macs"): keep only the unit options on the measured cost (and MACs) / shift
    frontier, as the task objective does per layer."""
    at = {id(p): k for k, (p, _) in enumerate(rws)}
    first = {at[id(u.producer)]: u for u in units}
    skip = {at[id(u.consumer)] for u in units}
    out_rows, out_shifts = [], ([] if shs is not None else None)
    for k, (p, opts) in enumerate(rws):
        if k in skip:
            continue
        if k not in first:
            out_rows.append((p, opts))
            if shs is not None:
                out_shifts.append(shs[k])
            continue
        u = first[k]
        j = at[id(u.consumer)]
        uo, us = unit_options(u, opts, rws[j][1], multiple, MAX_RANKS_PER_SCHEME,
                              shs[k] if shs is not None else None, shs[j] if shs is not None else None)
        if us is not None:
            thin_idx = [i for i, o in enumerate(uo) if o.width is not None]
            todo = [i for i in thin_idx if uo[i].width not in u.shifts]
            if todo:
                for i, v in zip(todo, probe.layer_shifts(u, [uo[i] for i in todo], probes)):
                    u.shifts[uo[i].width] = v
            for i in thin_idx:
                us[i] = u.shifts[uo[i].width]
            if frontier is not None:  # the data pick thinning or the layers' own options, as per layer
                fam = [o.scheme if o.width is not None or o.scheme is None else "per-layer" for o in uo]
                best = best_scheme(fam, [o.cost for o in uo], us)
                keep = [i for i, f in enumerate(fam) if i == 0 or best is None or f == best]
                if best == "per-layer":  # their combinations on the cost / shift frontier (widths keep every
                    price = [(uo[i].cost, uo[i].macs) if frontier == "macs" else uo[i].cost for i in keep]
                    keep = [keep[j] for j in task_frontier(price, [us[i] for i in keep])]  # width: monotone)
                uo, us = [uo[i] for i in keep], [us[i] for i in keep]
        out_rows.append((u, uo))
        if shs is not None:
            out_shifts.append(us)
    return out_rows, out_shifts


def _map_picks(picks, rows0, rows1):
    """Per-layer `picks` over `rows0` as picks over the merged `rows1` (None when an option was pruned)."""
    by_plan = {id(p): i for (p, _), i in zip(rows0, picks)}
    out = []
    for p, opts in rows1:
        if isinstance(p, Unit):
            want = (by_plan[id(p.producer)], by_plan[id(p.consumer)])
            k = next((k for k, o in enumerate(opts) if o.index == want), None)
            if k is None:
                return None
            out.append(k)
        else:
            out.append(by_plan[id(p)])
    return tuple(out)


__all__ = ["AUTO_SCHEMES", "AutoResult", "plan_auto", "micro_model"]
