"""Every setting of `edge-lowrank run`, declared once: the CLI flags and the TOML keys come from the same table.

Why one table: a build pipeline keeps its budget in a checked-in TOML file and a developer overrides one flag
on the command line; both must mean the same thing, with the same validation and the same error line.

Precedence: command-line flag > TOML file (`--config`) > default. TOML keys are the flag names with `-` or
`_` (`max-accuracy-drop` or `max_accuracy_drop`), at the top level or under a `[run]` table.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import field
from pathlib import Path

from edge_lowrank.errors import EdgeLowrankError
from edge_lowrank.rewrite.output_fit import DEFAULT as OUTPUT_FIT_DEFAULT, FITS as OUTPUT_FITS
from edge_lowrank.finetune.augment import AUGMENTS
from edge_lowrank.finetune.distill import DEFAULT_LR, SCHEDULES

DEFAULT_SCHEMES = ("spatial", "channel", "tucker2", "cp", "weight-svd", "auto")
EXECUTORS = ("local", "ray")
ALL_SCHEMES = ("spatial", "channel", "tucker2", "weight-svd", "output", "output-channels", "cp", "tucker2-spatial",
               "auto")


class ConfigError(EdgeLowrankError, ValueError):
    """A setting of `run` (flag or TOML key) is invalid."""


def _opt(default, help, *, type=None, choices=None, flag=True):
    return field(default=default, metadata={"help": help, "type": type, "choices": choices, "flag": flag})


@dataclasses.dataclass
class RunConfig:
    model: str | None = _opt(None, "Keras model (.keras/.h5); default: the sample ResNet for Fashion-MNIST",
                             type=str, flag=False)
    data: str = _opt("fashion-mnist", "test data for accuracy: fashion-mnist[:SPLIT] or an .npz "
                     "(fashion-mnist means the 10,000 test images; an .npz without --train-data is split into a "
                     "fine-tuning part and a held-out test part; without labels `y`, every accuracy figure is "
                     "top-1 agreement with the original float model)", type=str)
    train_data: str | None = _opt(None, "data for fine-tuning (default: fashion-mnist:train for fashion-mnist, "
                                  "else the fine-tuning part of --data); given, --data is not split", type=str)
    test_fraction: float = _opt(0.2, "share of an .npz --data held out for testing when no --train-data is "
                                "given (split per class, seeded by --seed)", type=float)
    input_range: str | None = _opt(None, "the input range the model was trained on, LOW,HIGH: [0, 1] images "
                                   "are mapped there (0,255 for raw pixels); `any`: data as they are "
                                   "(default: from a leading Rescaling/Normalization layer, else [0, 1])", type=str)
    input_scale: float | None = _opt(None, "model_input = image * input_scale + input_offset (instead of "
                                     "--input-range)", type=float)
    input_offset: float | None = _opt(None, "see --input-scale", type=float)
    calib_data: str | None = _opt(None, "data for int8 calibration (default: fashion-mnist:calib for "
                                  "fashion-mnist, else the first --calib-samples of the training data)", type=str)
    out: str = _opt("runs/latest", "output folder; a rerun with the same folder reuses finished stages", type=str)
    schemes: str = _opt(",".join(DEFAULT_SCHEMES), f"comma-separated schemes, or `all` ({', '.join(ALL_SCHEMES)})",
                        type=str)
    target_mac_ratio: float | None = _opt(0.5, "rank budget: the rewritten model keeps at most this fraction of "
                                          "the whole model's MACs", type=float)
    target_latency_ratio: float | None = _opt(None, "budget of `auto` in measured int8 latency (instead of "
                                              "--target-mac-ratio): at most this fraction of the original's",
                                              type=float)
    cost_target: str = _opt("host", "what `auto` measures per op shape: host, qemu:<profile> or macs", type=str)
    auto_trial: int = _opt(5000, "with fine-tuning: `auto` builds each whole choice that meets the budget, distils "
                           "it one pass on this many fine-tuning images and keeps the least output shift on "
                           "others (0: judged by the shift before fine-tuning)", type=int)
    rank: int | None = _opt(None, "fixed rank for every rewritten layer (overrides --target-mac-ratio)", type=int)
    rank_fraction: float | None = _opt(None, "rank as a fraction of the full rank (overrides the MAC budget)",
                                       type=float)
    energy: float | None = _opt(None, "keep this fraction of singular-value energy (overrides the MAC budget)",
                                type=float)
    rank_multiple: int = _opt(8, "round ranks up to a multiple of this (SIMD-friendly)", type=int)
    output_fit: str = _opt(OUTPUT_FIT_DEFAULT, "the output scheme's fit: linear, nonlinear (after the ReLU that "
                           "follows a layer), linear-asymmetric or nonlinear-asymmetric (layer by layer, on the "
                           "inputs the compressed layers before it give; docs/schemes.md)", type=str,
                           choices=OUTPUT_FITS)
    finetune_epochs: int = _opt(1, "epochs of distillation from the original model (0 skips fine-tuning)",
                                type=int)
    finetune_samples: int | None = _opt(10000, "training images used for fine-tuning (0 or less: all)", type=int)
    batch_size: int = _opt(128, "fine-tuning batch size", type=int)
    finetune_lr: float = _opt(DEFAULT_LR, "fine-tuning peak learning rate (Adam)", type=float)
    finetune_schedule: str = _opt("auto", "the learning rate over the fine-tuning: auto (constant for one epoch, "
                                  "else cosine decay to a twentieth), constant, cosine, warmup-cosine (linear "
                                  "warm-up over a tenth of the steps, then cosine)", type=str, choices=SCHEDULES)
    finetune_augment: str = _opt("none", "a fresh random view of the fine-tuning images per epoch, the original "
                                 "model's outputs recomputed on it: flip (horizontal), shift (up to 2 px), "
                                 "flip+shift; only where the labels survive it (clothes yes, digits no)",
                                 type=str, choices=AUGMENTS)
    reestimate: str = _opt("affine", "before fine-tuning, match each rewritten block's per-channel output mean "
                           "and spread (affine), or mean only, to the original's on 1,024 training images "
                           "(BN re-estimation; the rewrite folds BNs into the factors); none turns it off",
                           type=str, choices=("affine", "mean", "none"))
    qat: str = _opt("needed", "quantization-aware fine-tuning with tensorflow-model-optimization: `needed` (a "
                    "SCHEME-int8-qat variant only where the int8 file's top-1 agreement with its Keras model is "
                    "below 0.97 on at least 500 test images, where QAT pays), `none`, `all`, or comma-separated "
                    "schemes (baseline and auto included); "
                    "each adds a SCHEME-int8-qat variant beside the post-training int8 one (minutes per variant: "
                    "3 epochs on the fine-tuning images)", type=str)
    qat_epochs: int = _opt(3, "QAT epochs (Adam at 1e-5, distilled from the original model)", type=int)
    calib_samples: int = _opt(200, "images for int8 calibration", type=int)
    eval_samples: int | None = _opt(None, "test images for accuracy (default: all)", type=int)
    num_runs: int = _opt(20, "host benchmark: minimum timed runs per model", type=int)
    min_secs: float = _opt(0.5, "host benchmark: minimum timed seconds per model", type=float)
    arm: str = _opt("auto", "ARM profiles under QEMU: auto (those set up), none, or a comma-separated list",
                    type=str)
    arm_precisions: str = _opt("int8", "precisions measured under QEMU (int8, float32 or int8,float32): "
                               "emulation is slow, so the default is the deployed int8 only", type=str)
    c_arrays: bool = _opt(True, "write a C array (.cc/.h) for every .tflite", type=bool)
    max_accuracy_drop: float | None = _opt(1.0, "gate: top-1 may drop at most this many percentage points "
                                           "below the original float32 model (100 turns it off); on unlabelled "
                                           "data it applies to top-1 agreement with the original", type=float)
    min_speedup: float | None = _opt(None, "gate: host speedup at least this against --speedup-vs", type=float)
    speedup_vs: str = _opt("float32", "baseline of the speedup gate", type=str, choices=("float32", "int8"))
    max_size_kb: float | None = _opt(None, "gate: .tflite file at most this many KB (1 KB = 1024 bytes)",
                                     type=float)
    max_arena_kb: float | None = _opt(None, "gate: TFLM tensor arena at most this many KB", type=float)
    select_on: str = _opt("auto", "the figure that picks best.tflite and that --min-speedup compares: host "
                          "(median latency here), qemu:PROFILE (ARM instructions per inference under QEMU, e.g. "
                          "qemu:cortex-a76; measured for it), or auto (the ARM profile when one was measured, "
                          "else host)", type=str)
    seed: int = _opt(0, "seed of every random choice (fine-tuning order, initialisation)", type=int)
    executor: str = _opt("local", "where the model and export stages run: local (this process, one after the "
                         "other) or ray (Ray tasks, in parallel across a cluster; needs the `ray` extra, see "
                         "docs/ray.md); the stage cache and the report are the same either way", type=str,
                         choices=EXECUTORS)
    ray_address: str | None = _opt(None, "with --executor ray: the cluster to join, HOST:PORT of `ray start "
                                   "--head` (or `auto`); default: start a Ray on this machine for the run",
                                   type=str)
    progress: bool = _opt(True, "show the progress display", type=bool)

    def scheme_list(self) -> tuple[str, ...]:
        return ALL_SCHEMES if self.schemes.strip() == "all" else tuple(
            s.strip() for s in self.schemes.split(",") if s.strip())

    def qat_list(self) -> tuple[str, ...]:
        """The schemes (and `baseline`) that get a quantization-aware int8 variant."""
        setting = self.qat.strip()
        if setting in ("", "none", "needed"):  # needed: decided per variant after the int8 exports
            return ()
        if setting == "all":
            return ("baseline", *self.scheme_list())
        return tuple(s.strip() for s in setting.split(",") if s.strip())

    def arm_precision_list(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.arm_precisions.split(",") if p.strip())

    def input_transform(self):
        """The stated input transform (`device_bench.transform.InputTransform`), or None when not stated."""
        from device_bench.transform import from_settings

        return from_settings(self.input_range, self.input_scale, self.input_offset)

    def select_target(self) -> str:
        """`select_on` spelled in full: auto, host or qemu:<profile name> (qemu:a76 means qemu:cortex-a76)."""
        v = self.select_on.strip()
        if v.startswith("qemu:"):
            from device_bench.qemu.cpuinfo import PROFILES

            name = v.split(":", 1)[1].strip()
            name = name if name in PROFILES or f"cortex-{name}" not in PROFILES else f"cortex-{name}"
            return f"qemu:{name}"
        return v

    def select_profile(self) -> str | None:
        """The ARM profile `select_on` names, or None (auto or host)."""
        t = self.select_target()
        return t.split(":", 1)[1] if t.startswith("qemu:") else None

    def gates(self) -> dict:
        return {k: getattr(self, k) for k in ("max_accuracy_drop", "min_speedup", "max_size_kb", "max_arena_kb")
                if getattr(self, k) is not None}

    def validate(self) -> "RunConfig":
        schemes = self.scheme_list()
        if not schemes:
            raise ConfigError("Invalid value for `schemes`. Expected `all` or a comma-separated list. Received: ''.")
        bad = [s for s in schemes if s not in ALL_SCHEMES]
        if bad:
            raise ConfigError(f"Invalid value for `schemes`. Expected `all` or names from {', '.join(ALL_SCHEMES)}. "
                              f"Received: {','.join(bad)}.")
        if len(set(schemes)) != len(schemes):
            raise ConfigError(f"Invalid value for `schemes`: a scheme is listed twice. Received: {self.schemes}.")
        positive = ("rank_multiple", "batch_size", "calib_samples", "num_runs")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"Invalid value for `{name}`. Expected a positive int. "
                                  f"Received: {name}={getattr(self, name)}.")
        if self.auto_trial < 0:
            raise ConfigError(f"Invalid value for `auto_trial`. Expected an int >= 0. "
                              f"Received: auto_trial={self.auto_trial}.")
        for name in ("rank", "eval_samples"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ConfigError(f"Invalid value for `{name}`. Expected a positive int. Received: {name}={v}.")
        for name in ("target_mac_ratio", "target_latency_ratio", "rank_fraction", "energy"):
            v = getattr(self, name)
            if v is not None and not 0 < v <= 1:
                raise ConfigError(f"Invalid value for `{name}`. Expected a float in (0, 1]. Received: {name}={v}.")
        if self.finetune_epochs < 0:
            raise ConfigError(f"Invalid value for `finetune_epochs`. Expected an int >= 0. "
                              f"Received: finetune_epochs={self.finetune_epochs}.")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"Invalid value for `test_fraction`. Expected a float in (0, 1). "
                              f"Received: test_fraction={self.test_fraction}.")
        from device_bench.transform import from_settings

        try:
            from_settings(self.input_range, self.input_scale, self.input_offset)
        except EdgeLowrankError as e:
            raise ConfigError(str(e)) from None
        if self.min_secs < 0:
            raise ConfigError(f"Invalid value for `min_secs`. Expected >= 0. Received: min_secs={self.min_secs}.")
        for name in ("max_accuracy_drop", "max_size_kb", "max_arena_kb"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ConfigError(f"Invalid value for `{name}`. Expected a number >= 0. Received: {name}={v}.")
        if self.min_speedup is not None and self.min_speedup <= 0:
            raise ConfigError(f"Invalid value for `min_speedup`. Expected a number > 0. "
                              f"Received: min_speedup={self.min_speedup}.")
        bad_qat = [s for s in self.qat_list() if s not in ("baseline", *self.scheme_list())]
        if bad_qat:
            raise ConfigError(f"Invalid value for `qat`. Expected needed, none, all, or schemes of this run "
                              f"(baseline, {', '.join(self.scheme_list())}). Received: {', '.join(bad_qat)}.")
        if self.qat_epochs < 1:
            raise ConfigError(f"Invalid value for `qat_epochs`. Expected a positive int. Received: {self.qat_epochs}.")
        bad = [p for p in self.arm_precision_list() if p not in ("int8", "float32")]
        if bad or not self.arm_precision_list():
            raise ConfigError(f"Invalid value for `arm_precisions`. Expected int8, float32 or both, comma-separated. "
                              f"Received: {self.arm_precisions!r}.")
        target = self.select_target()
        if target.startswith("ssh://"):  # `bench --target ssh://` measures a board; `run` does not (yet)
            raise ConfigError(f"Invalid value for `select_on`: run measures the host and QEMU profiles only, not "
                              f"{target}. Expected auto, host or qemu:<profile>; time a board with "
                              f"`edge-lowrank bench FILE.tflite --target {target}`.")
        if target.startswith("qemu:"):
            from device_bench.qemu.cpuinfo import PROFILES

            if self.select_profile() not in PROFILES:
                raise ConfigError(f"Invalid value for `select_on`. Expected qemu:<profile> with a profile from "
                                  f"{', '.join(PROFILES)}. Received: {self.select_on!r}.")
            if self.arm.strip() == "none":
                raise ConfigError(f"--select-on {target} needs the ARM counts that --arm none turns off.")
        elif target not in ("auto", "host"):
            raise ConfigError(f"Invalid value for `select_on`. Expected auto, host or qemu:<profile> (e.g. "
                              f"qemu:cortex-a76). Received: {self.select_on!r}.")
        if self.output_fit not in OUTPUT_FITS:
            raise ConfigError(f"Invalid value for `output_fit`. Expected one of {', '.join(OUTPUT_FITS)}. "
                              f"Received: output_fit={self.output_fit!r}.")
        if self.finetune_schedule not in SCHEDULES:
            raise ConfigError(f"Invalid value for `finetune_schedule`. Expected one of {', '.join(SCHEDULES)}. "
                              f"Received: finetune_schedule={self.finetune_schedule!r}.")
        if not self.finetune_lr > 0:
            raise ConfigError(f"Invalid value for `finetune_lr`. Expected a float > 0. "
                              f"Received: finetune_lr={self.finetune_lr}.")
        if self.finetune_augment not in AUGMENTS:
            raise ConfigError(f"Invalid value for `finetune_augment`. Expected one of {', '.join(AUGMENTS)}. "
                              f"Received: finetune_augment={self.finetune_augment!r}.")
        if self.reestimate not in ("affine", "mean", "none"):
            raise ConfigError(f"Invalid value for `reestimate`. Expected affine, mean or none. "
                              f"Received: reestimate={self.reestimate!r}.")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"Invalid value for `executor`. Expected local or ray. Received: {self.executor!r}.")
        if self.ray_address is not None and self.executor != "ray":
            raise ConfigError(f"`ray_address` ({self.ray_address}) needs executor = ray; the local executor "
                              f"runs in this process.")
        if self.ray_address is not None and not self.ray_address.strip():
            raise ConfigError("Invalid value for `ray_address`. Expected HOST:PORT or auto. Received: ''.")
        if self.speedup_vs not in ("float32", "int8"):
            raise ConfigError(f"Invalid value for `speedup_vs`. Expected float32 or int8. "
                              f"Received: speedup_vs={self.speedup_vs!r}.")
        return self


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


def add_arguments(parser) -> None:
    """Add one flag per `RunConfig` field. Defaults are None so that a TOML value can fill what was not given."""
    parser.add_argument("model", nargs="?", default=None, help=FIELDS["model"].metadata["help"])
    parser.add_argument("--config", default=None, metavar="FILE.toml",
                        help="TOML file holding any of these settings (flags given here win)")
    for f in FIELDS.values():
        meta = f.metadata
        if not meta["flag"]:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        if meta["type"] is bool:
            parser.add_argument(flag, dest=f.name, default=None, action="store_true",
                                help=f"{meta['help']} (default: on)" if default else meta["help"])
            parser.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false",
                                help=f"turn off {flag}")
        else:
            parser.add_argument(flag, dest=f.name, default=None, type=meta["type"], choices=meta["choices"],
                                help=f"{meta['help']} (default: {default})")


def _coerce(name: str, value, source: str):
    f = FIELDS[name]
    want = f.metadata["type"]
    if value is None:
        return None
    if want is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"Invalid value for `{name}` in {source}. Expected true or false. Received: {value!r}.")
        return value
    if want is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if want is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if want is str and name == "schemes" and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    if want is str and name == "input_range" and isinstance(value, list) and len(value) == 2 \
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return f"{value[0]},{value[1]}"  # input-range = [0, 255]
    if want is str and isinstance(value, str):
        return value
    raise ConfigError(f"Invalid value for `{name}` in {source}. Expected {want.__name__}. Received: {value!r}.")


def load_toml(path) -> dict:
    """Read a TOML config into `{field: value}`; unknown keys and wrong types are errors, not silence."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {path} does not exist.")
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"Config file {path} is not valid TOML: {str(e).splitlines()[0]}") from None
    table = raw.get("run", raw) if isinstance(raw.get("run"), dict) else raw
    values = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise ConfigError(f"Unknown setting `{key}` in {path}. Expected one of: "
                              f"{', '.join(n.replace('_', '-') for n in FIELDS)}.")
        values[name] = _coerce(name, value, str(path))
    return values


def from_args(args) -> RunConfig:
    """Merge flags, the TOML file and the defaults into a validated `RunConfig`."""
    values = load_toml(args.config) if getattr(args, "config", None) else {}
    for name in FIELDS:
        given = getattr(args, name, None)
        if given is not None:
            values[name] = given
    cfg = RunConfig(**values)
    if cfg.finetune_samples is not None and cfg.finetune_samples <= 0:
        cfg.finetune_samples = None
    return cfg.validate()
