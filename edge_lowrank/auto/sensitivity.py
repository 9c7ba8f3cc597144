"""Price `auto`'s options by what they do to the task: the shift of the model's output on calibration images.

Kernel error says how far a layer's kernel moves, not what that does to the prediction: a small cut in a layer
the output depends on can cost more than a large one elsewhere. Here every option of every layer is measured
(AIMET's greedy per-layer evaluation, without interpolation between probe ranks): the layer alone gets the
kernel the option computes (the factor chains of spatial, channel, tucker2 and weight-svd compose to one
kernel of that rank, so substituting it gives the factorized layer's output exactly, tucker2 up to HOOI's
refinement of the HOSVD used here), the model runs on up to `TASK_IMAGES` calibration images, and the shift is
the mean KL divergence of its softmax from the original's (relative squared error for outputs that are not
probabilities). Nothing is rebuilt: the kernel variable is set and restored, so an option costs one forward pass.

Per-layer shifts do not add up exactly (damage compounds), so `plan_auto` also measures whole candidate
choices together (`TaskProbe.measure` of several layers at once) and keeps the one that moves the output least.
"""

from __future__ import annotations

import numpy as np

from edge_lowrank.factorize.spatial import spatial_matrix

TASK_IMAGES = 256
# Forward-pass MACs the probe spends measuring every option on up to TASK_IMAGES images (the sample ResNet needs
# 3.7e11: 82 options x 200 images, 30-70 s under load). Above it: SMALL_IMAGES images and PROBES options per
# layer and scheme, the others interpolated (log shift, linear in kernel error): AIMET's few ranks per layer.
PROBE_MACS = 5e11
SMALL_IMAGES = 32
PROBES = 3


def probe_plan(model_macs: float, options: int, images: int) -> tuple[int, int | None]:
    """(images, options measured per layer and scheme or None for all) within `PROBE_MACS`.

    Example:
        >>> probe_plan(22.7e6, 82, 200), probe_plan(1.02e9, 1300, 200)
        ((200, None), (32, 3))
    """
    n = min(images, TASK_IMAGES)
    if model_macs * options * n <= PROBE_MACS:
        return n, None
    return min(n, SMALL_IMAGES), PROBES


class KernelApprox:
    """Rank-truncated kernels of one layer (BatchNorm folded), one decomposition per scheme, reused per rank."""

    def __init__(self, kernel: np.ndarray):
        self.w = np.asarray(kernel, np.float64)
        self._cache: dict = {}

    def _svd(self, key, mat):
        if key not in self._cache:
            self._cache[key] = np.linalg.svd(mat, full_matrices=False)
        return self._cache[key]

    def _eig(self, mode):
        if ("eig", mode) not in self._cache:
            u = np.moveaxis(self.w, mode, 0).reshape(self.w.shape[mode], -1)
            self._cache[("eig", mode)] = np.linalg.eigh(u @ u.T)[1][:, ::-1]
        return self._cache[("eig", mode)]

    def kernel(self, scheme: str, ranks) -> np.ndarray:
        """The kernel the factor block of `scheme` at `ranks` computes (same shape as the layer's)."""
        w = self.w
        if scheme in ("weight-svd", "channel") or w.ndim != 4:
            u, s, vt = self._svd("mat", w.reshape(-1, w.shape[-1]))
            (r,) = ranks
            return ((u[:, :r] * s[:r]) @ vt[:r]).reshape(w.shape)
        kh, kw, cin, cout = w.shape
        if scheme == "spatial":
            u, s, vt = self._svd("spatial", spatial_matrix(w))
            (r,) = ranks
            return ((u[:, :r] * s[:r]) @ vt[:r]).reshape(kh, cin, kw, cout).transpose(0, 2, 1, 3)
        if scheme == "tucker2":
            r1, r2 = ranks
            u_in, u_out = self._eig(2)[:, :r1], self._eig(3)[:, :r2]
            return np.einsum("ijcn,ca,da,nb,eb->ijde", w, u_in, u_in, u_out, u_out, optimize=True)
        raise ValueError(f"auto does not price the {scheme} scheme on data.")


def _bn_scale(bn, c: int) -> np.ndarray:
    """Per-output-channel scale a folded BatchNorm multiplies the kernel by (see `rewrite.graph.fold_batchnorm`)."""
    gamma = np.asarray(bn.gamma.numpy(), np.float64) if bn.scale else np.ones(c)
    var = np.asarray(bn.moving_variance.numpy(), np.float64)
    return gamma / np.sqrt(var + bn.epsilon)


def _kernel_variable(layer):
    return layer.pointwise_kernel if hasattr(layer, "pointwise_kernel") else layer.kernel


def divergence(ref: list, out: list) -> float:
    """Mean KL(ref || out) for probability outputs, relative squared error otherwise; summed over outputs."""
    total = 0.0
    for r, o in zip(ref, out):
        r = r.reshape(len(r), -1).astype(np.float64)
        o = o.reshape(len(o), -1).astype(np.float64)
        if np.all(r >= 0) and np.allclose(r.sum(-1), 1.0, atol=1e-3):
            r, o = np.clip(r, 1e-7, 1.0), np.clip(o, 1e-7, 1.0)
            total += float(np.mean(np.sum(r * (np.log(r) - np.log(o)), axis=-1)))
        else:
            total += float(np.mean((r - o) ** 2) / max(float(np.var(r)), 1e-12))
    return total


def agreement(ref: list, out: list) -> float:
    """Top-1 agreement of the first output with the original's (for the report)."""
    r, o = ref[0].reshape(len(ref[0]), -1), out[0].reshape(len(out[0]), -1)
    return float(np.mean(np.argmax(r, -1) == np.argmax(o, -1)))


class TaskProbe:
    """The model's output shift when some layers take low-rank kernels, on a calibration subset.

    Args:
        model: the original model (its kernels are changed during a measurement and always restored).
        calib: calibration inputs (one array, or a list for several inputs).
        images: how many to use (the first ones).
    """

    def __init__(self, model, calib, images: int = TASK_IMAGES):
        self.model = model
        self.x = [np.asarray(c)[:images] for c in calib] if isinstance(calib, (list, tuple)) \
            else np.asarray(calib)[:images]
        self.n = len(self.x[0]) if isinstance(self.x, list) else len(self.x)
        self.ref = self._outputs()
        self._approx: dict = {}
        self.evaluations = 0

    def _outputs(self) -> list:
        out = self.model.predict(self.x, batch_size=self.n, verbose=0)
        return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]

    def _delta(self, plan, option) -> np.ndarray:
        """What to add to the layer's own kernel variable so that it computes the option's folded kernel."""
        if id(plan) not in self._approx:
            self._approx[id(plan)] = KernelApprox(plan.kernel)
        approx = self._approx[id(plan)]
        diff = approx.kernel(option.scheme, option.ranks) - approx.w
        if plan.bn is not None:  # the layer's kernel is W, the folded one W*s: undo the scale on the change
            s = _bn_scale(plan.bn, diff.shape[-1])
            safe = np.abs(s) > 1e-12
            diff = np.where(safe, diff / np.where(safe, s, 1.0), 0.0)
        return diff

    def measure(self, changes) -> tuple[float, float]:
        """(output shift, top-1 agreement) with every (plan, option) of `changes` applied together."""
        saved = []
        try:
            for var, value in list(self._assignments(changes)):  # all read before any is set
                old = np.asarray(var.numpy())
                saved.append((var, old))
                var.assign(np.asarray(value).reshape(old.shape).astype(old.dtype))
            out = self._outputs() if saved else self.ref
        finally:
            for var, old in reversed(saved):
                var.assign(old)
        self.evaluations += 1
        return divergence(self.ref, out), agreement(self.ref, out)

    def _assignments(self, changes):
        """(variable, new value) for every change; a unit's option (`auto.thin_units.JointOption`) gives its
        two layers' own options, or the pair thinned (the consumer's refit kernel, zero on dropped channels)."""
        for plan, option in changes:
            if option.scheme is None:
                continue
            if getattr(option, "width", None) is not None:
                from edge_lowrank.auto.thin_units import probe_changes

                yield from probe_changes(option.unit, option.width)
            elif getattr(option, "parts", ()):
                yield from self._assignments(option.parts)
            else:
                var = _kernel_variable(plan.site.layer)
                old = np.asarray(var.numpy(), np.float64)
                yield var, old + self._delta(plan, option).reshape(old.shape)

    def shift(self, plan, option) -> float:
        """The output shift of `option` for `plan`'s layer alone."""
        return self.measure([(plan, option)])[0]

    def layer_shifts(self, plan, options, probes: int | None = None) -> list[float]:
        """The shift of each of `options` (factorized ones of one layer) alone; with `probes`, only that many
        per scheme are measured (spread over the kernel errors) and the rest interpolated in log shift."""
        out = [None] * len(options)
        for scheme in dict.fromkeys(o.scheme for o in options):
            idx = sorted((i for i, o in enumerate(options) if o.scheme == scheme), key=lambda i: options[i].error)
            picked = idx if probes is None or len(idx) <= probes else \
                [idx[int(round(k))] for k in np.linspace(0, len(idx) - 1, probes)]
            for i in picked:
                out[i] = self.shift(plan, options[i])
            if len(picked) < len(idx):
                xs = [options[i].error for i in picked]
                ys = [np.log(max(out[i], 0.0) + 1e-9) for i in picked]
                for i in idx:
                    if out[i] is None:
                        out[i] = float(np.exp(np.interp(options[i].error, xs, ys)) - 1e-9)
        return out
