"""`compress(model, policy)`: plan every layer, choose ranks, factorize, and clone the model with
`keras.models.clone_model(..., clone_function=...)` so that the graph (branches, residual Adds, shared layers,
nested models, inputs and outputs) stays as it was. The input model is never modified.
"""

from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np

from edge_lowrank.errors import DataError, ModelError
from edge_lowrank.rank import RankChoice, budget_energy, choose_rank, cost, full_ranks, original_cost
from edge_lowrank.rank.schemes import LayerSpec
from edge_lowrank.rewrite import graph as G
from edge_lowrank.rewrite.blocks import build_block, run_scheme
from edge_lowrank.rewrite.policy import CompressionPolicy
from edge_lowrank.rewrite.report import LayerDecision, finish_report

MAX_CALIB_IMAGES = 512
MAX_RESPONSES = 40_000

_SPATIAL_ONLY = ("spatial", "cp", "tucker2-spatial", "tucker2")


@dataclasses.dataclass
class _Plan:
    site: G.Site
    spec: LayerSpec | None = None
    kernel: np.ndarray | None = None
    bias: np.ndarray | None = None
    bn: object = None
    reason: str | None = None
    eigenvalues: np.ndarray | None = None
    responses: np.ndarray | None = None
    choice: object = None
    factors: object = None
    input_shape: tuple | None = None
    scheme: str | None = None  # the layer's own scheme (differs per layer under auto)
    eligible: tuple = ()  # auto: the schemes this layer can take
    relu: bool = False  # output, nonlinear fit: a ReLU follows (rewrite/output_fit.py)
    fit_note: str | None = None  # output: which fit made its factors (the report's reason column)


def _hw(shape):
    return (int(shape[1] or 1), int(shape[2] or 1)) if len(shape) == 4 else (int(np.prod([d or 1 for d in shape[1:-1]])), 1)


def _eligibility(layer, scheme: str) -> str | None:
    """Why `layer` cannot take `scheme` (None when it can)."""
    import keras

    L = keras.layers
    name = type(layer).__name__
    if isinstance(layer, L.SeparableConv2D):
        if scheme not in ("weight-svd", "channel"):
            return "SeparableConv2D: only its pointwise part is factorized, by weight-svd or channel"
        return None
    if isinstance(layer, L.DepthwiseConv2D):
        return "DepthwiseConv2D: already one filter per channel, nothing to factorize"
    if type(layer) is L.Conv2D:
        cfg = layer.get_config()
        if cfg.get("groups", 1) != 1:
            return f"grouped convolution (groups={cfg['groups']}) is not supported"
        if cfg.get("data_format") == "channels_first":
            return "channels_first convolution is not supported"
        k = tuple(layer.kernel.shape[:2])
        if k == (1, 1) and scheme in _SPATIAL_ONLY:
            return f"1x1 conv: {scheme} needs a spatial kernel (use weight-svd or channel for 1x1 convs)"
        if scheme in ("spatial", "cp", "tucker2-spatial") and 1 in k:
            return f"{k[0]}x{k[1]} kernel: {scheme} needs a kernel larger than 1 in both directions"
        st = tuple(cfg["strides"])
        in_shape = tuple(layer._inbound_nodes[0].input_tensors[0].shape) if layer._inbound_nodes else (None,) * 4
        if scheme == "cp" and st != (1, 1) and (st[0] != st[1] or in_shape[1] is None or in_shape[2] is None):
            return (f"cp with strides {st} needs equal strides and a known input size "
                    f"(TF depthwise convs take equal strides only)")
        if scheme == "weight-svd" and k != (1, 1):
            return f"{k[0]}x{k[1]} conv: weight-svd takes Dense and 1x1 convs (use channel or tucker2)"
        return None
    if type(layer) is L.Conv1D:
        cfg = layer.get_config()
        if cfg.get("groups", 1) != 1:
            return f"grouped convolution (groups={cfg['groups']}) is not supported"
        if cfg.get("data_format") == "channels_first":
            return "channels_first convolution is not supported"
        k = int(layer.kernel.shape[0])
        if scheme in ("spatial", "cp", "tucker2-spatial"):
            return f"Conv1D: {scheme} needs a 2-D kernel (use channel, tucker2, weight-svd or output)"
        if k == 1 and scheme == "tucker2":
            return "Conv1D of width 1: tucker2 needs a spatial kernel (use weight-svd or channel)"
        if scheme == "weight-svd" and k != 1:
            return f"Conv1D of width {k}: weight-svd takes Dense and width-1 convs (use channel or tucker2)"
        return None
    if type(layer) is L.Dense:
        if scheme in _SPATIAL_ONLY:
            return f"Dense: {scheme} is a conv scheme (use weight-svd, channel or output for Dense)"
        if len(layer.kernel.shape) != 2:
            return "Dense with a kernel that is not 2-D"
        return None
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Dense)):
        return f"{name} is a subclass of a stock layer: not rewritten"
    if isinstance(layer, _no_rewrite_types()):
        return f"{name}: no low-rank rewrite exists for this layer type"
    return "unsupported"


def _no_rewrite_types():
    """Layers that do MACs (counted by `profile`) but that no scheme rewrites: kept, with that reason."""
    import keras

    L = keras.layers
    return tuple(getattr(L, n) for n in ("Conv1DTranspose", "Conv2DTranspose", "Conv3D", "Conv3DTranspose",
                                         "DepthwiseConv1D", "SeparableConv1D", "EinsumDense") if hasattr(L, n))


def _spec_for(site: G.Site, kernel) -> tuple[LayerSpec, tuple]:
    import keras

    layer = site.layer
    calls, shapes = [], []
    for node in site.nodes:
        i, o = tuple(node.input_tensors[0].shape), tuple(node.output_tensors[0].shape)
        shapes.append(i[1:])
        calls.append((_hw(i), _hw(o)))
    if isinstance(layer, keras.layers.SeparableConv2D):
        kind, dws = "separable", tuple(layer.depthwise_kernel.shape)
    else:
        kind, dws = ("conv" if kernel.ndim == 4 else "dense"), None
    use_bias = bool(getattr(layer, "use_bias", False))
    cfg = layer.get_config()
    strides = tuple(cfg.get("strides", (1, 1))) if kind == "conv" else (1, 1)
    strides = strides + (1,) * (2 - len(strides))  # Conv1D: (s,) -> (s, 1), its kernel is (k, 1, c_in, c_out)
    spec = LayerSpec(site.name, kind, tuple(kernel.shape), tuple(calls), use_bias, dws, strides,
                     cfg.get("padding", "valid"))
    same = all(s == shapes[0] for s in shapes)
    input_shape = shapes[0] if same else tuple(None for _ in shapes[0][:-1]) + (shapes[0][-1],)
    return spec, input_shape


def _weights(layer):
    import keras

    if isinstance(layer, keras.layers.SeparableConv2D):
        kernel = layer.pointwise_kernel.numpy()
    else:
        kernel = layer.kernel.numpy()
    if kernel.ndim == 3:  # Conv1D (k, c_in, c_out): a k x 1 Conv2D kernel for every scheme
        kernel = kernel[:, None]
    bias = layer.bias.numpy() if getattr(layer, "use_bias", False) and layer.bias is not None else None
    for w in layer.weights:
        if not np.all(np.isfinite(w.numpy())):
            raise ModelError(f"Layer '{layer.name}' holds NaN or Inf weights ({w.path}): the model is broken; "
                             f"retrain or repair it before compressing.")
    return kernel.astype(np.float64), None if bias is None else bias.astype(np.float64)


RESPONSE_BATCH = 32


def _response_fn(plan: _Plan, n_images: int, seed: int = 0):
    """x (a batch of the layer's inputs) -> its linear outputs (bias in, activation out) at sampled positions,
    about MAX_RESPONSES over `n_images` images. Given several batches of inputs (the original and the
    compressed model's), a tuple of outputs at the same positions."""
    import keras

    w = plan.kernel.astype(np.float32)
    b = np.zeros(w.shape[-1], np.float32) if plan.bias is None else plan.bias.astype(np.float32)
    rng = np.random.default_rng(seed)
    if w.ndim == 2:
        def dense(*xs):
            out = tuple(x.reshape(-1, w.shape[0]) @ w + b for x in xs)
            return out if len(xs) > 1 else out[0]

        return dense
    cfg, lin = plan.site.layer.get_config(), None
    per = max(1, MAX_RESPONSES // n_images)

    def conv(x, *more):
        nonlocal lin
        if lin is None:
            if x.ndim == 3:  # Conv1D: its own kernel (k, c_in, c_out), causal padding included
                lin = keras.layers.Conv1D(w.shape[3], w.shape[0], strides=cfg["strides"], padding=cfg["padding"],
                                          dilation_rate=cfg["dilation_rate"], dtype="float32")
                lin.build((None,) + x.shape[1:])
                lin.set_weights([w[:, 0], b])
            else:
                lin = keras.layers.Conv2D(w.shape[3], w.shape[:2], strides=cfg["strides"], padding=cfg["padding"],
                                          dilation_rate=cfg["dilation_rate"], dtype="float32")
                lin.build((None,) + x.shape[1:])
                lin.set_weights([w, b])
        outs = [np.asarray(lin(v)).reshape(len(v), -1, w.shape[3]) for v in (x, *more)]
        pick = rng.choice(outs[0].shape[1], size=min(per, outs[0].shape[1]), replace=False)
        picked = tuple(o[:, pick].reshape(-1, w.shape[3]) for o in outs)
        return picked if more else picked[0]

    return conv


def _collect_responses(plans, feeders, calib, seed: int = 0) -> None:
    """Fill `plan.responses` for every plan: one pass of the calibration data per (sub)model, in batches,
    all the layers' inputs read at once (a model per layer cost minutes on 50-layer networks)."""
    import keras

    groups = {}
    for p in plans:
        groups.setdefault(id(p.site.model), []).append(p)
    for group in groups.values():
        m = group[0].site.model
        mx = G.model_inputs_on(feeders, m, calib)
        xs = list(mx) if isinstance(mx, (list, tuple)) else [mx]
        n = len(xs[0])
        probe = keras.Model(m.inputs, [p.site.nodes[0].input_tensors[0] for p in group])
        fns = [_response_fn(p, n, seed) for p in group]
        rows = [[] for _ in group]
        for i in range(0, n, RESPONSE_BATCH):
            batch = [x[i:i + RESPONSE_BATCH] for x in xs]
            outs = probe(batch, training=False)  # a list, as the probe was built on `m.inputs`
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            for fn, r, o in zip(fns, rows, outs):
                r.append(fn(np.asarray(o, np.float32)))
        rng = np.random.default_rng(seed)
        for p, r in zip(group, rows):
            y = np.concatenate(r)
            if len(y) > MAX_RESPONSES:
                y = y[rng.choice(len(y), MAX_RESPONSES, replace=False)]
            p.responses = y.astype(np.float64)


def _check_calib(model, policy):
    """The calibration inputs as the model takes them (one array, or a list for several inputs), checked."""
    if policy.scheme not in ("output", "auto") or policy.scheme == "auto" and policy.calib_data is None:
        return None
    if policy.calib_data is None:
        raise DataError("The `output` scheme fits each layer to its responses on real data: it needs "
                        "calibration inputs (`calib_data`; on the command line --calib-data DATA).")
    given = policy.calib_data
    many = isinstance(given, (list, tuple))
    xs = list(given) if many else [given]
    if len(xs) != len(model.inputs):
        raise DataError(f"The model has {len(model.inputs)} inputs: give the calibration data as a list of "
                        f"{len(model.inputs)} arrays, one per input (received {len(xs)}).")
    out = []
    for i, (x, t) in enumerate(zip(xs, model.inputs)):
        x = np.asarray(x, np.float32)
        want = tuple(t.shape[1:])
        if x.ndim == len(want) and want[-1] == 1 and x.shape[1:] == want[:-1]:
            x = x[..., None]
        fits = x.ndim == len(want) + 1 and all(w is None or w == d for w, d in zip(want, x.shape[1:]))
        if not fits or len(x) < 2:
            what = f"input {i} " if len(xs) > 1 else ""
            raise DataError(f"Calibration data of shape {x.shape} does not fit the model's {what}input {want} "
                            f"(need at least 2 images).")
        if not np.all(np.isfinite(x)):
            raise DataError("Calibration data holds NaN or Inf.")
        out.append(x[:MAX_CALIB_IMAGES])
    if len({len(x) for x in out}) > 1:
        raise DataError(f"Calibration arrays of the model's inputs differ in length: {[len(x) for x in out]}.")
    return out if many else out[0]


def _auto_eligibility(layer, schemes) -> tuple[tuple[str, ...], str | None]:
    """auto: the schemes `layer` can take, and why none when there are none."""
    reasons = {s: _eligibility(layer, s) for s in schemes}
    ok = tuple(s for s, r in reasons.items() if r is None)
    if ok:
        return ok, None
    if all(r == "unsupported" for r in reasons.values()):
        return (), "unsupported"
    return (), "; ".join(sorted({r for r in reasons.values() if r != "unsupported"}))


def _wanted(site: G.Site, policy) -> bool:
    return policy.layers is None or site.name in policy.layers or site.layer.name in policy.layers


def compress(model, policy: CompressionPolicy | None = None, *, verbose: bool = False):
    """Rewrite `model`'s Conv2D/Dense layers (and SeparableConv2D pointwise parts) with `policy.scheme`.

    Args:
        model: a Sequential or Functional Keras 3 model (nested models allowed).
        policy: a `CompressionPolicy` (default: tucker2 at energy 0.9).
        verbose: print one line per layer as it is factorized (CP can take seconds per layer).

    Returns:
        (new_model, RewriteReport). The new model holds only stock Keras layers.

    Raises:
        ModelError: not a Keras model, a subclassed model, NaN/Inf weights, or a rank above every layer's
            full rank.
        DataError: the `output` scheme without (fitting) calibration data.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((8, 8, 16)), keras.layers.Conv2D(32, 3)])
        >>> new, rep = compress(m, CompressionPolicy("tucker2", rank=8))
        >>> rep.changed
        True
    """
    import keras

    policy = policy or CompressionPolicy()
    if policy.scheme == "output-channels":  # thinner feature maps: its own graph surgery (rewrite/thin.py)
        from edge_lowrank.rewrite.thin import thin

        return thin(model, policy, verbose=verbose)
    if not isinstance(model, keras.Model):
        raise ModelError(f"compress() takes a Keras model. Received: {type(model).__name__}.")
    start = time.monotonic()
    calib = _check_calib(model, policy)
    scheme = policy.scheme
    feeders, plans = {}, []
    seen = set()
    calls = G.layer_calls(model)
    for m, prefix, feeder in G.walk(model):
        if feeder is not None:
            feeders[id(m)] = feeder
        pairs = G.foldable_batchnorm(m, calls) if policy.fold_batchnorm else {}
        for site in G.sites(m, prefix):
            if id(site.layer) in seen:
                continue
            seen.add(id(site.layer))
            if scheme == "auto":
                ok, reason = _auto_eligibility(site.layer, [s for s in policy.auto_schemes if s != "output-channels"])
                if reason is not None and "output-channels" in policy.auto_schemes and \
                        type(site.layer) in (keras.layers.Conv2D, keras.layers.Dense):
                    ok, reason = (), None  # no scheme of its own, but it may be thinned as part of a pair
            else:
                ok, reason = (scheme,), _eligibility(site.layer, scheme)
            if reason == "unsupported":
                continue
            plan = _Plan(site, eligible=ok)
            plans.append(plan)
            if reason is None and not _wanted(site, policy):
                reason = "not among the layers asked for"
            if reason is None and not site.nodes:
                reason = "not called in the model's graph"
            if reason is None and scheme == "output" and site.nodes and feeders.get(id(m)) is None and m is not model:
                reason = "output scheme: cannot trace calibration data into this nested model"
            plan.reason = reason
            if reason is not None:
                continue
            plan.kernel, plan.bias = _weights(site.layer)
            if id(site.layer) in pairs:
                plan.bn = pairs[id(site.layer)]
                plan.kernel, plan.bias = G.fold_batchnorm(plan.kernel, plan.bias, plan.bn)
            plan.spec, plan.input_shape = _spec_for(site, plan.kernel)
            if plan.bias is not None and not plan.spec.use_bias:
                plan.spec = dataclasses.replace(plan.spec, use_bias=True)
    live = [p for p in plans if p.reason is None]
    if scheme == "output":
        from edge_lowrank.factorize.output import response_stats

        _collect_responses(live, feeders, calib)
        for p in live:
            p.eigenvalues = response_stats(p.responses, p.kernel)[1]
            p.spec = dataclasses.replace(p.spec, n_responses=len(p.responses))
    auto = None
    if scheme == "auto":
        from edge_lowrank.auto.plan import plan_auto

        auto = plan_auto(model, policy, live, eligible={id(p): p.eligible for p in live}, calib=calib,
                         verbose=verbose)
    else:
        for p in live:
            p.scheme = scheme
        _choose_ranks(model, policy, plans, live)
    if auto is not None and auto.alternatives and policy.trial_data is not None:
        from edge_lowrank.auto.trial import judge

        new_model, decisions = judge(model, policy, auto, lambda: _build(model, policy, plans, live, calib, auto,
                                                                         verbose))
    else:
        new_model, decisions = _build(model, policy, plans, live, calib, auto, verbose)
    notes = () if scheme == "auto" else (lambda before, after: _budget_notes(policy, decisions, before, after))
    report = finish_report(scheme, policy, decisions, model, new_model, time.monotonic() - start, notes,
                           auto=None if auto is None else auto.to_dict())
    return new_model, report


def _build(model, policy, plans, live, calib, auto, verbose: bool):
    """Factorize every plan with a choice, clone the model with the factor blocks, thin the pairs `auto` chose:
    (the new model, one decision per plan)."""
    scheme = policy.scheme
    fit = policy.output_fit if scheme == "output" else "linear"
    if fit != "linear":
        from edge_lowrank.rewrite import output_fit as OF

        for p in live:
            p.relu = OF.nonlinear(fit) and OF.relu_after(p.site, p.bn)
    for p in live:
        if p.reason is not None:
            continue
        if verbose:
            print(f"  {p.site.name}: {p.scheme} at ranks {p.choice.rank} ...", flush=True)
        t0 = time.monotonic()
        if fit != "linear" and not (OF.asymmetric(fit) and OF.refit(model, p)):  # refit ones: linear first
            p.factors = _fit_output(p, p.responses, None)
            continue
        p.factors = run_scheme(p.scheme, p.spec.kind, p.kernel, p.choice.rank, p.bias, responses=p.responses,
                               cp_n_iter_max=policy.cp_n_iter_max, cp_time_budget_s=policy.cp_time_budget_s)
        if verbose:
            print(f"  {p.site.name}: done in {time.monotonic() - t0:.1f} s, relative error "
                  f"{p.factors.relative_error:.4f}", flush=True)
    new_model = _clone(model, plans)
    if fit != "linear" and OF.asymmetric(fit):
        done = [p for p in live if p.reason is None]
        OF.fit_asymmetric(model, new_model, done, calib, _fit_output, _response_fn, MAX_RESPONSES,
                          RESPONSE_BATCH, verbose)
    decisions = _decisions(plans, scheme)
    if auto is not None and auto.thinned:  # the pairs auto chose to thin, on the rewritten model's inputs
        from edge_lowrank.auto.thin_units import apply_thinning

        new_model, thin_rows = apply_thinning(new_model, policy, auto.thinned, verbose)
        by_name = {d.name: d for d in thin_rows}
        decisions = [by_name.pop(d.name, d) for d in decisions] + list(by_name.values())
        order = {s.name: i for i, s in enumerate(s for m, prefix, _ in G.walk(model) for s in G.sites(m, prefix))}
        decisions.sort(key=lambda d: order.get(d.name, len(order)))  # thinned BN / depthwise rows in place
    return new_model, decisions


def _fit_output(p: _Plan, targets, inputs):
    """The `output` fit beyond the linear one: nonlinear where a ReLU follows, asymmetric given `inputs`."""
    from edge_lowrank.factorize.output_nonlinear import output_fit

    f = output_fit(p.kernel, p.choice.rank[0], targets, inputs, p.bias, relu=p.relu)
    p.fit_note = (f"{'nonlinear (post-ReLU)' if p.relu else 'linear (no ReLU after it)'} fit, "
                  f"{'asymmetric' if inputs is not None else 'symmetric'}")
    return f


BUDGET_SLACK = 0.05  # a budget met this far under its target (0.5 -> below 0.45) gets a note saying why


def _budget_notes(policy, decisions, before, after) -> list[str]:
    """Why a global budget was not met, or was met well under its target, in words a user can act on."""
    if policy.target_mac_ratio is not None:
        metric, target, b, a = "MACs", policy.target_mac_ratio, before.macs, after.macs
    elif policy.target_param_ratio is not None:
        metric, target, b, a = "parameters", policy.target_param_ratio, before.params, after.params
    else:
        return []
    if not b:
        return []
    got = a / b
    if target - BUDGET_SLACK <= got <= target + 1e-9:
        return []
    key = "macs_before" if metric == "MACs" else "params_before"
    kept = {}
    for d in decisions:
        if d.action == "kept":
            why = d.reason or "kept"
            why = "too small to shrink" if "would not shrink" in why else why.split(":")[0]
            kept[why] = kept.get(why, 0) + getattr(d, key)
    share = sum(kept.values()) / b
    parts = ", ".join(f"{k} {v / b:.0%}" for k, v in sorted(kept.items(), key=lambda kv: -kv[1]) if v / b >= 0.005)
    if got > target:
        rest = ("it rewrites no layer" if not any(d.action == "factorized" for d in decisions)
                else "the layers it rewrites are at their smallest ranks")
        why = (f"{share:.0%} of them are in layers it keeps ({parts}; the table says why for each)" if parts
               else "no layer it takes can be cut further")
        return [f"the {metric} budget {target} cannot be met with {policy.scheme}: it reached {got:.3f}x; "
                f"{why}, and {rest}."]
    return [f"the {metric} budget {target} is met at {got:.3f}x, well under it: ranks move in steps of "
            f"{policy.rank_multiple} (rank_multiple) and the next step of any layer would pass the budget"
            + ("; --rank-multiple 1 lands closer" if policy.rank_multiple > 1 else "") + "."]


def _choose_ranks(model, policy, plans, live):
    scheme, rule = policy.scheme, policy.rule
    if rule:
        if "rank" in rule:
            fulls = [max(full_ranks(scheme, p.spec)) for p in live]
            if fulls and rule["rank"] > max(fulls):
                raise ModelError(f"Invalid value for argument `rank`. It is above the full rank of every layer "
                                 f"the {scheme} scheme can take (the largest is {max(fulls)}). "
                                 f"Received: rank={rule['rank']}.")
        for p in live:
            p.choice = choose_rank(scheme, p.spec, p.kernel, multiple=policy.rank_multiple,
                                   eigenvalues=p.eigenvalues, **rule)
    else:
        from edge_lowrank.profile import profile_model

        metric = "macs" if policy.target_mac_ratio is not None else "params"
        ratio = policy.target_mac_ratio if metric == "macs" else policy.target_param_ratio
        prof = profile_model(model)
        total = prof.macs if metric == "macs" else prof.params
        idx = 1 if metric == "macs" else 0
        cand = sum(original_cost(p.spec)[idx] for p in live)
        bn_params = sum(int(sum(np.prod(w.shape) for w in p.bn.weights)) for p in live if p.bn is not None)
        fixed = total - cand - (bn_params if metric == "params" else 0)
        with warnings.catch_warnings():  # compress says it once, with the reason, in the report's notes
            warnings.simplefilter("ignore")
            energy, ranks = budget_energy([(scheme, p.spec, p.kernel, p.eigenvalues) for p in live], ratio,
                                          fixed_cost=fixed, metric=metric, multiple=policy.rank_multiple)
        for p, rs in zip(live, ranks):
            p0, m0 = original_cost(p.spec)
            p1, m1 = cost(scheme, p.spec, rs)
            p.choice = RankChoice(tuple(rs), energy, p1 / p0 if p0 else 1.0, m1 / m0 if m0 else 1.0)
    overrides = policy.layer_ranks or {}
    unknown = set(overrides) - {p.site.name for p in live} - {p.site.layer.name for p in live}
    if unknown:
        raise ModelError(f"Invalid value for argument `layer_ranks`: no layer the {scheme} scheme can take is "
                         f"named {', '.join(sorted(unknown))}.")
    for p in live:
        full = full_ranks(scheme, p.spec)
        r = overrides.get(p.site.name, overrides.get(p.site.layer.name))
        if r is not None:
            rs = (int(r),) * len(full) if isinstance(r, (int, np.integer)) else tuple(int(x) for x in r)
            if len(rs) != len(full) or any(x > f for x, f in zip(rs, full)):
                raise ModelError(f"Invalid value for argument `layer_ranks`. Expected {len(full)} rank(s) each at "
                                 f"most {'x'.join(map(str, full))} for layer '{p.site.name}'. Received: {r!r}.")
            p0, m0 = original_cost(p.spec)
            p1, m1 = cost(scheme, p.spec, rs)
            p.choice = dataclasses.replace(p.choice, rank=rs, kept_energy=None, param_ratio=p1 / p0,
                                           mac_ratio=m1 / m0 if m0 else 1.0)
    for p in live:
        full = full_ranks(scheme, p.spec)
        c = p.choice
        if policy.skip_unprofitable and rule.get("rank") is not None and len(full) == 1 and c.rank[0] >= full[0]:
            p.reason = f"rank {rule['rank']} is not below full rank {full[0]}: nothing to factorize"
            warnings.warn(f"Layer '{p.site.name}': {p.reason}; kept as it is.", stacklevel=3)
        elif policy.skip_unprofitable and (c.param_ratio >= 1.0 or c.mac_ratio >= 1.0):
            p.reason = (f"ranks {'x'.join(map(str, c.rank))} would not shrink it "
                        f"({c.param_ratio:.2f}x parameters, {c.mac_ratio:.2f}x MACs)")
            if rule.get("rank") is not None or rule.get("fraction") is not None:
                warnings.warn(f"Layer '{p.site.name}': {p.reason}; kept as it is.", stacklevel=3)


def _clone(model, plans):
    import keras

    by_id = {id(p.site.layer): p for p in plans}
    bn_skip = {id(p.bn) for p in plans if p.bn is not None and p.reason is None}
    copies = []
    built, replaced = {}, set()

    def clone_fn(layer):
        if id(layer) in built:
            return built[id(layer)]
        p = by_id.get(id(layer))
        if isinstance(layer, keras.Model):
            new = rewrite_model(layer)
        elif p is not None and p.reason is None:
            dk = layer.depthwise_kernel.numpy() if isinstance(layer, keras.layers.SeparableConv2D) else None
            new = build_block(layer, p.factors, p.input_shape, dk)
        elif id(layer) in bn_skip:
            new = keras.layers.Identity(name=layer.name)
        else:
            new = layer.__class__.from_config(layer.get_config())
            copies.append((layer, new))
        if not copies or copies[-1][1] is not new:
            replaced.add(id(new))
        built[id(layer)] = new
        return new

    def rewrite_model(m):
        G.functional_of(m)  # raises a clear error for subclassed or unbuilt models
        if isinstance(m, keras.Sequential):  # layers are listed, not called: no call options to drop
            return keras.models.clone_model(m, clone_function=clone_fn)
        return keras.models.clone_model(m, clone_function=clone_fn, call_function=call_fn)

    def call_fn(layer, *args, **kwargs):
        if id(layer) in replaced:  # a folded BN's Identity or a factor block: drop unset call options (mask)
            kwargs = {k: v for k, v in kwargs.items() if v is not None}
        return layer(*args, **kwargs)

    new_model = rewrite_model(model)
    for old, new in copies:
        if getattr(old, "weights", None):  # ops such as keras.ops.add in MobileNetV3's hard-swish have none
            new.set_weights(old.get_weights())
    return new_model


def _decisions(plans, scheme):
    rows = []
    for p in plans:
        layer = p.site.layer
        pb = int(sum(np.prod(w.shape) for w in layer.weights))
        from edge_lowrank.profile import layer_macs

        mb = layer_macs(layer, p.site.nodes)  # every call of a shared layer, as the factorized cost counts
        if p.reason is not None or p.factors is None:
            rows.append(LayerDecision(p.site.name, type(layer).__name__, scheme, "kept", p.reason or "not chosen",
                                      None, pb, pb, mb, mb, None))
            continue
        p1, m1 = cost(p.scheme, p.spec, p.choice.rank)
        rows.append(LayerDecision(p.site.name, type(layer).__name__, p.scheme, "factorized", p.fit_note,
                                  tuple(int(r) for r in p.choice.rank), pb, p1, mb, m1,
                                  float(p.factors.relative_error), p.choice.kept_energy,
                                  getattr(p.factors, "response_error", None)))
        if p.bn is not None:
            nb = int(sum(np.prod(w.shape) for w in p.bn.weights))
            rows.append(LayerDecision(p.site.prefix + p.bn.name, "BatchNormalization", scheme, "folded",
                                      f"folded into '{layer.name}'", None, nb, 0, 0, 0, None))
    return rows
