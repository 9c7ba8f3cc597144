"""The one input transform: how images as loaded map to what the model was trained on.

Every command loads images the same way (`device_bench.datasets`: uint8 files divided by 255, so pixels are
in [0, 1]; float files as they are) and then feeds the model ``model_input = image * scale + offset``. The
user states it once, with the same flags on `compress`, `convert`, `bench`, `run` (and `run`'s TOML keys):

- ``--input-range LOW,HIGH``: the range the model was trained on; [0, 1] images are mapped there
  (``scale = HIGH - LOW``, ``offset = LOW``): ``0,255`` for a model trained on raw pixels, ``-1,1`` for one
  trained on ``(x - 0.5) * 2``. ``any`` feeds the data as they are and checks no range;
- ``--input-scale S --input-offset O``: the affine map itself.

Nothing stated: a model whose first layers are Rescaling/Normalization has its preprocessing in the graph, so
when that preprocessing expects 0..255 pixels, data go in as 0..255 pixels; otherwise images go in as they are
([0, 1]). The `.tflite` records the map as TFLite's metadata convention does, on 0..255 pixels:
``model_input = (pixel - mean) / std``, with ``std = 255 / scale`` and ``mean = -offset * 255 / scale``.

Pure Python + numpy: `device_bench` runs on boards without TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

try:  # device_bench must run without edge_lowrank installed (on a board)
    from edge_lowrank.errors import DataError
except ImportError:  # pragma: no cover - exercised on boards only
    from .datasets import DataError

# A leading Rescaling whose scale is at most this maps 0..255 pixels to a few units: the model takes pixels.
_PIXEL_RESCALING_MAX_SCALE = 1 / 64
# A leading Normalization whose mean or standard deviation exceeds this was adapted on 0..255 pixels.
_PIXEL_NORMALIZATION_MIN = 2.0
# Relative slack on the model's input range before data counts as out of range (as int8 calibration uses).
RANGE_TOLERANCE = 0.05


@dataclasses.dataclass(frozen=True)
class InputTransform:
    """``model_input = image * scale + offset``; `checked` False (``--input-range any``) checks no range."""

    scale: float = 1.0
    offset: float = 0.0
    checked: bool = True
    source: str = "default"  # default | user | model (a leading Rescaling/Normalization) | metadata (.tflite)

    @property
    def identity(self) -> bool:
        return self.scale == 1.0 and self.offset == 0.0

    @property
    def model_range(self) -> tuple[float, float] | None:
        """What [0, 1] images become: the model's input range; None when unchecked."""
        if not self.checked:
            return None
        a, b = self.offset, self.scale + self.offset
        return (min(a, b), max(a, b))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The model inputs for images `x` (float32; `x` itself when the map is the identity)."""
        if self.identity:
            return x
        return (np.asarray(x, dtype=np.float32) * np.float32(self.scale) + np.float32(self.offset)).astype(np.float32)

    def normalization(self) -> dict | None:
        """TFLite's metadata convention on 0..255 pixels: model_input = (pixel - mean) / std (None: unknown)."""
        if not self.checked:
            return None
        std = 255.0 / self.scale
        return {"mean": [_round(-self.offset * std)], "std": [_round(std)], "pixel_range": [0, 255],
                "formula": "model_input = (pixel - mean) / std"}

    def describe(self) -> str:
        """One phrase for reports and logs."""
        if not self.checked:
            return "none: data go in as they are (input range not checked)" + (
                " (recorded in the .tflite)" if self.source == "metadata" else "")
        lo, hi = self.model_range
        if self.identity:
            what = "none: images in [0, 1] go in as they are"
        else:
            what = f"x * {self.scale:g} {'+' if self.offset >= 0 else '-'} {abs(self.offset):g} ([0, 1] -> [{lo:g}, {hi:g}])"
        return what + {"default": "", "user": " (stated)", "model": " (from the model's leading preprocessing)",
                       "metadata": " (recorded in the .tflite)"}.get(self.source, "")

    def to_dict(self) -> dict:
        return {"scale": self.scale, "offset": self.offset, "checked": self.checked, "source": self.source,
                "model_range": None if self.model_range is None else list(self.model_range),
                "normalization": self.normalization(), "description": self.describe()}

    def key(self) -> str:
        """A short stable spelling for cache keys and fingerprints."""
        return "any" if not self.checked else f"x*{self.scale!r}+{self.offset!r}"

    def check(self, x: np.ndarray, what: str) -> None:
        """Refuse model inputs `x` outside the model's range (e.g. 0..255 floats fed a [0, 1] model)."""
        rng = self.model_range
        if rng is None or np.size(x) == 0:
            return
        lo, hi = float(np.min(x)), float(np.max(x))
        slack = RANGE_TOLERANCE * (rng[1] - rng[0])
        if lo < rng[0] - slack or hi > rng[1] + slack:
            raise DataError(f"{what} spans [{lo:g}, {hi:g}] as model input, outside the model's input range "
                            f"[{rng[0]:g}, {rng[1]:g}] (input transform: {self.describe()}). Images should be "
                            f"in [0, 1] (uint8 files are divided by 255); state the model's range with "
                            f"--input-range LOW,HIGH, or `--input-range any` to feed the data as they are.")


def _round(v: float) -> float:
    return float(f"{v:.6g}") + 0.0  # + 0.0: no -0.0 in the metadata


def _number(text, flag: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise DataError(f"Invalid value for `{flag}`. Expected a number. Received: {text!r}.") from None
    if not math.isfinite(v):
        raise DataError(f"Invalid value for `{flag}`. Expected a finite number. Received: {text!r}.")
    return v


def parse_range(text) -> tuple[float, float] | None:
    """``LOW,HIGH`` -> (low, high); ``any`` -> None."""
    if str(text).strip().lower() in ("any", "none"):
        return None
    parts = str(text).split(",")
    if len(parts) != 2:
        raise DataError(f"Invalid value for `--input-range`. Expected LOW,HIGH (e.g. 0,255 or -1,1) or 'any'. "
                        f"Received: {text!r}.")
    lo, hi = (_number(p.strip(), "--input-range") for p in parts)
    if not lo < hi:
        raise DataError(f"Invalid value for `--input-range`: LOW must be below HIGH. Received: {text!r}.")
    return lo, hi


def from_settings(input_range=None, input_scale=None, input_offset=None) -> InputTransform | None:
    """The stated transform (None when nothing is stated). The range and the scale/offset exclude each other."""
    if input_range is not None and (input_scale is not None or input_offset is not None):
        raise DataError("Give either --input-range or --input-scale/--input-offset, not both: they state the "
                        "same map (model_input = image * scale + offset).")
    if input_range is not None:
        rng = parse_range(input_range)
        if rng is None:
            return InputTransform(checked=False, source="user")
        return InputTransform(scale=rng[1] - rng[0], offset=rng[0], source="user")
    if input_scale is None and input_offset is None:
        return None
    scale = 1.0 if input_scale is None else _number(input_scale, "--input-scale")
    offset = 0.0 if input_offset is None else _number(input_offset, "--input-offset")
    if scale == 0:
        raise DataError("Invalid value for `--input-scale`. Expected a non-zero number. Received: 0.")
    return InputTransform(scale=scale, offset=offset, source="user")


def add_arguments(parser, default_note: str = "") -> None:
    """The three transform flags, the same on every command."""
    group = parser.add_argument_group("input transform (model_input = image * scale + offset; images in [0, 1])")
    group.add_argument("--input-range", default=None, metavar="LOW,HIGH",
                       help="the range the model was trained on; [0, 1] images are mapped there (e.g. 0,255 "
                            "for raw pixels, -1,1); 'any' feeds data as they are, unchecked" + default_note)
    group.add_argument("--input-scale", default=None, type=float, metavar="S", help="model_input = image * S + O")
    group.add_argument("--input-offset", default=None, type=float, metavar="O", help="see --input-scale")


def from_args(args) -> InputTransform | None:
    return from_settings(getattr(args, "input_range", None), getattr(args, "input_scale", None),
                         getattr(args, "input_offset", None))


def leading_preprocessing(model) -> list:
    """The Rescaling/Normalization layers a model applies first, in order (duck-typed: no Keras import)."""
    found = []
    for layer in getattr(model, "layers", []):
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if kind in ("Rescaling", "Normalization"):
            found.append(layer)
            continue
        if not found and hasattr(layer, "layers"):  # a nested model first (e.g. an application in a Sequential)
            return leading_preprocessing(layer)
        break
    return found


def _describe_layer(layer) -> str:
    cfg = layer.get_config()
    if type(layer).__name__ == "Rescaling":
        return f"Rescaling(scale={cfg.get('scale')}, offset={cfg.get('offset')})"
    return "Normalization(mean/variance)"


def _expects_pixels(layer) -> bool:
    """Whether a leading preprocessing layer expects 0..255 pixels rather than [0, 1] images."""
    if type(layer).__name__ == "Rescaling":
        scale = np.asarray(layer.get_config().get("scale"), dtype=np.float64)
        return bool(scale.size and np.all(np.abs(scale) <= _PIXEL_RESCALING_MAX_SCALE))
    mean = np.asarray(getattr(layer, "mean", 0.0), dtype=np.float64)
    var = np.asarray(getattr(layer, "variance", 1.0), dtype=np.float64)
    return bool(np.max(np.abs(mean)) > _PIXEL_NORMALIZATION_MIN or np.sqrt(np.max(var)) > _PIXEL_NORMALIZATION_MIN)


def resolve(stated: InputTransform | None, model=None) -> tuple[InputTransform, str | None]:
    """The transform a command uses for `model`, and a note on the model's own preprocessing (or None).

    A stated transform wins. Otherwise a model that starts with Rescaling/Normalization expecting 0..255 pixels
    gets pixels (``x * 255``); any other model gets the images as they are.
    """
    layers = leading_preprocessing(model) if model is not None else []
    names = " + ".join(_describe_layer(lyr) for lyr in layers)
    if stated is not None:
        note = (f"the model starts with {names}: its preprocessing is in the graph; data go in through the "
                f"stated transform ({stated.describe()})") if layers else None
        return stated, note
    if layers and _expects_pixels(layers[0]):
        t = InputTransform(scale=255.0, offset=0.0, source="model")
        return t, f"the model starts with {names}: its preprocessing is in the graph, so data go in raw, as 0..255 pixels"
    if layers:
        return InputTransform(), (f"the model starts with {names}: its preprocessing is in the graph; data go in "
                                  f"raw, as [0, 1] images")
    return InputTransform(), None


def recorded(tflite_path) -> InputTransform | None:
    """The transform a .tflite written by edge-lowrank records in its metadata (None: none, or unreadable).

    Needs `converters` (edge-lowrank installed); on a board with device_bench alone it returns None.
    """
    try:
        from converters.metadata import read_metadata
    except ImportError:  # pragma: no cover - device_bench alone
        return None
    try:
        with open(tflite_path, "rb") as f:
            meta = read_metadata(f.read())
    except Exception:  # an unreadable file is reported by the benchmark itself, as an error row
        return None
    t = meta.get("input_transform")
    if not isinstance(t, dict) or "scale" not in t:
        return None
    checked = "input_normalization" in meta
    return InputTransform(scale=float(t["scale"]), offset=float(t.get("offset", 0.0)), checked=checked,
                          source="metadata")


def for_tflite_files(stated: InputTransform | None, paths) -> tuple[InputTransform, str | None]:
    """The transform `bench` feeds data through: the stated one, else the one every file records, else none."""
    if stated is not None:
        return stated, None
    found = {str(p): recorded(p) for p in paths}
    kinds = {t for t in found.values() if t is not None}
    if not kinds:
        return InputTransform(), None
    identity = InputTransform(source="metadata")
    if len(kinds) > 1 or (None in found.values() and kinds != {identity}):
        raise DataError("The models record different input transforms in their metadata; state one with "
                        "--input-range or --input-scale/--input-offset, or benchmark them separately.")
    t = kinds.pop()
    return t, None if t.identity else f"input transform from the models' metadata: {t.describe()}"
