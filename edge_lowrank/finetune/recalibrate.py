"""Re-estimate each rewritten layer's output statistics after a low-rank rewrite ("BN re-estimation").

Why: the rewriter folds the BatchNormalization that follows a factorized conv into the last factor's bias, so
no BN is left to re-estimate; yet a truncated factorization loses energy and shifts the channel means, so the
layers after it, trained on the original statistics, see a shrunk and shifted signal. Per output channel, this
measures the rewritten block's output mean and standard deviation on training images and rescales and shifts
its last factor so that they match the original model's at the same point (the folded BN's output when there
was one): what re-estimating a BN placed after the factors would do, without adding a layer. Blocks are
corrected one at a time in graph order, each measured after the corrections before it. Only top-level blocks
whose last factor is linear with a bias are touched (a fused activation would make the affine map inexact).
"""

from __future__ import annotations

import numpy as np

from edge_lowrank.rewrite.graph import graph_nodes

MODES = ("none", "mean", "affine")


def rewritten_sites(student, teacher) -> list[tuple[object, str]]:
    """(block, teacher layer name) for each top-level factor block that can be corrected.

    A block is a nested Sequential named after the layer it replaced; the teacher layer to match is the BN the
    rewrite folded (an Identity of the same name right after the block), else the replaced layer itself.
    """
    import keras

    teacher_names = {lyr.name for lyr in teacher.layers}
    after = {}  # block name -> the folded BN's Identity fed by it
    for lyr in student.layers:
        if isinstance(lyr, keras.layers.Identity) and lyr.name in teacher_names and isinstance(
                teacher.get_layer(lyr.name), keras.layers.BatchNormalization):
            for node in (n for n in graph_nodes(student) if n.operation is lyr):
                src = getattr(node.input_tensors[0], "_keras_history", None) if node.input_tensors else None
                if src is not None:
                    after[src[0].name] = lyr.name
    sites = []
    for lyr in student.layers:
        if not isinstance(lyr, keras.Sequential) or lyr.name not in teacher_names:
            continue
        if isinstance(teacher.get_layer(lyr.name), keras.Model):  # a nested model of the original, not a block
            continue
        last = lyr.layers[-1]
        act = getattr(last, "activation", None)
        if not getattr(last, "use_bias", False) or act is None or act.__name__ != "linear":
            continue
        sites.append((lyr, after.get(lyr.name, lyr.name)))
    return sites


def _output_in(model, layer):
    """`layer`'s output tensor in `model`'s own graph (a layer may carry nodes of other graphs; a Sequential
    keeps its graph in a Functional inside, `graph_nodes` finds it)."""
    for node in graph_nodes(model):
        if node.operation is layer:
            return node.output_tensors[0]
    return layer.output


def _channel_stats(model, x, batch_size):
    """Per-channel mean and standard deviation of `model`'s output (or of each output, as a list) over `x`."""
    sums = None
    for i in range(0, len(x), batch_size):
        ys = model(x[i:i + batch_size], training=False)
        ys = [np.asarray(y, np.float64) for y in (ys if isinstance(ys, (list, tuple)) else [ys])]
        ys = [y.reshape(-1, y.shape[-1]) for y in ys]
        part = [(y.sum(0), (y * y).sum(0), len(y)) for y in ys]
        sums = part if sums is None else [(a + c, b + d, n + m) for (a, b, n), (c, d, m) in zip(sums, part)]
    stats = []
    for s, s2, n in sums:
        mean = s / n
        stats.append((mean, np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))))
    return stats if len(stats) > 1 else stats[0]


def recalibrate(student, teacher, x, *, mode: str = "affine", batch_size: int = 256) -> list[dict]:
    """Match each rewritten block's per-channel output mean (`mean`), or mean and spread (`affine`), to the
    teacher's on images `x`, in place. Returns one row per corrected block (name, target, mean |scale - 1|,
    mean |shift|, channels whose scale hit the 4x limit)."""
    import keras

    if mode not in MODES:
        raise ValueError(f"Invalid value for `mode`. Expected one of {MODES}. Received: {mode!r}.")
    if mode == "none" or len(x) == 0:
        return []
    rows = []
    sites = rewritten_sites(student, teacher)
    if not sites:
        return rows
    # the teacher's statistics in one pass; the student's per block, after the corrections before it
    probe_t = keras.Model(teacher.inputs[0], [_output_in(teacher, teacher.get_layer(t)) for _, t in sites])
    wanted = _channel_stats(probe_t, x, batch_size)
    wanted = wanted if len(sites) > 1 else [wanted]
    for (block, target), (mu_t, sd_t) in zip(sites, wanted):
        probe_s = keras.Model(student.inputs[0], _output_in(student, block))
        mu_s, sd_s = _channel_stats(probe_s, x, batch_size)
        scale = np.ones_like(mu_s)
        clipped = 0
        if mode == "affine":  # dead or near-constant channels keep their scale; no channel grows or shrinks > 4x
            ok = (sd_s > 1e-6) & (sd_t > 1e-6)
            want = sd_t[ok] / sd_s[ok]
            scale[ok] = np.clip(want, 0.25, 4.0)
            clipped = int(np.sum((want < 0.25) | (want > 4.0)))
        shift = mu_t - scale * mu_s
        last = block.layers[-1]
        kernel, bias = (w.numpy() for w in (last.kernel, last.bias))
        last.kernel.assign((kernel * scale.astype(kernel.dtype)).astype(kernel.dtype))
        last.bias.assign((bias * scale + shift).astype(bias.dtype))
        rows.append({"layer": block.name, "target": target, "mean_abs_scale_change": float(np.abs(scale - 1).mean()),
                     "mean_abs_shift": float(np.abs(shift).mean()), "clipped": clipped})
    return rows
