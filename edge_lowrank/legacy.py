"""Known, safe repairs of Keras model files that Keras 3 refuses as they are, and one-line diagnoses.

A repair rewrites the model's JSON config only (the `model_config` attribute of an `.h5`, `config.json` of
a `.keras` archive), writes the repaired copy to a temporary folder and loads that copy with Keras's own
loader in safe mode: code inside a file never runs, and the user's file is never written. Each repair was
reproduced on a real file of the Keras version that writes it (see tests/modelio):

- `initializer-dtype`: tf.keras 1.x (Keras "2.2.4-tf") wrote `"dtype": "float32"` into every initializer's
  config; Keras 3 fails with "GlorotUniform.__init__() got an unexpected keyword argument 'dtype'".
- `sequential-batch-input-shape`: Keras 2.2 Sequential configs have no InputLayer, the first layer carries
  `batch_input_shape`; Keras 3 reads it as that layer's `input_shape` and adds a second batch axis
  ("Kernel shape must have the same length as input ... (None, None, 8, 8, 3)").
- `depthwise-groups`: tf.keras 2.x DepthwiseConv2D configs carry `"groups": 1`, which Keras 3 rejects.
- `rnn-time-major`: tf.keras 2.x RNN configs carry `"time_major": false`, which Keras 3 rejects.
- `policy-dtype`: a tf.keras mixed-precision `{"class_name": "Policy"}` dtype ("'str' object has no
  attribute 'quantization_mode'"); the policy's name is what Keras 3 takes.
- `nested-io-lists`: Keras 2 `.h5` and Keras 3.8 (and older 3.x) `.h5`/`.keras` files write a nested
  model's single input and output as one-element lists (`[["input_layer", 0, 0]]`); Keras 3.15 then hands
  the next layer a list ("expects 1 input(s), but it received 2 input tensors", "'list' object has no
  attribute 'shape'"). The classic transfer-learning Sequential([application, pooling, Dense]) hits it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Callable

from edge_lowrank.errors import ModelError, RepairWarning

_RNN_CLASSES = {"LSTM", "GRU", "SimpleRNN", "RNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "CuDNNLSTM",
                "CuDNNGRU"}


@dataclasses.dataclass(frozen=True)
class Repair:
    name: str
    what: str  # completes "repaired ...", e.g. "initializer configs with a `dtype` (tf.keras 1.x)"
    formats: tuple[str, ...]  # "h5" (legacy config, no "module" keys) and/or "keras" (a .keras archive)
    fix: Callable[[dict], int]  # rewrites the config in place, returns how many configs it changed


def _walk(node):
    """Every dict in a JSON tree, parents before children."""
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def _fix_initializer_dtype(config: dict) -> int:
    n = 0
    for d in _walk(config):
        for key, value in d.items():
            if (key.endswith("initializer") and isinstance(value, dict) and isinstance(value.get("config"), dict)
                    and "dtype" in value["config"]):
                del value["config"]["dtype"]
                n += 1
    return n


def _is_sequential(d: dict) -> bool:
    return (d.get("class_name") == "Sequential" and isinstance(d.get("config"), dict)
            and isinstance(d["config"].get("layers"), list))


def _fix_sequential_batch_input_shape(config: dict) -> int:
    n = 0
    for d in list(_walk(config)):
        if not _is_sequential(d) or not d["config"]["layers"]:
            continue
        layers = d["config"]["layers"]
        first = layers[0]
        cfg = first.get("config") if isinstance(first, dict) else None
        if first.get("class_name") == "InputLayer" or not isinstance(cfg, dict) or "batch_input_shape" not in cfg:
            continue
        dtype = cfg.get("dtype") if isinstance(cfg.get("dtype"), str) else "float32"
        layers.insert(0, {"class_name": "InputLayer",
                          "config": {"batch_input_shape": cfg.pop("batch_input_shape"), "dtype": dtype,
                                     "sparse": False, "name": f"{cfg.get('name', 'layer')}_input"}})
        n += 1
    return n


def _drop_key(config: dict, classes: set[str], key: str, value) -> int:
    n = 0
    for d in _walk(config):
        cfg = d.get("config")
        if d.get("class_name") in classes and isinstance(cfg, dict) and key in cfg and cfg[key] == value:
            del cfg[key]
            n += 1
    return n


def _fix_policy_dtype(config: dict) -> int:
    n = 0
    for d in _walk(config):
        dt = d.get("dtype")
        if (isinstance(dt, dict) and dt.get("class_name") == "Policy" and isinstance(dt.get("config"), dict)
                and isinstance(dt["config"].get("name"), str)):
            d["dtype"] = dt["config"]["name"]
            n += 1
    return n


def _is_triple(x) -> bool:
    return isinstance(x, list) and len(x) == 3 and isinstance(x[0], str)


def _fix_nested_io_lists(config: dict) -> int:
    n = 0
    for d in _walk(config):
        cfg = d.get("config")
        if not isinstance(cfg, dict) or not isinstance(cfg.get("layers"), list):
            continue
        for layer in cfg["layers"]:  # only models nested in a model: a top-level model's lists are its API
            inner = layer.get("config") if isinstance(layer, dict) else None
            if not isinstance(inner, dict) or "input_layers" not in inner:
                continue
            changed = False
            for key in ("input_layers", "output_layers"):
                v = inner.get(key)
                if isinstance(v, list) and len(v) == 1 and _is_triple(v[0]):
                    inner[key] = v[0]
                    changed = True
            n += changed
    return n


REPAIRS = (
    Repair("initializer-dtype", "initializer configs with a `dtype` (tf.keras 1.x)", ("h5", "keras"),
           _fix_initializer_dtype),
    Repair("sequential-batch-input-shape", "a Sequential without InputLayer (Keras 2.2 `batch_input_shape`)",
           ("h5",), _fix_sequential_batch_input_shape),
    Repair("depthwise-groups", "DepthwiseConv2D configs with `groups: 1` (tf.keras 2.x)", ("h5", "keras"),
           lambda c: _drop_key(c, {"DepthwiseConv2D", "DepthwiseConv1D"}, "groups", 1)),
    Repair("rnn-time-major", "RNN configs with `time_major: false` (tf.keras 2.x)", ("h5", "keras"),
           lambda c: _drop_key(c, _RNN_CLASSES, "time_major", False)),
    Repair("policy-dtype", "tf.keras mixed-precision `Policy` dtypes", ("h5",), _fix_policy_dtype),
    Repair("nested-io-lists", "nested models' one-element input/output lists (Keras 2, Keras 3.8 and older)",
           ("h5", "keras"), _fix_nested_io_lists),
)


def repair_config(config: dict, fmt: str) -> list[tuple[Repair, int]]:
    """Apply every known repair for `fmt` ("h5" or "keras") to `config` in place; return those that changed it."""
    applied = []
    for repair in REPAIRS:
        if fmt in repair.formats:
            n = repair.fix(config)
            if n:
                applied.append((repair, n))
    return applied


def _read_config(path: Path, fmt: str) -> dict | None:
    """The model's config as JSON, or None when the file has none we can read."""
    try:
        if fmt == "keras":
            with zipfile.ZipFile(path) as z:
                return json.loads(z.read("config.json"))
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
        if raw is None:
            return None
        return json.loads(raw.decode("utf-8") if hasattr(raw, "decode") else raw)
    except Exception:  # a damaged file: the caller reports the original failure
        return None


def _write_copy(path: Path, fmt: str, config: dict, tmp: Path) -> Path:
    """A copy of `path` in `tmp` whose config is `config`; the user's file is only read."""
    out = tmp / path.name
    text = json.dumps(config)
    if fmt == "keras":
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
            for item in src.infolist():
                dst.writestr(item, text if item.filename == "config.json" else src.read(item.filename))
    else:
        import h5py

        shutil.copyfile(path, out)
        with h5py.File(out, "r+") as f:
            f.attrs["model_config"] = text.encode("utf-8")
    return out


def load_repaired(path, error: BaseException, *, compile: bool = False):
    """Load `path`, which Keras refused with `error`, after the known repairs that apply to its config.

    Emits one `RepairWarning` per repair applied ("loaded X: repaired <what> (<n> configs)").

    Raises:
        ModelError: no known repair applies, or the repaired copy fails too; one line with what to try.
    """
    import keras

    path = Path(path)
    fmt = "keras" if path.suffix.lower() == ".keras" else "h5"
    config = _read_config(path, fmt)
    applied = repair_config(config, fmt) if config is not None else []
    if not applied:
        raise ModelError(explain(path, error))
    with tempfile.TemporaryDirectory(prefix="edge-lowrank-repair-") as tmp:
        copy = _write_copy(path, fmt, config, Path(tmp))
        try:
            with _quiet_keras():
                model = keras.models.load_model(copy, compile=compile, safe_mode=True)
        except Exception as e2:
            names = ", ".join(r.name for r, _ in applied)
            raise ModelError(f"{explain(path, e2)} (after the repairs {names}; "
                             f"first failure: {_cause(error)[:160]})") from None
    for repair, n in applied:
        warnings.warn(RepairWarning(f"loaded {path.name}: repaired {repair.what} ({n} config{'s' * (n != 1)})"),
                      stacklevel=3)
    return model


@contextlib.contextmanager
def _quiet_keras():
    """Keras's own UserWarnings while rebuilding an old config ("Do not pass an `input_shape`") are noise here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"keras(\.|$)")
        yield


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _cause(error: BaseException) -> str:
    """The informative line of a Keras error: the innermost "Exception encountered:", else the first line."""
    text = _ANSI.sub("", str(error)).strip()
    if "Exception encountered:" in text:
        text = text.rsplit("Exception encountered:", 1)[1].strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(error).__name__


# (pattern in the error text, what failed, what to try); the first match wins.
_HINTS = (
    (r"safe_mode|Lambda|lambda", "it holds a Lambda layer (Python code), which safe mode refuses to run",
     "rebuild the model without Lambda layers (stock layers), or load it in the code that defines it and "
     "save it again as .keras"),
    (r"TFOpLambda|SlicingOpLambda", "it holds TensorFlow ops that tf.keras wrapped as layers (TFOpLambda), "
     "which Keras 3 does not have", "replace the raw tf.* calls with Keras layers and save it again"),
    (r"Could not locate|Unknown layer|Unknown (activation|initializer|regularizer|constraint)",
     "it uses a custom class that is not registered",
     "save it again with stock layers only, or load it where the class is defined and keep only stock layers"),
    (r"No model config found", "the file holds no model config (weights only, or not a Keras model)",
     "build the model in code and load the weights with model.load_weights"),
    (r"truncated file|file signature not found|Unable to (synchronously )?open|bad (object )?header",
     "the file is damaged or not an HDF5 file (a truncated copy?)", "copy or download it again"),
    (r"BadZipFile|not a zip file|Bad magic number|CRC", "the .keras archive is damaged",
     "copy or download it again"),
)


def explain(path, error: BaseException) -> str:
    """One line: the file, what failed and what to try (known causes first, else Keras's own words)."""
    text = _ANSI.sub("", f"{type(error).__name__}: {error}")
    for pattern, what, todo in _HINTS:
        if re.search(pattern, text):
            return f"Cannot load {path}: {what}; try: {todo}."
    return (f"Cannot load {path}: Keras 3 refused it ({_cause(error)[:240]}); no known repair applies; try: "
            f"load it with the Keras version that wrote it and save it again as .keras with stock layers.")
