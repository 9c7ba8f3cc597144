"""Known, safe repairs of Keras model files that Keras 3 refuses as they are, and one-line diagnoses.

A repair rewrites the model's JSON config only (the `model_config` attribute of an `.h5`, `config.json` of
a `.keras` archive), writes the repaired copy to a temporary folder and loads that copy with Keras's own
loader in safe mode: code inside a file never runs, and the user's file is never written. Each repair
matches only what a Keras 3.15 config never holds. Files written by tf_keras 2.21, Keras 3.3 and 3.8
themselves (`.h5` and `.keras`) load with these repairs and give the same outputs; the tf.keras 1.x, Keras 2.2
and mixed-precision cases are configs written the way those versions wrote them. tests/modelio rebuilds each
case at test time.

- `initializer-dtype`: tf.keras 1.x ("2.2.4-tf") wrote `"dtype": "float32"` into initializer configs
  ("GlorotUniform.__init__() got an unexpected keyword argument 'dtype'").
- `batch-input-shape`: a Keras 2.2 Sequential has no InputLayer, its first layer carries `batch_input_shape`
  (Keras 3 adds a second batch axis: "input of shape (None, None, 8, 8, 3)"); tf.keras 2 also leaves it on
  the first layer after the InputLayer ("Unrecognized keyword arguments passed to Conv2D").
- `groups-one`, `separable-conv-keys`, `rnn-time-major`, `spatial-dropout-keys`, `augmentation-rng`: keys
  tf.keras 2 wrote that Keras 3 rejects (`groups: 1` on DepthwiseConv/ConvTranspose; a SeparableConv's
  unused `kernel_*`; `time_major: false`; SpatialDropout's `trainable`/`noise_shape`; RandomFlip & co.'s
  `rng_type`, which only matters in training).
- `batchnorm-axis`: tf.keras 2 wrote BatchNormalization's `axis` as a list (`[3]`): "int() argument must
  be ... not 'list'" in nested models and `.keras` files.
- `policy-dtype`: a tf.keras mixed-precision `{"class_name": "Policy"}` dtype ("'str' object has no
  attribute 'quantization_mode'"); Keras 3 takes the policy's name.
- `model-module`: tf_keras `.keras` files name `tf_keras.src.engine.functional` ("Could not locate class
  'Functional'").
- `nested-io-lists`: Keras 2 and Keras 3.3 to 3.8 (those checked) write a nested model's single input and
  output as one-element lists; Keras 3.15 then hands the next layer a list ("expects 1 input(s), but it received 2
  input tensors", "'list' object has no attribute 'shape'"): the transfer-learning Sequential([application,
  pooling, Dense]) hits it.
- `nested-node-index`: in the inbound nodes of the layers it feeds, tf.keras numbered a nested model's calls
  from 1, Keras 3 from 0 ("The graph of the Functional model either has loops or disconnected nodes").
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import shutil
import tempfile
import warnings
import weakref
import zipfile
from pathlib import Path
from typing import Callable

from edge_lowrank.errors import ModelError, RepairWarning

_REPAIRED: weakref.WeakSet = weakref.WeakSet()  # models `load_repaired` built: their file is not Keras 3's own

_RANDOM_CLASSES = {"RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast", "RandomCrop",
                   "RandomHeight", "RandomWidth", "RandomBrightness"}
_RNN_CLASSES = {"LSTM", "GRU", "SimpleRNN", "RNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "CuDNNLSTM",
                "CuDNNGRU"}


@dataclasses.dataclass(frozen=True)
class Repair:
    name: str
    what: str  # completes "repaired ...", e.g. "initializer configs with a `dtype` (tf.keras 1.x)"
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


def _models(config: dict):
    """The config of every model in the tree (the top one and nested ones): dicts with a `layers` list."""
    for d in _walk(config):
        cfg = d.get("config")
        if isinstance(cfg, dict) and isinstance(cfg.get("layers"), list):
            yield d, cfg


def _fix_batch_input_shape(config: dict) -> int:
    """A Keras 2.2 Sequential starts with an InputLayer here; other layers lose the redundant shape."""
    n = 0
    for d, cfg in list(_models(config)):
        layers = cfg["layers"]
        first = layers[0] if layers and isinstance(layers[0], dict) else {}
        first_cfg = first.get("config")
        if (_is_sequential(d) and first.get("class_name") != "InputLayer" and isinstance(first_cfg, dict)
                and "batch_input_shape" in first_cfg):
            dtype = first_cfg.get("dtype") if isinstance(first_cfg.get("dtype"), str) else "float32"
            input_cfg = {"batch_input_shape": first_cfg.pop("batch_input_shape"), "dtype": dtype, "sparse": False,
                         "name": f"{first_cfg.get('name', 'layer')}_input"}
            new_format = "module" in first  # a .keras config names each class's module
            layers.insert(0, {"module": "keras.layers", "class_name": "InputLayer", "config": input_cfg,
                              "registered_name": None} if new_format
                          else {"class_name": "InputLayer", "config": input_cfg})
            n += 1
        for layer in layers:
            lc = layer.get("config") if isinstance(layer, dict) else None
            if layer.get("class_name") != "InputLayer" and isinstance(lc, dict) and "batch_input_shape" in lc:
                del lc["batch_input_shape"]  # the graph's InputLayer carries the shape
                n += 1
    return n


def _drop_keys(config: dict, classes: set[str], keys: dict) -> int:
    """Drop `keys` (name -> the only value dropped, or None for any value) from configs of `classes`."""
    n = 0
    for d in _walk(config):
        cfg = d.get("config")
        if d.get("class_name") not in classes or not isinstance(cfg, dict):
            continue
        hit = [k for k, v in keys.items() if k in cfg and (v is None or cfg[k] == v)]
        for k in hit:
            del cfg[k]
        n += bool(hit)
    return n


def _fix_separable_extras(config: dict) -> int:
    # tf.keras separable convs inherit Conv's `kernel_*` and `groups` config keys but use depthwise_*/pointwise_*
    return _drop_keys(config, {"SeparableConv1D", "SeparableConv2D"},
                      {"groups": 1, "kernel_initializer": None, "kernel_regularizer": None, "kernel_constraint": None})


def _fix_batchnorm_axis(config: dict) -> int:
    n = 0
    for d in _walk(config):
        cfg = d.get("config")
        if (d.get("class_name") == "BatchNormalization" and isinstance(cfg, dict) and isinstance(cfg.get("axis"), list)
                and len(cfg["axis"]) == 1 and isinstance(cfg["axis"][0], int)):
            cfg["axis"] = cfg["axis"][0]
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


def _fix_model_modules(config: dict) -> int:
    n = 0
    for d in _walk(config):
        module = d.get("module")
        if (d.get("class_name") in ("Functional", "Model") and isinstance(module, str)
                and (module.startswith("tf_keras") or ".engine." in module)):
            d["module"], d["class_name"] = "keras.src.models.functional", "Functional"
            if d.get("registered_name") is not None:
                d["registered_name"] = "Functional"
            n += 1
    return n


def _is_triple(x) -> bool:
    return isinstance(x, list) and len(x) == 3 and isinstance(x[0], str)


def _fix_nested_io_lists(config: dict) -> int:
    n = 0
    for _, cfg in _models(config):
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


def _node_refs(obj, name: str):
    """Every `[name, node_index, tensor_index, ...]` reference to layer `name` in `obj` (any node format)."""
    if isinstance(obj, list):
        if len(obj) >= 3 and obj[0] == name and isinstance(obj[1], int) and isinstance(obj[2], int):
            yield obj
        else:
            for v in obj:
                yield from _node_refs(v, name)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _node_refs(v, name)


def _fix_nested_node_index(config: dict) -> int:
    """Layers fed by a nested model: tf.keras numbered that model's calls from 1 (its node 0 is its own
    graph); Keras 3 numbers them from 0 there."""
    n = 0
    for _, cfg in _models(config):
        if "input_layers" not in cfg:
            continue  # a Sequential: no node references
        for layer in cfg["layers"]:
            inner = layer.get("config") if isinstance(layer, dict) else None
            if not isinstance(inner, dict) or not isinstance(inner.get("layers"), list):
                continue
            name = layer.get("name") or inner.get("name")
            calls = len(layer.get("inbound_nodes") or [])
            # Only calls: Keras 3 numbers a nested model's nodes from 1 in `output_layers` too, and so did tf.keras.
            refs = [r for other in cfg["layers"] for r in _node_refs(other.get("inbound_nodes"), name)]
            if refs and all(1 <= r[1] <= calls for r in refs):  # 1-based: never 0, never past the last call
                for r in refs:
                    r[1] -= 1
                n += 1
    return n


REPAIRS = (
    Repair("initializer-dtype", "initializer configs with a `dtype` (tf.keras 1.x)", _fix_initializer_dtype),
    Repair("batch-input-shape", "`batch_input_shape` outside an InputLayer (Keras 2)", _fix_batch_input_shape),
    Repair("groups-one", "DepthwiseConv/ConvTranspose configs with `groups: 1` (tf.keras 2)",
           lambda c: _drop_keys(c, {"DepthwiseConv1D", "DepthwiseConv2D", "Conv1DTranspose", "Conv2DTranspose",
                                    "Conv3DTranspose"}, {"groups": 1})),
    Repair("separable-conv-keys", "SeparableConv configs with unused `kernel_*`/`groups` keys (tf.keras 2)",
           _fix_separable_extras),
    Repair("rnn-time-major", "RNN configs with `time_major: false` (tf.keras 2)",
           lambda c: _drop_keys(c, _RNN_CLASSES, {"time_major": False})),
    Repair("spatial-dropout-keys", "SpatialDropout configs with `trainable`/`noise_shape` (tf.keras 2)",
           lambda c: _drop_keys(c, {"SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D"},
                                {"trainable": None, "noise_shape": None})),
    Repair("augmentation-rng", "random augmentation layers' `rng_type`/`force_generator` (tf.keras 2)",
           lambda c: _drop_keys(c, _RANDOM_CLASSES, {"rng_type": None, "force_generator": None})),
    Repair("batchnorm-axis", "BatchNormalization configs with a list `axis` (tf.keras 2)", _fix_batchnorm_axis),
    Repair("policy-dtype", "tf.keras mixed-precision `Policy` dtypes", _fix_policy_dtype),
    Repair("model-module", "tf_keras module paths of Functional models", _fix_model_modules),
    Repair("nested-io-lists", "nested models' one-element input/output lists (Keras 2, Keras 3.3-3.8)",
           _fix_nested_io_lists),
    Repair("nested-node-index", "calls of nested models numbered from 1 (tf.keras 2)", _fix_nested_node_index),
)


def repair_config(config: dict) -> list[tuple[Repair, int]]:
    """Apply every known repair to `config` in place; return those that changed it, with their counts.

    Each repair matches only what a Keras 3.15 config never holds, so on a current config none applies."""
    applied = []
    for repair in REPAIRS:
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
    applied = repair_config(config) if config is not None else []
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
    _REPAIRED.add(model)
    for repair, n in applied:
        warnings.warn(RepairWarning(f"loaded {path.name}: repaired {repair.what} ({n} config{'s' * (n != 1)})"),
                      stacklevel=3)
    return model


def was_repaired(model) -> bool:
    """Whether `model` was loaded through a repair (its file then needs the repair again: save the model)."""
    return model in _REPAIRED


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
    (r"TFOpLambda|SlicingOpLambda", "it holds TensorFlow ops that tf.keras wrapped as layers (TFOpLambda), "
     "which Keras 3 does not have", "replace the raw tf.* calls with Keras layers and save it again"),
    (r"safe_mode|Lambda|lambda", "it holds a Lambda layer (Python code), which safe mode refuses to run",
     "rebuild the model without Lambda layers (stock layers), or load it in the code that defines it and "
     "save it again as .keras"),
    (r"Could not locate|Unknown layer|Unknown (activation|initializer|regularizer|constraint)",
     "it uses a custom class that is not registered",
     "save it again with stock layers only, or load it where the class is defined and keep only stock layers"),
    (r"No model config found", "the file holds no model config (weights only, or not a Keras model)",
     "build the model in code and load the weights with model.load_weights"),
    (r"truncated file|file signature not found|Unable to (synchronously )?open file",
     "the file is damaged or not an HDF5 file (a truncated copy?)", "copy or download it again"),
    (r"BadZipFile|not a zip file|Bad magic number|Bad CRC-32", "the .keras archive is damaged",
     "copy or download it again"),
)


def written_by(path) -> str | None:
    """The Keras version recorded in a model file (`keras_version`), or None when there is none to read."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".keras":
            with zipfile.ZipFile(path) as z:
                version = json.loads(z.read("metadata.json")).get("keras_version")
        else:
            import h5py

            with h5py.File(path, "r") as f:
                version = f.attrs.get("keras_version")
        version = version.decode("utf-8") if hasattr(version, "decode") else version
        return str(version) if version else None
    except Exception:  # no metadata, or a damaged file: the version is only a hint
        return None


def explain(path, error: BaseException) -> str:
    """One line: the file, what failed and what to try (known causes first, else Keras's own words)."""
    text = _ANSI.sub("", f"{type(error).__name__}: {error}")
    for pattern, what, todo in _HINTS:
        if re.search(pattern, text):
            return f"Cannot load {path}: {what}; try: {todo}."
    version = written_by(path)
    by = f" (written by Keras {version})" if version else ""
    return (f"Cannot load {path}{by}: Keras 3 refused it ({_cause(error)[:240]}); no known repair applies; "
            f"try: load it with the Keras version that wrote it and save it again as .keras with stock layers.")
