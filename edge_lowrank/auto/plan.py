"""`auto`: a scheme and ranks per layer, chosen on measured cost (latency or ARM instructions), not on MACs.

Why: MACs are a poor proxy under XNNPACK. A depthwise k x 1 conv runs at a tenth of a dense conv's MAC rate
in int8, so a cp block can be slower than the 3x3 conv it replaces; at narrow widths a Tucker-2 chain pays
three ops' overhead for few MACs saved. So every option of every layer (the layer itself; spatial, channel,
tucker2 or weight-svd at each rank on a grid of multiples of 8) is measured as a micro model on the target
(`edge_lowrank.auto.costs`, cached per op shape), options that do not beat the original layer are dropped,
and `edge_lowrank.auto.select` picks one per layer: the least summed kernel error that fits the budget.

Budgets:
    target_latency_ratio r: the model's cost (measured whole-model cost of everything that is not a
        candidate layer, plus the chosen options' measured costs) at most r times the original's.
    target_mac_ratio r: whole-model MACs at most r times the original's, reached by the latency-optimal
        choices: the largest cost budget whose choices meet the MAC budget, so MACs are cut where they buy
        time.
With `cost_target="macs"` nothing is measured (options cost their MACs): a quick, device-free mode.

cp is left out of the options: its kernel error needs a full ALS fit per rank, and its depthwise factors
run slowly in int8 under XNNPACK (see README's frontier table).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from edge_lowrank.auto.candidates import AUTO_SCHEMES, Option, layer_options
from edge_lowrank.auto.select import choose
from edge_lowrank.rank.select import RankChoice


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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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
    if scheme == "cp":
        (r,) = ranks
        return F.CPFactors(first=rnd(1, 1, cin, r), vertical=rnd(kh, 1, r, 1), horizontal=rnd(1, kw, r, 1),
                           last=rnd(1, 1, r, cout), bias=bias, relative_error=0.0, n_iter=0)
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


def _options_for(plan, allowed, multiple):
    return layer_options(plan.spec, plan.kernel, schemes=allowed, multiple=multiple)


def plan_auto(model, policy, live, *, eligible, verbose: bool = False) -> AutoResult:
    """Set `plan.scheme` and `plan.choice` (or `plan.reason`) on every live plan of `compress`.

    Args:
        model: the original model.
        policy: its `CompressionPolicy` (scheme "auto").
        live: the `compress` plans that can be rewritten (spec, kernel, input shape known).
        eligible: {id(plan): schemes `compress` allows for that layer}.
    """
    from edge_lowrank.auto.costs import CostTable, layer_key, model_key
    from edge_lowrank.profile import profile_model

    measure = policy.cost_target != "macs"
    table = CostTable(policy.cost_target, verbose=verbose) if measure else None
    rows = []  # (plan, options)
    for p in live:
        allowed = tuple(s for s in policy.auto_schemes if s in eligible[id(p)])
        opts = _options_for(p, allowed, policy.rank_multiple)
        if measure and any(d is None for d in p.input_shape[:-1]):
            p.reason = "auto: the input size is not fixed, so the layer's cost cannot be measured"
            continue
        rows.append((p, opts))
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
    # never a factorized layer slower than the layer it replaced
    rows = [(p, [opts[0]] + [o for o in opts[1:] if o.cost < opts[0].cost]) for p, opts in rows]

    prof = profile_model(model)
    cand_macs = sum(opts[0].macs for _, opts in rows)
    fixed_macs = prof.macs - cand_macs
    if measure:
        calib = policy.calib_data
        if calib is None:
            calib = np.random.default_rng(0).standard_normal((8,) + tuple(model.inputs[0].shape[1:]))
        calib = np.asarray(calib, np.float32)[:16]

        whole = table.lookup([(model_key(model), lambda: model, calib)])[0] if len(model.inputs) == 1 else None
        cand_cost = sum(opts[0].cost for _, opts in rows)
        fixed = max(0.0, whole - cand_cost) if whole is not None else 0.0
        original = fixed + cand_cost
    else:
        fixed, original = float(fixed_macs), float(prof.macs)
    layers = [[(o.error, o.cost) for o in opts] for _, opts in rows]

    if policy.target_mac_ratio is not None:
        target_macs = policy.target_mac_ratio * prof.macs
        rule = f"auto: whole-model MACs at most {policy.target_mac_ratio:g}x"

        def macs_of(sel):
            return fixed_macs + sum(opts[i].macs for (_, opts), i in zip(rows, sel.picks))

        lo_b = fixed + sum(min(c for _, c in opts) for opts in layers)
        hi_b = original
        best = choose(layers, lo_b, fixed)
        if macs_of(choose(layers, hi_b, fixed)) <= target_macs:  # the model already meets it
            best = choose(layers, hi_b, fixed)
        elif macs_of(best) > target_macs:
            # the cheapest-in-cost choices do not meet the MAC budget: take the fewest MACs instead
            picks = tuple(min(range(len(opts)), key=lambda i: (opts[i].macs, opts[i].error)) for _, opts in rows)
            best = dataclasses.replace(best, picks=picks, met=False,
                                       cost=fixed + sum(opts[i].cost for (_, opts), i in zip(rows, picks)))
        else:
            for _ in range(40):
                mid = (lo_b + hi_b) / 2
                sel = choose(layers, mid, fixed)
                if macs_of(sel) <= target_macs:
                    lo_b, best = mid, sel
                else:
                    hi_b = mid
        met = macs_of(best) <= target_macs
        selection = dataclasses.replace(best, met=met)
    else:
        ratio = policy.target_latency_ratio
        rule = f"auto: {'latency' if policy.cost_target == 'host' else policy.cost_target + ' cost'} " \
               f"at most {ratio:g}x" if measure else f"auto: MACs at most {ratio:g}x"
        selection = choose(layers, ratio * original, fixed)
    if not selection.met:
        warnings.warn(f"auto: the budget cannot be met ({rule}); the cheapest options are used.", stacklevel=3)

    from edge_lowrank.rank.schemes import cost as scheme_cost, original_cost

    detail = {}
    for (p, opts), i in zip(rows, selection.picks):
        o = opts[i]
        detail[p.site.name] = {"chosen": o.label, "cost_before": opts[0].cost, "cost_after": o.cost,
                               "options": len(opts) - 1, "error": o.error}
        if o.scheme is None:
            p.reason = ("auto: no option is faster than the layer" if len(opts) == 1
                        else "auto: keeping it is the best use of the budget")
            continue
        p.scheme = o.scheme
        p0, m0 = original_cost(p.spec)
        p1, m1 = scheme_cost(o.scheme, p.spec, o.ranks)
        p.choice = RankChoice(tuple(o.ranks), 1.0 - o.error, p1 / p0 if p0 else 1.0, m1 / m0 if m0 else 1.0)
    for p in live:
        if p.choice is None and p.reason is None:
            p.reason = "auto: not measured"
    return AutoResult(table.unit if measure else "MACs", rule, original, selection.cost, fixed, selection.met,
                      detail, table.measured if measure else 0, str(table.path) if measure else None)


__all__ = ["AUTO_SCHEMES", "AutoResult", "plan_auto", "micro_model"]
