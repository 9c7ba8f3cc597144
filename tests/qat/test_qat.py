"""Quantization-aware fine-tuning: the flat graph handed to the child, the child itself (tfmot, tf_keras, the
real TFLite converter) and the isolation of this process from tfmot's legacy-Keras switch."""

import os
import subprocess
import sys

import numpy as np
import pytest

from converters.qat import flatten_graph, qat_tflite
from edge_lowrank.errors import DataError, ModelError


def _conv_relu_bn_model():
    """Conv -> ReLU -> BN (standalone BN), a Conv -> BN pair tfmot folds, a nested low-rank-style block."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(3)
    block = keras.Sequential([keras.Input((14, 14, 8)),
                              layers.Conv2D(4, (3, 1), padding="same", use_bias=False, name="f1"),
                              layers.Conv2D(16, (1, 3), padding="same", name="f2")], name="block")
    inp = keras.Input((28, 28, 1))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    x = layers.BatchNormalization(name="conv1_bn")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = block(x)
    x = layers.BatchNormalization(name="block_bn")(x)
    x = layers.ReLU(name="block_relu")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(32, activation="relu", name="fc1")(x)
    out = layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def data():
    from edge_lowrank.data import load_dataset

    train = load_dataset("fashion-mnist:train").take(600)
    test = load_dataset("fashion-mnist:test").take(300)
    return train, test


@pytest.fixture(scope="module")
def trained(data):
    train, _ = data
    model = _conv_relu_bn_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(train.x, train.y, epochs=2, batch_size=32, verbose=0)
    return model


def test_flatten_graph_inlines_nested_blocks(trained):
    spec, weights = flatten_graph(trained)
    names = [e["name"] for e in spec["layers"]]
    assert names == ["conv1", "conv1_bn", "pool1", "block__f1", "block__f2", "block_bn", "block_relu", "flatten",
                     "fc1", "predictions"]
    by = {e["name"]: e for e in spec["layers"]}
    assert by["block__f1"]["inputs"] == ["pool1"] and by["block_bn"]["inputs"] == ["block__f2"]
    assert spec["outputs"] == ["predictions"] and spec["input_shape"] == [28, 28, 1]
    assert sum(len(e["weights"]) for e in spec["layers"]) == len(weights) == len(trained.get_weights())
    assert "dtype" not in by["conv1"]["config"] and by["conv1"]["config"]["activation"] == "relu"


def test_flatten_graph_refuses_what_it_cannot_rebuild():
    import keras
    from keras import layers

    inp = keras.Input((8,))
    ln = keras.Model(inp, layers.LayerNormalization(name="ln")(inp))
    with pytest.raises(ModelError, match="Layer 'ln' is a LayerNormalization: QAT rebuilds only stock layers"):
        flatten_graph(ln)
    shared = layers.Dense(8, name="shared")
    x = keras.Input((8,))
    twice = keras.Model(x, shared(shared(x)))
    with pytest.raises(ModelError, match="'shared' is called more than once"):
        flatten_graph(twice)
    with pytest.raises(ModelError, match="Expected a keras.Model"):
        flatten_graph("model.keras")


def test_bad_arguments_are_one_line_errors(trained, data):
    train, _ = data
    x = train.x[:20]
    with pytest.raises(DataError, match="Invalid value for `epochs`"):
        qat_tflite(trained, x, calib_x=x, epochs=0)
    with pytest.raises(DataError, match="Invalid value for `label_weight`"):
        qat_tflite(trained, x, calib_x=x, label_weight=1.5)
    with pytest.raises(DataError, match="labels must be 20 ints"):
        qat_tflite(trained, x, calib_x=x, labels=np.zeros(3, np.int64))
    with pytest.raises(DataError, match=r"samples of shape \(28, 28\)"):
        qat_tflite(trained, x[..., 0], calib_x=x)
    with pytest.raises(DataError, match="teacher_out has 5 rows for 20"):
        qat_tflite(trained, x, np.zeros((5, 10), np.float32), calib_x=x)
    with pytest.raises(ModelError, match="does not exist"):
        qat_tflite("/nonexistent/model.keras", x, calib_x=x)


def test_importing_qat_does_not_import_tfmot(repo_root):
    code = ("import os, sys, converters.qat; "
            "print('tensorflow_model_optimization' in sys.modules, 'tf_keras' in sys.modules, "
            "os.environ.get('TF_USE_LEGACY_KERAS'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=repo_root).stdout
    assert out.split() == ["False", "False", "None"]


@pytest.mark.slow
def test_qat_child_gives_int8_file_with_the_ops_of_ptq(trained, data):
    import keras

    from converters.audit import audit_ops
    from converters.convert import to_tflite
    from converters.fidelity import check_fidelity
    from converters.metadata import read_metadata

    train, test = data
    calib = train.x[:100]
    qat = qat_tflite(trained, train.x[:500], calib_x=calib, labels=train.y[:500], label_weight=0.5, epochs=1,
                     lr=1e-4)
    ptq = to_tflite(trained, precision="int8", representative_data=calib)

    # This process stayed on Keras 3: tfmot and its legacy switch lived in the child only.
    assert os.environ.get("TF_USE_LEGACY_KERAS") is None
    assert "tensorflow_model_optimization" not in sys.modules and "tf_keras" not in sys.modules
    assert keras.__version__.startswith("3.")

    a_qat, a_ptq = audit_ops(qat), audit_ops(ptq)
    assert a_qat.builtin_only and a_qat.input_dtypes == ("int8",) and a_qat.output_dtypes == ("int8",)
    assert a_qat.op_counts == a_ptq.op_counts, (a_qat.render(), a_ptq.render())
    assert a_qat.xnnpack_partitions == a_ptq.xnnpack_partitions == 1
    meta = read_metadata(qat)
    assert meta["precision"] == "int8" and meta["qat"]["epochs"] == 1 and meta["qat"]["train_samples"] == 500
    assert meta["qat"]["loss"] == "kl" and meta["qat"]["labels"] is True and meta["qat"]["label_weight"] == 0.5
    assert meta["qat"]["freeze_bn"] is True
    assert len(meta["qat"]["history"]) == 1 and np.isfinite(meta["qat"]["history"][0])

    fid = check_fidelity(trained, qat, test)  # held-out images the child never saw
    assert fid.n == 300
    # Fine-tuning moves the weights (with labels it may even beat this under-trained float model: 66% on
    # 600 images), so agreement is measured, not exact; a broken rebuild (wrong weights or graph) lands
    # near chance (10%).
    assert fid.top1_agreement >= 0.75, fid.render()
    assert fid.accuracy_tflite >= fid.accuracy_keras - 0.05, fid.render()



@pytest.fixture(scope="module")
def rewritten(data):
    """A Conv -> BN -> ReLU net, trained briefly, after spatial: both BNs folded into factor blocks."""
    import keras
    from keras import layers

    from edge_lowrank.rewrite import CompressionPolicy, compress

    train, _ = data
    keras.utils.set_random_seed(4)
    inp = keras.Input((28, 28, 1))
    x = inp
    for i, width in enumerate((16, 24)):
        x = layers.Conv2D(width, 3, strides=2, padding="same", name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"conv{i}_bn")(x)
        x = layers.ReLU(name=f"conv{i}_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Dense(10, activation="softmax", name="predictions")(x)
    model = keras.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(train.x, train.y, epochs=2, batch_size=32, verbose=0)
    small, _ = compress(model, CompressionPolicy("spatial", rank=2, rank_multiple=1))
    return small


def test_flatten_graph_drops_the_identity_of_a_folded_batchnorm(rewritten):
    """The rewrite leaves an Identity where it folded a BN; tfmot's registry refuses Identity, so the flat
    graph wires its consumer to its producer instead (found on the sample ResNet: every QAT run of a rewrite
    with folded BNs failed)."""
    import keras

    from edge_lowrank.rewrite.graph import graph_nodes

    identities = [n.operation.name for n in graph_nodes(rewritten)
                  if isinstance(n.operation, keras.layers.Identity)]
    assert sorted(identities) == ["conv0_bn", "conv1_bn"]
    spec, weights = flatten_graph(rewritten)
    by = {e["name"]: e for e in spec["layers"]}
    assert "Identity" not in {e["class_name"] for e in spec["layers"]} and not set(identities) & set(by)
    assert by["conv0_relu"]["inputs"] == ["conv0__conv0_horizontal"]  # the factor block's last conv
    assert by["conv1__conv1_vertical"]["inputs"] == ["conv0_relu"]
    for e in spec["layers"]:  # every input is the model input or a layer that is still there
        assert all(i == "input" or i in by for i in e["inputs"]), e
    assert sum(len(e["weights"]) for e in spec["layers"]) == len(weights) == len(rewritten.get_weights())


@pytest.mark.slow
def test_qat_child_runs_on_a_rewrite_with_folded_batchnorms(rewritten, data):
    from converters.fidelity import check_fidelity

    train, test = data
    qat = qat_tflite(rewritten, train.x[:300], calib_x=train.x[:100], epochs=1)
    fid = check_fidelity(rewritten, qat, test)
    assert fid.top1_agreement >= 0.75, fid.render()
