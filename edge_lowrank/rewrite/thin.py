"""Scheme `output-channels`: thinner feature maps, channel reduction with reconstruction (He et al. 2017).

For each producer (Conv2D or Dense) whose output reaches exactly one consumer (Conv2D or Dense) through
per-channel layers only (BatchNormalization, activations, DepthwiseConv2D, padding, pooling, dropout), choose
which output channels to keep from calibration data (`factorize.channel_select`: greedy backward elimination
on the consumer's reconstruction), drop the others from the producer and the layers in between, and refit the
consumer's kernel and bias by least squares to reproduce its original linear outputs. A bias shift of a
consumer without bias goes into the BatchNormalization right after it (its moving mean), else the consumer
takes a bias. The model is rebuilt by `keras.models.clone_model` with the same stock layers, fewer channels.

A producer whose channels are tied to other layers (an Add or Concatenate, several consumers, a model output,
Flatten/Reshape) is kept, with the reason in the report. Widths are chosen on the original model's
activations; by default each pair is then refit, in graph order, on the inputs the already-thinned model gives
it (asymmetric, He et al.), so it absorbs the error of the pairs before it (`thin(..., asymmetric=False)`
fits every pair on the original activations).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from edge_lowrank.errors import DataError, ModelError
from edge_lowrank.factorize import channel_select as CS
from edge_lowrank.rank.select import RankError
from edge_lowrank.rewrite import graph as G
from edge_lowrank.rewrite.report import LayerDecision, finish_report

SCHEME = "output-channels"
MAX_ROWS = 16_000  # patch rows per consumer moment (sampled over the calibration images)
BATCH = 16

_PASS = ("BatchNormalization", "ReLU", "LeakyReLU", "ELU", "PReLU", "Activation", "DepthwiseConv2D", "ZeroPadding2D",
         "Cropping2D", "UpSampling2D", "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
         "AlphaDropout", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
         "Identity")
_NOT_PER_CHANNEL = ("softmax", "log_softmax")


@dataclasses.dataclass
class _Pair:
    producer: object
    model: object
    prefix: str
    channels: int
    between: list = dataclasses.field(default_factory=list)
    consumer: object = None
    consumer_node: object = None
    reason: str | None = None
    moment: np.ndarray | None = None
    path: CS.ChannelPath | None = None
    width: int | None = None
    refit_error: float | None = None
    rows: int = 0  # calibration rows behind `moment`
    cross: np.ndarray | None = None  # asymmetric fit: E[[1, p_thin]^T [1, p_orig]]
    orig: np.ndarray | None = None  # asymmetric fit: the original inputs' moment

    @property
    def ridge(self) -> float:
        """Stronger pull towards the original weights when there are fewer rows than unknowns (a Dense
        consumer after global pooling sees one row per image)."""
        return CS.DEFAULT_RIDGE * max(1.0, len(self.moment) / max(self.rows, 1))

    @property
    def name(self) -> str:
        return self.prefix + self.producer.name


def _producer_reason(layer) -> str | None:
    """Why `layer` cannot have its output channels cut (None when it can); "unsupported" for other types."""
    import keras

    L = keras.layers
    if type(layer) is L.Conv2D:
        cfg = layer.get_config()
        if cfg.get("groups", 1) != 1:
            return f"grouped convolution (groups={cfg['groups']}) is not supported"
        if cfg.get("data_format") == "channels_first":
            return "channels_first convolution is not supported"
        return None
    if type(layer) is L.Dense:
        return None if len(layer.kernel.shape) == 2 else "Dense with a kernel that is not 2-D"
    return "unsupported"


def _pass_through(layer, node) -> bool:
    """Whether `layer` (called at `node`) keeps channel c of its input in channel c of its output, alone."""
    name = type(layer).__name__
    if name not in _PASS:
        return False
    cfg = layer.get_config()
    if name == "BatchNormalization":
        return _last_axis(layer, node)
    if name == "Activation":
        return cfg.get("activation") not in _NOT_PER_CHANNEL
    if name == "PReLU":
        return False  # its alpha may be shared over channels: keep it simple
    if name == "DepthwiseConv2D":
        return cfg.get("depth_multiplier", 1) == 1 and cfg.get("data_format") != "channels_first"
    if cfg.get("data_format") == "channels_first":
        return False
    return True


def _last_axis(bn, node) -> bool:
    return bn.axis in (-1, len(node.input_tensors[0].shape) - 1)


def _consumer_reason(layer) -> str | None:
    r = _producer_reason(layer)
    return None if r is None else (f"{type(layer).__name__} '{layer.name}'" + ("" if r == "unsupported" else f": {r}"))


def _find_pairs(model) -> tuple[list[_Pair], dict]:
    """Every producer with its chain to a consumer, or the reason it has none; and the nested models' feeders."""
    pairs, feeders, seen = [], {}, set()
    for m, prefix, feeder in G.walk(model):
        if feeder is not None:
            feeders[id(m)] = feeder
        fm = G.functional_of(m)
        nodes = G.graph_nodes(m)
        consumers, calls = {}, {}
        for n in nodes:
            calls[id(n.operation)] = calls.get(id(n.operation), 0) + 1
            for parent in n.parent_nodes:
                consumers.setdefault(id(parent), []).append(n)
        outputs = {id(t) for t in fm.outputs}
        for site in G.sites(m, prefix):
            layer = site.layer
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            reason = _producer_reason(layer)
            if reason == "unsupported":
                continue
            p = _Pair(layer, m, prefix, int(layer.kernel.shape[-1]))
            pairs.append(p)
            if reason is None and len(site.nodes) != 1:
                reason = ("not called in the model's graph" if not site.nodes
                          else f"called {len(site.nodes)} times (shared layer): its channels serve every call")
            if reason is None and m is not model and feeder is None:
                reason = "cannot trace calibration data into this nested model (it is called more than once)"
            p.reason = reason or _chain(p, site.nodes[0], consumers, calls, outputs)
    return pairs, feeders


def _chain(p: _Pair, node, consumers: dict, calls: dict, outputs: set) -> str | None:
    """Follow `node`'s output through per-channel layers to its consumer; the reason when it cannot."""
    import keras

    while True:
        if any(id(t) in outputs for t in node.output_tensors):
            where = "its output" if node.operation is p.producer else f"the output of '{node.operation.name}'"
            return f"{where} is an output of model '{p.model.name}': its channels are fixed"
        nxt = consumers.get(id(node), [])
        if len(nxt) != 1:
            names = ", ".join(sorted({f"'{n.operation.name}'" for n in nxt}))
            return f"its output feeds {len(nxt)} layers ({names}): channels tied across branches" if nxt \
                else "its output feeds nothing"
        n2 = nxt[0]
        op = n2.operation
        what = f"{type(op).__name__} '{op.name}'"
        if isinstance(op, keras.Model):
            return f"its output feeds nested model '{op.name}'"
        if calls.get(id(op), 0) != 1:
            return f"its output feeds {what}, which is called more than once (shared layer)"
        if len(n2.input_tensors) != 1 or len(n2.parent_nodes) != 1:
            tied = " (channels tied across branches)" if type(op).__name__ in ("Add", "Concatenate", "Subtract",
                                                                               "Multiply", "Average", "Maximum",
                                                                               "Minimum") else ""
            return f"its output feeds {what}, which takes several inputs{tied}"
        if any(v is not None for v in n2.arguments.kwargs.values() if not isinstance(v, bool)):
            return f"its output feeds {what} with call arguments the rewrite cannot keep"
        if type(op) in (keras.layers.Conv2D, keras.layers.Dense):
            r = _consumer_reason(op)
            if r is not None:
                return f"its consumer {r}"
            p.consumer, p.consumer_node = op, n2
            return None
        if not _pass_through(op, n2):
            return f"its output feeds {what}, which mixes or reshapes channels"
        p.between.append(op)
        node = n2


def _collect_moments(pairs, feeders, calib, seed: int = 0) -> None:
    """Each pair's augmented second moment of its consumer's input patches: one pass per (sub)model."""
    import keras

    groups = {}
    for p in pairs:
        groups.setdefault(id(p.model), []).append(p)
    for group in groups.values():
        m = group[0].model
        fm = G.functional_of(m)
        mx = G.model_inputs_on(feeders, m, calib)
        xs = list(mx) if isinstance(mx, (list, tuple)) else [mx]
        n = len(xs[0])
        probe = keras.Model(fm.inputs, [p.consumer_node.input_tensors[0] for p in group])
        rng = np.random.default_rng(seed)
        sums = [None] * len(group)
        counts = [0] * len(group)
        for i in range(0, n, BATCH):
            batch = [x[i:i + BATCH] for x in xs]
            outs = probe(batch, training=False)  # a list, as the probe was built on the model's inputs
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            for j, (p, o) in enumerate(zip(group, outs)):
                o = np.asarray(o, np.float32)
                rows = _patch_rows(p, o, n, rng)
                a, c = CS.augmented_moment(rows)
                sums[j] = a if sums[j] is None else sums[j] + a
                counts[j] += c
        for p, a, c in zip(group, sums, counts):
            p.moment, p.rows = a / c, c


def _patch_rows(p: _Pair, x: np.ndarray, n_images: int, rng) -> np.ndarray:
    """A batch's rows of the consumer's input patches, sampled so that all images give about MAX_ROWS."""
    layer, c = p.consumer, x.shape[-1]
    if x.ndim == 4 and type(layer).__name__ == "Conv2D":
        cfg = layer.get_config()
        k = tuple(layer.kernel.shape[:2])
        want = min(MAX_ROWS, max(4000, 8 * (k[0] * k[1] * c + 1)))
        return CS.patches(x, k, tuple(cfg["strides"]), cfg["padding"], tuple(cfg["dilation_rate"]),
                          max(1, -(-want // n_images)), rng)
    flat = x.reshape(-1, c)  # Dense: one row per position
    room = max(1, -(-MAX_ROWS // n_images)) * len(x)
    return flat[np.sort(rng.choice(len(flat), room, replace=False))] if len(flat) > room else flat


def _consumer_kernel(p: _Pair):
    w = p.consumer.kernel.numpy().astype(np.float64)
    b = p.consumer.bias.numpy().astype(np.float64) if p.consumer.use_bias else None
    return w, b


# --------------------------------------------------------------------------------------- widths and costs


class _Costs:
    """Whole-model MACs and parameters for a width per pair, counted like `edge_lowrank.profile`."""

    def __init__(self, model, pairs):
        from edge_lowrank.profile import layer_macs, profile_model

        prof = profile_model(model)
        self.total = {"macs": prof.macs, "params": prof.params}
        self.layers = {}  # id -> [layer, name, macs, kernel params, other params, in pair, out pair]
        sites = {id(s.layer): s for m, prefix, _ in G.walk(model) for s in G.sites(m, prefix)}

        def entry(layer, prefix):
            if id(layer) not in self.layers:
                s = sites.get(id(layer))
                macs = layer_macs(layer, s.nodes) if s is not None else 0
                kern = int(np.prod(layer.kernel.shape)) if hasattr(layer, "kernel") and \
                    type(layer).__name__ in ("Conv2D", "Dense") else 0
                params = int(sum(np.prod(w.shape) for w in layer.weights))
                self.layers[id(layer)] = {"layer": layer, "name": prefix + layer.name, "macs": macs, "kernel": kern,
                                          "params": params, "in": None, "out": None}
            return self.layers[id(layer)]

        for i, p in enumerate(pairs):
            entry(p.producer, p.prefix)["out"] = i
            for b in p.between:
                entry(b, p.prefix)["out"] = i
            entry(p.consumer, p.prefix)["in"] = i
        self.pairs = pairs

    def layer_cost(self, e, widths) -> tuple[int, int]:
        fin = widths[e["in"]] / self.pairs[e["in"]].channels if e["in"] is not None else 1.0
        fout = widths[e["out"]] / self.pairs[e["out"]].channels if e["out"] is not None else 1.0
        if e["kernel"]:  # Conv2D / Dense: the kernel scales with both, the bias with the outputs
            return (e["macs"] * fin * fout, e["kernel"] * fin * fout + (e["params"] - e["kernel"]) * fout)
        f = fout if e["out"] is not None else fin  # per-channel layers in between
        return e["macs"] * f, e["params"] * f

    def model_cost(self, widths, metric: str) -> float:
        i = 0 if metric == "macs" else 1
        full = [p.channels for p in self.pairs]
        delta = sum(self.layer_cost(e, widths)[i] - self.layer_cost(e, full)[i] for e in self.layers.values())
        return self.total[metric] + delta


def _choose_widths(model, policy, pairs) -> list[str]:
    """Set `p.width` for every live pair from the policy's rule; return notes about the budget."""
    multiple = policy.rank_multiple
    notes = []
    if policy.vbmf:
        raise RankError("The output-channels scheme has no VBMF rule: give --rank, --rank-fraction, --energy "
                        "or a --target-mac-ratio / --target-param-ratio budget.")
    overrides = dict(policy.layer_ranks or {})
    by_name = {}
    for p in pairs:
        by_name[p.name] = p
        by_name.setdefault(p.producer.name, p)
    unknown = [k for k in overrides if k not in by_name]
    if unknown:
        raise ModelError(f"Invalid value for argument `layer_ranks`: no layer whose output channels the "
                         f"output-channels scheme can cut is named {', '.join(sorted(unknown))}.")
    for k, r in overrides.items():
        p = by_name[k]
        w = r if isinstance(r, (int, np.integer)) else (r[0] if len(r) == 1 else None)
        if w is None or w > p.channels:
            raise ModelError(f"Invalid value for argument `layer_ranks`. Expected one channel count of at most "
                             f"{p.channels} for layer '{p.name}'. Received: {r!r}.")
    fixed = {id(by_name[k]): int(v if isinstance(v, (int, np.integer)) else v[0]) for k, v in overrides.items()}
    rule = policy.rule
    if rule:
        if "rank" in rule and rule["rank"] > max(p.channels for p in pairs):
            raise ModelError(f"Invalid value for argument `rank`. It is above the channel count of every layer "
                             f"the output-channels scheme can cut (the largest is "
                             f"{max(p.channels for p in pairs)}). Received: rank={rule['rank']}.")
        for p in pairs:
            if "rank" in rule:
                p.width = min(p.channels, int(rule["rank"]))
            elif "fraction" in rule:
                p.width = CS.round_width(int(np.ceil(rule["fraction"] * p.channels)), p.channels, multiple)
            else:
                p.width = p.path.width_for_error(float(np.sqrt(max(1.0 - rule["energy"], 0.0))), multiple)
    else:
        metric = "macs" if policy.target_mac_ratio is not None else "params"
        ratio = policy.target_mac_ratio if metric == "macs" else policy.target_param_ratio
        costs = _Costs(model, pairs)
        goal = ratio * costs.total[metric]

        def widths_at(tau):
            return [fixed.get(id(p), p.path.width_for_error(tau, multiple)) for p in pairs]

        lo, hi = 0.0, 1.0
        if costs.model_cost(widths_at(hi), metric) > goal:
            lo = hi
        else:
            for _ in range(40):  # smallest common error threshold that meets the budget
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if costs.model_cost(widths_at(mid), metric) > goal else (lo, mid)
            lo = hi
        for p, w in zip(pairs, widths_at(lo)):
            p.width = w
        got = costs.model_cost([p.width for p in pairs], metric) / costs.total[metric]
        if got > ratio + 1e-9:
            share = 1 - sum(costs.layer_cost(e, [p.channels for p in pairs])[0 if metric == "macs" else 1]
                            for e in costs.layers.values()) / costs.total[metric]
            notes.append(f"the {metric} budget {ratio} cannot be met with output-channels: it reached {got:.3f}x "
                         f"with every cut layer at its smallest width; {share:.0%} of the {metric} are in layers "
                         f"it cannot thin (the table says why for each).")
    for p in pairs:
        if id(p) in fixed:
            p.width = fixed[id(p)]
    return notes


# ----------------------------------------------------------------------------------------------- rebuild


def _edits(pairs, refit: bool, consumers_after: dict):
    """{id(layer): (new weights at full size where refit, out keep, in keep, use_bias)} for every touched layer."""
    weights, out_keep, cfg = {}, {}, {}

    def w_of(layer):
        if id(layer) not in weights:
            weights[id(layer)] = [np.asarray(w, np.float64) for w in layer.get_weights()]
        return weights[id(layer)]

    for p in pairs:
        keep = p.path.keep(p.width)
        out_keep[id(p.producer)] = keep
        for b in p.between:
            out_keep[id(b)] = keep
        k, b = _consumer_kernel(p)
        if refit:
            nk, nb, p.refit_error = CS.refit(p.moment, k, b, keep, p.ridge, p.cross, p.orig)
        else:
            nk, nb = CS.naive(k, b, keep)
            p.refit_error = CS.output_error(p.moment, k, b, nk, nb, keep)
        ws = w_of(p.consumer)
        ws[0] = nk
        if b is not None:
            ws[1] = nb
        elif np.any(nb != 0):
            bn = consumers_after.get(id(p.consumer))
            if bn is not None:  # the bias shift goes into the BatchNorm's moving mean: BN(z + d) with mean + d
                bw = w_of(bn)
                names = [v.name for v in bn.weights]
                bw[names.index("moving_mean")] = bw[names.index("moving_mean")] - nb
            else:
                ws.append(nb)
                cfg[id(p.consumer)] = {"use_bias": True}
    return weights, out_keep, cfg


def _slice(layer, ws, keep):
    """The layer's weights with only the `keep` output channels (last axis of Conv2D/Dense, channel axis of
    DepthwiseConv2D, every vector of BatchNormalization)."""
    name = type(layer).__name__
    if name == "DepthwiseConv2D":
        return [ws[0][:, :, keep, :]] + [w[keep] for w in ws[1:]]
    if name in ("Conv2D", "Dense"):
        return [ws[0][..., keep]] + [w[keep] for w in ws[1:]]
    return [w[..., keep] for w in ws]  # BatchNormalization (and PReLU-like per-channel vectors)


def _bn_after(pairs) -> dict:
    """{id(consumer): its BatchNormalization} for consumers without bias whose only consumer is a BN."""
    import keras

    out = {}
    for p in pairs:
        if p.consumer.use_bias:
            continue
        nodes = G.graph_nodes(p.model)
        nxt = [n for n in nodes if p.consumer_node in n.parent_nodes]
        if len(nxt) == 1 and isinstance(nxt[0].operation, keras.layers.BatchNormalization) and \
                len([n for n in nodes if n.operation is nxt[0].operation]) == 1 and \
                _last_axis(nxt[0].operation, nxt[0]):
            out[id(p.consumer)] = nxt[0].operation
    return out


def _clone(model, weights, out_keep, cfg_edit):
    import keras

    copies, built = [], {}

    def clone_fn(layer):
        if id(layer) in built:
            return built[id(layer)]
        if isinstance(layer, keras.Model):
            new = rewrite_model(layer)
        else:
            cfg = layer.get_config()
            keep = out_keep.get(id(layer))
            if keep is not None and "filters" in cfg and type(layer).__name__ == "Conv2D":
                cfg["filters"] = len(keep)
            elif keep is not None and "units" in cfg:
                cfg["units"] = len(keep)
            cfg.update(cfg_edit.get(id(layer), {}))
            new = layer.__class__.from_config(cfg)
            copies.append((layer, new))
        built[id(layer)] = new
        return new

    def rewrite_model(m):
        G.functional_of(m)
        return keras.models.clone_model(m, clone_function=clone_fn)

    new_model = rewrite_model(model)
    for old, new in copies:
        if not getattr(old, "weights", None):
            continue
        ws = weights.get(id(old))
        ws = [np.asarray(w) for w in old.get_weights()] if ws is None else ws
        keep = out_keep.get(id(old))
        if keep is not None:
            ws = _slice(old, ws, keep)
        new.set_weights([np.asarray(w, np.float32) for w in ws])
    return new_model


# -------------------------------------------------------------------------------------------------- entry


def _fit_asymmetric(model, cut, calib, verbose: bool = False, seed: int = 0) -> None:
    """He et al.'s asymmetric fit: pair by pair in graph order, choose the channels and refit the consumer on
    the inputs it gets from the model thinned so far, against its original outputs, so each refit also
    absorbs the error of the pairs before it. Pairs inside nested models keep the symmetric fit; widths stay."""
    import keras

    top = [p for p in cut if p.model is model]
    xs = list(calib) if isinstance(calib, (list, tuple)) else [calib]
    n = len(xs[0])
    for i, p in enumerate(top[1:], start=1):
        t0 = time.monotonic()
        ws, keep, cfg = _edits(top[:i], True, _bn_after(top[:i]))
        cur = _clone(model, ws, keep, cfg)
        probe_o = keras.Model(model.inputs, p.consumer_node.input_tensors[0])
        probe_t = keras.Model(cur.inputs, cur.get_layer(p.consumer.name).input)
        tt = to = oo = None
        count = 0
        for j in range(0, n, BATCH):
            batch = [x[j:j + BATCH] for x in xs]
            xo = np.asarray(probe_o(batch, training=False), np.float32)
            xt = np.asarray(probe_t(batch, training=False), np.float32)
            ro = _patch_rows(p, xo, n, np.random.default_rng(seed + j))
            rt = _patch_rows(p, xt, n, np.random.default_rng(seed + j))  # the same positions
            a_tt, c = CS.augmented_moment(rt)
            a_to, a_oo = CS.cross_moment(rt, ro), CS.augmented_moment(ro)[0]
            tt, to, oo = (a_tt, a_to, a_oo) if tt is None else (tt + a_tt, to + a_to, oo + a_oo)
            count += c
        p.moment, p.cross, p.orig, p.rows = tt / count, to / count, oo / count, count
        k, b = _consumer_kernel(p)
        # the width is chosen: eliminate down to it only (the steps below it are never read)
        p.path = CS.eliminate(p.moment, k, b, p.ridge, p.cross, p.orig, stop_width=p.width)
        if verbose:
            print(f"  {p.name}: channels re-chosen on the thinned model's inputs in {time.monotonic() - t0:.1f} s",
                  flush=True)


def _check_calib(model, policy):
    from edge_lowrank.rewrite.base import _check_calib as check

    if policy.calib_data is None:
        raise DataError("The output-channels scheme chooses channels and refits the next layer on real data: it "
                        "needs calibration inputs (`calib_data`; on the command line --calib-data DATA).")
    return check(model, dataclasses.replace(policy, scheme="output"))


def thin(model, policy, *, verbose: bool = False, refit: bool = True, asymmetric: bool = True):
    """`compress` for scheme "output-channels": (new_model, RewriteReport).

    `refit=False` keeps the same channel choice but only cuts the consumer's kernel (no least squares): the
    naive baseline the refit is measured against. `asymmetric=False` fits every pair on the original model's
    activations alone (widths are chosen that way in both cases).
    """
    import keras

    if not isinstance(model, keras.Model):
        raise ModelError(f"compress() takes a Keras model. Received: {type(model).__name__}.")
    start = time.monotonic()
    calib = _check_calib(model, policy)
    pairs, feeders = _find_pairs(model)
    for p in pairs:
        if p.reason is None and policy.layers is not None and p.name not in policy.layers \
                and p.producer.name not in policy.layers:
            p.reason = "not among the layers asked for"
        if p.reason is None:
            for layer in [p.producer, *p.between, p.consumer]:
                for w in layer.weights:
                    if not np.all(np.isfinite(w.numpy())):
                        raise ModelError(f"Layer '{layer.name}' holds NaN or Inf weights ({w.path}): the model is "
                                         f"broken; retrain or repair it before compressing.")
    live = [p for p in pairs if p.reason is None]
    if live:
        _collect_moments(live, feeders, calib)
        for p in live:
            t0 = time.monotonic()
            k, b = _consumer_kernel(p)
            p.path = CS.eliminate(p.moment, k, b, p.ridge)
            if verbose:
                print(f"  {p.name}: {p.channels} channels ranked on '{p.consumer.name}' in "
                      f"{time.monotonic() - t0:.1f} s", flush=True)
    notes = _choose_widths(model, policy, live) if live else []
    for p in live:
        if policy.skip_unprofitable and p.width >= p.channels:
            p.reason = f"width {p.width} is not below its {p.channels} channels: nothing to cut"
    cut = [p for p in live if p.reason is None]
    if refit and asymmetric and len(cut) > 1:
        _fit_asymmetric(model, cut, calib, verbose)
    weights, out_keep, cfg = _edits(cut, refit, _bn_after(cut))
    new_model = _clone(model, weights, out_keep, cfg)
    report = finish_report(SCHEME, policy, _decisions(model, pairs, cut, new_model), model, new_model,
                           time.monotonic() - start, notes, stacklevel=4)
    return new_model, report


def _decisions(model, pairs, cut, new_model):
    """One row per producer (thinned or kept with the reason) and per layer thinned with it."""
    from edge_lowrank.profile import profile_model

    new = profile_model(new_model).by_name()
    old = profile_model(model).by_name()
    rows, done = [], set()

    def row(name, layer, ranks, reason, err=None):
        o, n = old.get(name), new.get(name)
        if o is None or n is None:
            return
        rows.append(LayerDecision(name, type(layer).__name__, SCHEME, "factorized", reason, ranks, o.params,
                                  n.params, o.macs, n.macs, err))

    for p in pairs:
        if p.reason is not None:
            o = old.get(p.name)
            if o is not None:
                rows.append(LayerDecision(p.name, type(p.producer).__name__, SCHEME, "kept", p.reason, None,
                                          o.params, o.params, o.macs, o.macs, None))
            continue
        row(p.name, p.producer, (p.width,), f"output channels {p.channels} -> {p.width}, chosen on "
                                            f"'{p.consumer.name}'")
        done.add(id(p.producer))
        for b in p.between:
            if b.weights:
                row(p.prefix + b.name, b, (p.width,), f"channels follow '{p.producer.name}'")
                done.add(id(b))
    for p in cut:
        name = p.prefix + p.consumer.name
        if id(p.consumer) in done:  # also a cut producer: its row is there; add the refit to it
            i = next(i for i, r in enumerate(rows) if r.name == name)
            rows[i] = dataclasses.replace(rows[i], rel_error=p.refit_error,
                                          reason=rows[i].reason + f"; input channels refit ({p.width} kept)")
            continue
        kept = [i for i, r in enumerate(rows) if r.name == name and r.action == "kept"]
        why = ""
        if kept:  # a producer kept for its own reason: its input side is still thinned
            why = f"; output channels kept: {rows[kept[0]].reason}"
            del rows[kept[0]]
        row(name, p.consumer, (p.width,), f"input channels {p.channels} -> {p.width}, refit by least squares"
            + why, p.refit_error)
    return rows
