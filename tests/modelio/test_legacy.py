"""Loading what users have: legacy Keras files that Keras 3 refuses, repaired in a copy, and one-line refusals.

The legacy files are written at test time: a real Keras 3 model saved as `.h5`/`.keras`, whose config is then
rewritten the way the older version wrote it (tf.keras 1.x "2.2.4-tf", tf.keras 2.x, Keras 3.8), checked to
fail the plain Keras 3 load with the error users see, then loaded through `load_keras_model`.
"""

import copy
import hashlib
import json
import shutil
import warnings
import zipfile

import h5py
import numpy as np
import pytest

from edge_lowrank.cli.main import main
from edge_lowrank.errors import ModelError, RepairWarning
from edge_lowrank.legacy import REPAIRS, was_repaired
from edge_lowrank.modelio import load_keras_model

WHAT = {r.name: r.what for r in REPAIRS}
_DROP = {"module", "registered_name", "build_config", "compile_config", "shared_object_id"}


def _legacy_style(node, keep_modules=False):
    """A Keras 3 config as Keras 2 wrote it: dtype strings, list-style inbound nodes, one-element input/output
    lists, no module keys (`.h5`; tf_keras 2 kept them in `.keras` files)."""
    if isinstance(node, list):
        return [_legacy_style(v, keep_modules) for v in node]
    if not isinstance(node, dict):
        return node
    if node.get("class_name") == "DTypePolicy":
        return node["config"]["name"]
    drop = _DROP - {"module", "registered_name"} if keep_modules else _DROP
    out = {k: _legacy_style(v, keep_modules) for k, v in node.items() if k not in drop}
    cfg = out.get("config")
    if out.get("class_name") == "InputLayer":
        cfg["batch_input_shape"] = cfg.pop("batch_shape")
    if isinstance(out.get("inbound_nodes"), list):
        out["inbound_nodes"] = [[list(t["config"]["keras_history"]) + [{}]
                                 for t in (n["args"][0] if isinstance(n["args"][0], list) else [n["args"][0]])]
                                for n in node["inbound_nodes"]]
    if isinstance(cfg, dict) and "input_layers" in cfg:
        cfg["input_layers"], cfg["output_layers"] = [cfg["input_layers"]], [cfg["output_layers"]]
    return out


def _tfkeras1_initializers(node):
    """tf.keras 1.x initializer configs: the seed (if any) and a `dtype`."""
    for d in _walk(node):
        for k, v in d.items():
            if k.endswith("_initializer") and isinstance(v, dict):
                v["config"] = {**({"seed": None} if "seed" in v["config"] else {}), "dtype": "float32"}


def _walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def _layer(config, class_name):
    return next(d for d in _walk(config) if d.get("class_name") == class_name)


def _write_h5(model, path, rewrite, keras_version="2.2.4-tf"):
    """Save `model` as .h5, then replace its config by `rewrite(legacy-style config)` as that version wrote it."""
    model.save(path)
    with h5py.File(path, "r+") as f:
        config = _legacy_style(json.loads(f.attrs["model_config"]))
        rewrite(config)
        f.attrs["model_config"] = json.dumps(config).encode("utf-8")
        f.attrs["keras_version"] = keras_version.encode()
    return path


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_with_repairs(path):
    """Load through the project; return the model and the repair lines, after checking the file is untouched."""
    before = _sha(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_keras_model(path)
    assert _sha(path) == before
    lines = [str(w.message) for w in caught if issubclass(w.category, RepairWarning)]
    assert was_repaired(model) == bool(lines)  # `run` then saves the model rather than copying the file
    return model, lines


def _plain_keras_error(path):
    import keras

    with pytest.raises(Exception) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keras.models.load_model(path, compile=False, safe_mode=True)
    return str(info.value)


def _assert_same_outputs(original, loaded, seed=0):
    x = np.random.default_rng(seed).random((2, *original.inputs[0].shape[1:]), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), original.predict(x, verbose=0), rtol=0, atol=1e-6)


def _assert_repairs(lines, path, expected):
    assert sorted(lines) == sorted(f"loaded {path.name}: repaired {WHAT[name]} ({n} config{'s' * (n != 1)})"
                                   for name, n in expected.items())


@pytest.fixture(scope="module")
def cnn():
    import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((12, 12, 3)), keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.BatchNormalization(),
        keras.layers.DepthwiseConv2D(3), keras.layers.MaxPooling2D(), keras.layers.Flatten(),
        keras.layers.Dense(10)], name="cnn")  # logits: a softmax could hide a weight left behind
    for w in model.weights:  # BatchNorm statistics off their defaults, so a weight left behind shows
        w.assign(np.random.default_rng(len(w.path)).normal(0.5, 0.2, w.shape).astype("float32") ** 2)
    return model


def test_tfkeras1_h5_with_initializer_dtype_and_no_input_layer(cnn, tmp_path):
    def keras22(config):
        layers = config["config"]["layers"]
        input_layer = layers.pop(0)
        layers[0]["config"]["batch_input_shape"] = input_layer["config"]["batch_input_shape"]
        _tfkeras1_initializers(config)

    path = _write_h5(cnn, tmp_path / "keras22.h5", keras22)
    assert "GlorotUniform.__init__() got an unexpected keyword argument 'dtype'" in _plain_keras_error(path)
    model, lines = _load_with_repairs(path)
    n_init = sum(1 for d in _walk(cnn.get_config()) for k in d if k.endswith("_initializer"))
    _assert_repairs(lines, path, {"initializer-dtype": n_init, "batch-input-shape": 1})
    _assert_same_outputs(cnn, model)


@pytest.mark.parametrize("repair, rewrite, plain_error", [
    ("groups-one", lambda c: _layer(c, "DepthwiseConv2D")["config"].update(groups=1),
     "Unrecognized keyword arguments passed to DepthwiseConv2D: {'groups': 1}"),
    ("policy-dtype",
     lambda c: _layer(c, "Conv2D")["config"].update(dtype={"class_name": "Policy", "config": {"name": "float32"}}),
     "'str' object has no attribute 'quantization_mode'"),
])
def test_tfkeras2_h5_repairs(cnn, tmp_path, repair, rewrite, plain_error):
    path = _write_h5(cnn, tmp_path / f"{repair}.hdf5", rewrite, keras_version="2.9.0")
    assert plain_error in _plain_keras_error(path)
    model, lines = _load_with_repairs(path)
    _assert_repairs(lines, path, {repair: 1})
    _assert_same_outputs(cnn, model)


def test_tfkeras2_h5_lstm_time_major(tmp_path):
    import keras

    keras.utils.set_random_seed(2)
    rnn = keras.Sequential([keras.Input((6, 4)), keras.layers.LSTM(5), keras.layers.Dense(3)])
    path = _write_h5(rnn, tmp_path / "lstm.h5", lambda c: _layer(c, "LSTM")["config"].update(time_major=False),
                     keras_version="2.8.0")
    assert "Unrecognized keyword arguments passed to LSTM: {'time_major': False}" in _plain_keras_error(path)
    model, lines = _load_with_repairs(path)
    _assert_repairs(lines, path, {"rnn-time-major": 1})
    _assert_same_outputs(rnn, model)


def test_keras2_h5_sequential_holding_a_functional_model(tmp_path):
    """The transfer-learning shape: Sequential([base model, Flatten, Dense]) saved by tf.keras 2 as .h5."""
    import keras

    keras.utils.set_random_seed(3)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    base = keras.Model(inp, keras.layers.Add()([x, keras.layers.Conv2D(4, 3)(inp)]), name="base")
    model = keras.Sequential([keras.Input((16, 16, 3)), base, keras.layers.Flatten(), keras.layers.Dense(3)])
    path = _write_h5(model, tmp_path / "transfer.h5", lambda c: None, keras_version="2.13.1")
    assert "'list' object has no attribute 'shape'" in _plain_keras_error(path)
    loaded, lines = _load_with_repairs(path)
    _assert_repairs(lines, path, {"nested-io-lists": 1})
    _assert_same_outputs(model, loaded)


def test_keras38_sequential_holding_an_application(tmp_path):
    """Keras 3.3-3.8 wrote a nested model's single input/output as one-element lists (seen on real files)."""
    import keras

    keras.utils.set_random_seed(4)
    app = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(32, 32, 3), alpha=0.35)
    model = keras.Sequential([keras.Input((32, 32, 3)), app, keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(10)])
    saved = tmp_path / "saved.keras"
    model.save(saved)
    path = tmp_path / "keras38.keras"
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                inner = config["config"]["layers"][1]["config"]
                inner["input_layers"], inner["output_layers"] = [inner["input_layers"]], [inner["output_layers"]]
                data = json.dumps(config)
            dst.writestr(item, data)
    assert "expects 1 input(s), but it received 2 input tensors" in _plain_keras_error(path)
    loaded, lines = _load_with_repairs(path)
    _assert_repairs(lines, path, {"nested-io-lists": 1})
    _assert_same_outputs(model, loaded)


@pytest.mark.parametrize("suffix", [".h5", ".hdf5", ".keras"])
def test_current_files_load_without_repair(cnn, tmp_path, suffix):
    path = tmp_path / f"cnn{suffix}"
    cnn.save(path) if suffix != ".hdf5" else cnn.save(path.with_suffix(".h5"))
    if suffix == ".hdf5":
        shutil.move(path.with_suffix(".h5"), path)
    model, lines = _load_with_repairs(path)
    assert lines == []
    _assert_same_outputs(cnn, model)


def _tfkeras2_quirks(config, modules):
    """What tf.keras 2 (tf_keras 2.21) wrote beside the Keras 2 format, as seen in its own .h5/.keras files."""
    for d in _walk(config):
        cfg, cls = d.get("config"), d.get("class_name")
        if cls in ("DepthwiseConv2D", "SeparableConv2D"):
            cfg["groups"] = 1
        if cls == "SeparableConv2D":
            cfg.update(kernel_initializer={"class_name": "GlorotUniform", "config": {"seed": None}},
                       kernel_regularizer=None, kernel_constraint=None)
        if cls == "BatchNormalization":
            cfg["axis"] = [3]
        if modules and cls == "Functional":
            d.update(module="tf_keras.src.engine.functional", registered_name="Functional")
        if isinstance(cfg, dict) and "input_layers" in cfg:  # a nested model's calls count from 1
            nested = {layer["name"] for layer in cfg["layers"] if "layers" in layer["config"]}
            for layer in cfg["layers"]:
                for call in layer.get("inbound_nodes", []):
                    for ref in call:
                        ref[1] += ref[0] in nested


def _rewritten_keras_file(model, path, rewrite):
    """`model` as tf_keras 2 saved it to .keras: Keras 2 config with module keys, `rewrite(config)` applied."""
    saved = path.with_name("keras3-" + path.name)
    model.save(saved)
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = _legacy_style(json.loads(data), keep_modules=True)
                rewrite(config)
                data = json.dumps(config)
            dst.writestr(item, data)
    return path


def _tfkeras2_keras_file(model, path):
    return _rewritten_keras_file(model, path, lambda c: _tfkeras2_quirks(c, modules=True))


def _tfkeras2_model():
    """A small base model with the layers whose configs tf.keras 2 wrote differently."""
    import keras

    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inp)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    y = keras.layers.SeparableConv2D(8, 3, padding="same")(keras.layers.DepthwiseConv2D(3, padding="same")(x))
    return keras.Model(inp, keras.layers.Add()([x, y]), name="base")


@pytest.fixture(scope="module")
def transfer():
    """The transfer-learning shape as a Functional model: input -> base model -> pooling -> Dense."""
    import keras

    keras.utils.set_random_seed(5)
    inp = keras.Input((16, 16, 3))
    base = _tfkeras2_model()
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(base(inp))))
    for w in model.weights:
        w.assign(np.random.default_rng(len(w.path)).normal(0.5, 0.2, w.shape).astype("float32") ** 2)
    return model


TFKERAS2 = {"groups-one": 1, "separable-conv-keys": 1, "batchnorm-axis": 1, "nested-io-lists": 1,
            "nested-node-index": 1}


def test_tfkeras2_keras_file_with_a_nested_model(transfer, tmp_path):
    path = _tfkeras2_keras_file(transfer, tmp_path / "tfkeras2.keras")
    assert "Could not locate class 'Functional'" in _plain_keras_error(path)
    loaded, lines = _load_with_repairs(path)
    _assert_repairs(lines, path, {**TFKERAS2, "model-module": 2})
    _assert_same_outputs(transfer, loaded)


def test_tfkeras2_h5_with_a_nested_model(transfer, tmp_path):
    path = _write_h5(transfer, tmp_path / "tfkeras2.h5", lambda c: _tfkeras2_quirks(c, modules=False),
                     keras_version="2.15.0")
    assert "passed to DepthwiseConv2D: {'groups': 1}" in _plain_keras_error(path)
    loaded, lines = _load_with_repairs(path)
    _assert_repairs(lines, path, TFKERAS2)
    _assert_same_outputs(transfer, loaded)


def test_tfkeras2_keras_file_with_augmentation_transpose_and_spatial_dropout(tmp_path):
    """Keys tf.keras 2 wrote on layers that only matter in training, or that Keras 3 dropped."""
    import keras

    keras.utils.set_random_seed(6)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same")(keras.layers.RandomFlip("horizontal")(inp))
    out = keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.SpatialDropout2D(0.2)(x)))
    model = keras.Model(inp, out)

    def quirks(config):
        _layer(config, "RandomFlip")["config"]["rng_type"] = "stateful"
        _layer(config, "Conv2DTranspose")["config"]["groups"] = 1
        _layer(config, "SpatialDropout2D")["config"].update(trainable=True, noise_shape=None)
        _tfkeras2_quirks(config, modules=True)

    path = _rewritten_keras_file(model, tmp_path / "augment.keras", quirks)
    assert "Could not locate class 'Functional'" in _plain_keras_error(path)
    loaded, lines = _load_with_repairs(path)
    _assert_repairs(lines, path, {"augmentation-rng": 1, "groups-one": 1, "spatial-dropout-keys": 1,
                                  "model-module": 1})
    _assert_same_outputs(model, loaded)


def test_tfkeras2_keras_sequential_with_input_shape_on_its_first_layer(cnn, tmp_path):
    """tf.keras 2 kept `batch_input_shape` on the first layer after the InputLayer; Keras 3 rejects the key."""
    def first_layer_shape(config):
        layers = config["config"]["layers"]
        layers[1]["config"]["batch_input_shape"] = layers[0]["config"]["batch_input_shape"]

    path = _rewritten_keras_file(cnn, tmp_path / "seq.keras", first_layer_shape)
    assert "Unrecognized keyword arguments passed to Conv2D: {'batch_input_shape'" in _plain_keras_error(path)
    loaded, lines = _load_with_repairs(path)
    _assert_repairs(lines, path, {"batch-input-shape": 1})
    _assert_same_outputs(cnn, loaded)


def test_cli_info_names_each_repair_in_one_line(cnn, tmp_path, capsys):
    path = _write_h5(cnn, tmp_path / "policy.h5",
                     lambda c: _layer(c, "Dense")["config"].update(
                         dtype={"class_name": "Policy", "config": {"name": "float32"}}), keras_version="2.9.0")
    assert main(["info", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "parameters" in out
    notes = [line for line in err.splitlines() if "repaired" in line]
    assert notes == [f"edge-lowrank info: loaded policy.h5: repaired {WHAT['policy-dtype']} (1 config)"], err


def _lambda_h5(tmp_path, cnn=None):
    import keras

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Lambda(lambda t: t * 2.0)(inp)))
    return _write_h5(model, tmp_path / "lambda.h5", _tfkeras1_initializers)


def _truncated_h5(tmp_path, cnn):
    cnn.save(tmp_path / "full.h5")
    path = tmp_path / "truncated.h5"
    path.write_bytes((tmp_path / "full.h5").read_bytes()[:4096])
    return path


def _not_keras_h5(tmp_path, cnn=None):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    return path


def _truncated_keras(tmp_path, cnn):
    cnn.save(tmp_path / "full.keras")
    path = tmp_path / "truncated.keras"
    path.write_bytes((tmp_path / "full.keras").read_bytes()[:2048])
    return path


def _savedmodel_dir(tmp_path, cnn=None):
    import tensorflow as tf

    path = tmp_path / "saved_model"
    tf.saved_model.save(tf.Module(), str(path))
    return path


def _time_major_true_h5(tmp_path, cnn=None):
    """`time_major: true` changes what the layer computes: no safe repair, so the generic line."""
    import keras

    rnn = keras.Sequential([keras.Input((6, 4)), keras.layers.GRU(5), keras.layers.Dense(3)])
    return _write_h5(rnn, tmp_path / "gru.h5", lambda c: _layer(c, "GRU")["config"].update(time_major=True),
                     keras_version="2.4.0")


@pytest.mark.parametrize("make, failed, todo", [
    (_savedmodel_dir, "TensorFlow SavedModel folder", "save it as .keras or .h5"),
    (_time_major_true_h5, "(written by Keras 2.4.0): Keras 3 refused it (Unrecognized keyword arguments passed "
                          "to GRU: {'time_major': True}); no known repair applies", "save it again as .keras"),
    (_lambda_h5, "Lambda layer", "rebuild the model without Lambda layers"),
    (_truncated_h5, "damaged or not an HDF5 file", "copy or download it again"),
    (_not_keras_h5, "holds no model config", "model.load_weights"),
    (_truncated_keras, "not a Keras model file", "copy or download it again"),
])
def test_unrepairable_file_gives_one_line_and_exit_1(tmp_path, cnn, capsys, make, failed, todo):
    path = make(tmp_path, cnn)
    before = _sha(path) if path.is_file() else None
    assert main(["info", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edge-lowrank info: error:"), err
    assert failed in err[0] and todo in err[0], err[0]
    assert before is None or _sha(path) == before
    with pytest.raises(ModelError):
        load_keras_model(path)


def test_h5_training_config_is_not_read(cnn, tmp_path):
    """Models load uncompiled: an optimizer Keras 3 does not know (tf.keras 1.x `TFOptimizer`) stops nothing."""
    path = tmp_path / "trained.h5"
    cnn.save(path)
    with h5py.File(path, "r+") as f:
        f.attrs["training_config"] = json.dumps({"loss": "mse", "optimizer_config": {
            "class_name": "TFOptimizer", "config": {"optimizer": "<tf.train.AdamOptimizer>"}}}).encode()
    model, lines = _load_with_repairs(path)
    assert lines == []
    _assert_same_outputs(cnn, model)


def test_lambda_after_repairs_says_what_was_tried(tmp_path):
    """A repair applies (initializer dtype) but the file still needs code: the line says both."""
    path = _lambda_h5(tmp_path)
    with pytest.raises(ModelError, match=r"Lambda layer.*after the repairs initializer-dtype"):
        load_keras_model(path)


def test_every_repair_is_safe_on_current_configs(cnn):
    """A config Keras 3.15 wrote itself needs none of the repairs: none of them changes it."""
    from edge_lowrank.legacy import repair_config

    import keras

    inp = keras.Input((16, 16, 3))
    nested = keras.Model(inp, _tfkeras2_model()(inp))
    for model in (cnn, nested, keras.Sequential([keras.Input((16, 16, 3)), nested, keras.layers.Flatten()])):
        config = json.loads(json.dumps(keras.saving.serialize_keras_object(model)))
        before = copy.deepcopy(config)
        assert repair_config(config) == []
        assert config == before
