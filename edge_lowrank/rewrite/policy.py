"""`CompressionPolicy`: what to rewrite and how, validated when it is made."""

from __future__ import annotations

import dataclasses

import numpy as np

from edge_lowrank.auto.candidates import AUTO_SCHEMES
from edge_lowrank.rank.schemes import SCHEMES
from edge_lowrank.rank.select import RankError, check_policy_numbers
from edge_lowrank.rewrite.output_fit import DEFAULT as OUTPUT_FIT_DEFAULT, FITS as OUTPUT_FITS

DEFAULT_ENERGY = 0.9
POLICY_SCHEMES = SCHEMES + ("output-channels", "auto")  # output-channels: rewrite/thin.py, no ranks
DEFAULT_LATENCY_RATIO = 0.5


@dataclasses.dataclass(frozen=True)
class CompressionPolicy:
    """A scheme and one rank rule for the whole model, or `auto`: a scheme and ranks per layer.

    Args:
        scheme: one of `SCHEMES`, or "auto" (see `edge_lowrank.auto`): per layer the scheme and rank that
            meet `target_latency_ratio` (measured cost) or `target_mac_ratio` with the least kernel error.
        rank, rank_fraction, energy, vbmf, target_mac_ratio, target_param_ratio: the rank rule; give at most
            one (none means `energy=0.9`).
        rank_multiple: ranks are rounded up to a multiple of it (1 turns rounding off), capped at full rank.
        fold_batchnorm: fold a BatchNormalization that follows a conv into it before factorizing.
        calib_data: input images (N, H, W, C) for the data-driven `output` scheme.
        layers: names of the layers to consider (nested ones as `outer/inner` or plain `inner`); None: all.
        cp_time_budget_s, cp_n_iter_max: bound each CP fit (ALS) in time and iterations.
        skip_unprofitable: keep a layer whose factorization would not reduce its parameters and MACs.
        layer_ranks: explicit ranks for some layers, {name: int or tuple (one entry per rank of the scheme)},
            overriding the rule for them (no rounding; an entry above that layer's full rank is an error).
        target_latency_ratio: auto only: the model's measured cost at most this fraction of the original's
            (the default budget of auto, 0.5).
        auto_schemes: the schemes auto may choose from.
        cost_target: what auto measures: "host" (int8 latency, one thread, XNNPACK), "qemu:<profile>" (ARM
            instructions) or "macs" (nothing measured).
        auto_objective: what auto minimizes with `calib_data` (without, always summed kernel error): "task"
            (kernel error among the options on each layer's measured cost / output-shift frontier), "shift"
            (summed output shift of each option alone: for use without fine-tuning) or "kernel".
        trial_data: auto only, with `calib_data`: a `Dataset` (labels optional) of the data fine-tuning will
            use. The whole choices that meet the budget (the task objective's, kernel
            error's, each single scheme's) are then built and judged by a short distillation on its first
            `trial_samples` images, the least output shift on the next images wins (`edge_lowrank.auto.trial`):
            the shift before fine-tuning does not rank choices as fine-tuning leaves them (docs/auto.md).
        trial_samples: images each trial distils on. trial_seed: the trials' seed (order, dropout masks).
        output_fit: scheme output only: "linear" (rank-r PCA of each layer's responses, Zhang et al. 2015),
            "nonlinear" (fit after the ReLU that follows the layer, TPAMI 2016), and either with
            "-asymmetric" (layer by layer from the input, on the inputs the compressed layers before it give).
    """

    scheme: str = "tucker2"
    rank: int | None = None
    rank_fraction: float | None = None
    energy: float | None = None
    vbmf: bool = False
    target_mac_ratio: float | None = None
    rank_multiple: int = 8
    fold_batchnorm: bool = True
    calib_data: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    layers: tuple[str, ...] | None = None
    target_param_ratio: float | None = None
    cp_time_budget_s: float | None = 30.0
    cp_n_iter_max: int = 100
    skip_unprofitable: bool = True
    layer_ranks: dict | None = dataclasses.field(default=None, compare=False)
    target_latency_ratio: float | None = None
    auto_schemes: tuple[str, ...] = AUTO_SCHEMES
    cost_target: str = "host"
    auto_objective: str = "task"
    output_fit: str = OUTPUT_FIT_DEFAULT
    trial_data: object = dataclasses.field(default=None, repr=False, compare=False)
    trial_samples: int = 5000
    trial_seed: int = 0

    def __post_init__(self):
        if self.scheme not in POLICY_SCHEMES:
            raise RankError(f"Invalid value for argument `scheme`. Expected one of {', '.join(POLICY_SCHEMES)}. "
                             f"Received: scheme={self.scheme!r}.")
        self._check_auto()
        if self.output_fit not in OUTPUT_FITS:
            raise RankError(f"Invalid value for argument `output_fit`. Expected one of {', '.join(OUTPUT_FITS)}. "
                             f"Received: output_fit={self.output_fit!r}.")
        rules = {"rank": self.rank, "rank_fraction": self.rank_fraction, "energy": self.energy,
                 "vbmf": self.vbmf or None, "target_mac_ratio": self.target_mac_ratio,
                 "target_param_ratio": self.target_param_ratio}
        given = [k for k, v in rules.items() if v is not None]
        if len(given) > 1:
            raise RankError(f"Give one rank rule, not several. Received: {', '.join(given)}.")
        check_policy_numbers(self.rank, self.rank_fraction, self.energy)
        for name in ("target_mac_ratio", "target_param_ratio"):
            v = getattr(self, name)
            if v is not None and not 0.0 < v <= 1.0:
                raise RankError(f"Invalid value for argument `{name}`. Expected a float in (0, 1]. "
                                 f"Received: {name}={v}.")
        if isinstance(self.rank_multiple, bool) or not isinstance(self.rank_multiple, (int, np.integer)) \
                or self.rank_multiple < 1:
            raise RankError(f"Invalid value for argument `rank_multiple`. Expected an int >= 1. "
                             f"Received: rank_multiple={self.rank_multiple!r}.")
        for name, r in (self.layer_ranks or {}).items():
            rs = (r,) if isinstance(r, (int, np.integer)) else tuple(r)
            if not rs or any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x <= 0 for x in rs):
                raise RankError(f"Invalid value for argument `layer_ranks`. Expected positive ints. "
                                f"Received: {r!r} for layer '{name}'.")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(self.layers))

    def _check_auto(self):
        if self.scheme != "auto":
            if self.target_latency_ratio is not None:
                raise RankError("`target_latency_ratio` needs scheme='auto' (the per-layer choice on measured "
                                "cost); the fixed schemes take target_mac_ratio.")
            return
        given = [k for k in ("rank", "rank_fraction", "energy") if getattr(self, k) is not None]
        given += ["vbmf"] if self.vbmf else []
        given += ["target_param_ratio"] if self.target_param_ratio is not None else []
        given += ["layer_ranks"] if self.layer_ranks else []
        if given:
            raise RankError(f"scheme='auto' chooses ranks itself from a budget: give target_latency_ratio or "
                            f"target_mac_ratio, not {', '.join(given)}.")
        if self.target_latency_ratio is not None and self.target_mac_ratio is not None:
            raise RankError("Give one budget to auto: target_latency_ratio or target_mac_ratio, not both.")
        if self.target_latency_ratio is None and self.target_mac_ratio is None:
            object.__setattr__(self, "target_latency_ratio", DEFAULT_LATENCY_RATIO)
        v = self.target_latency_ratio
        if v is not None and not 0.0 < v <= 1.0:
            raise RankError(f"Invalid value for argument `target_latency_ratio`. Expected a float in (0, 1]. "
                            f"Received: target_latency_ratio={v}.")
        object.__setattr__(self, "auto_schemes", tuple(self.auto_schemes))
        bad = [s for s in self.auto_schemes if s not in AUTO_SCHEMES]
        if bad or not self.auto_schemes:
            raise RankError(f"Invalid value for argument `auto_schemes`. Expected some of {', '.join(AUTO_SCHEMES)}. "
                            f"Received: {', '.join(self.auto_schemes) or 'none'}.")
        t = self.cost_target
        if not isinstance(t, str) or not (t in ("host", "macs") or t.startswith("qemu:")):
            raise RankError(f"Invalid value for argument `cost_target`. Expected host, macs or qemu:<profile>. "
                            f"Received: cost_target={t!r}.")
        if self.trial_samples < 1:
            raise RankError(f"Invalid value for argument `trial_samples`. Expected an integer >= 1. "
                            f"Received: trial_samples={self.trial_samples}.")
        if self.auto_objective not in ("task", "shift", "kernel"):
            raise RankError(f"Invalid value for argument `auto_objective`. Expected task, shift or kernel. "
                            f"Received: auto_objective={self.auto_objective!r}.")

    @property
    def rule(self) -> dict:
        """The rank rule in effect, as keyword arguments of `choose_rank` (or a budget)."""
        if self.rank is not None:
            return {"rank": int(self.rank)}
        if self.rank_fraction is not None:
            return {"fraction": float(self.rank_fraction)}
        if self.vbmf:
            return {"vbmf": True}
        if self.target_mac_ratio is not None or self.target_param_ratio is not None:
            return {}
        return {"energy": float(self.energy if self.energy is not None else DEFAULT_ENERGY)}

    def describe(self) -> str:
        if self.scheme == "auto":
            what = (f"target MAC ratio {self.target_mac_ratio}" if self.target_mac_ratio is not None
                    else f"target {'latency' if self.cost_target == 'host' else self.cost_target} "
                         f"ratio {self.target_latency_ratio}")
            return f"{what}, measured on {self.cost_target}" if self.cost_target != "macs" else what
        r = self.rule
        fit = f", {self.output_fit} fit" if self.scheme == "output" else ""
        if not r:
            return (f"target MAC ratio {self.target_mac_ratio}" if self.target_mac_ratio is not None
                    else f"target parameter ratio {self.target_param_ratio}") + fit
        (k, v), = r.items()
        return ("VBMF" if k == "vbmf" else f"{k} {v}") + fit
