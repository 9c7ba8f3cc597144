"""`edge-lowrank compress --qat`: the rewritten .keras and, next to it, its QAT int8 .tflite (tfmot in a child)."""

import json
import os
import sys

import numpy as np
import pytest

from edge_lowrank.cli.main import main


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A small CNN trained a little on real Fashion-MNIST images."""
    import keras
    from keras import layers

    from edge_lowrank.data import load_dataset

    keras.utils.set_random_seed(5)
    train = load_dataset("fashion-mnist:train").take(600)
    model = keras.Sequential([keras.Input((28, 28, 1)),
                              layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
                              layers.MaxPooling2D(2, name="pool1"),
                              layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
                              layers.GlobalAveragePooling2D(name="gap"),
                              layers.Dense(10, activation="softmax", name="predictions")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(train.x, train.y, epochs=2, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("models") / "small.keras"
    model.save(path)
    return path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edge-lowrank compress: error:"), err
    return err[0]


def test_qat_options_refused_before_any_work(model_file, tmp_path, capsys):
    out = tmp_path / "o.keras"
    for argv, match in (([], "--qat needs -o/--output"),
                        (["-o", str(out), "--qat-epochs", "0"], "`--qat-epochs`. Expected a positive int"),
                        (["-o", str(out), "--qat-samples", "-1"], "`--qat-samples`. Expected a positive int"),
                        (["-o", str(out), "--qat-lr", "0"], "`--qat-lr`. Expected a positive number")):
        assert main(["compress", str(model_file), "--scheme", "tucker2", "--rank", "8", "--qat", *argv]) == 1
        assert match in _one_error_line(capsys)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_compress_qat_writes_keras_and_int8_qat_file(model_file, tmp_path, capsys):
    from converters.audit import audit_ops
    from converters.convert import to_tflite_isolated
    from converters.fidelity import check_fidelity
    from converters.metadata import read_metadata
    from edge_lowrank.data import load_dataset
    from edge_lowrank.modelio import load_keras_model

    test = load_dataset("fashion-mnist:test").take(300)
    val = tmp_path / "val.npz"
    np.savez(val, x=test.x[..., 0], y=test.y)
    out, rep = tmp_path / "small_t2.keras", tmp_path / "rep.json"
    code = main(["compress", str(model_file), "--scheme", "tucker2", "--rank", "8", "-o", str(out), "--qat",
                 "--qat-samples", "300", "--qat-epochs", "1", "--calib-samples", "50", "--val-data", str(val),
                 "--json", str(rep), "-q"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    qat_path = tmp_path / "small_t2-int8-qat.tflite"
    assert out.is_file() and qat_path.is_file()
    assert "int8 QAT file vs the original Keras model, fidelity on 300 samples" in captured.out

    entry = json.loads(rep.read_text())["qat"]
    assert entry["tflite"] == str(qat_path) and entry["train_samples"] == 300 and entry["epochs"] == 1
    assert entry["fidelity_vs_original"]["n"] == 300
    flat = qat_path.read_bytes()
    meta = read_metadata(flat)
    assert meta["qat"]["train_samples"] == 300 and meta["scheme"] == "tucker2" and meta["precision"] == "int8"

    # The same ops as post-training int8 of the written .keras: QAT changes values, not the graph.
    ptq = to_tflite_isolated(out, subject=out.name, precision="int8", representative_data=test.x[:50])
    a_qat, a_ptq = audit_ops(flat), audit_ops(ptq)
    assert a_qat.op_counts == a_ptq.op_counts and a_qat.op_counts.get("CONV_2D", 0) >= 3
    assert a_qat.xnnpack_partitions == a_ptq.xnnpack_partitions
    # Distilled from the original, the QAT file stays at least as close to it as plain PTQ of the rewrite
    # (measured here: 0.713 both; at --qat-lr 1e-3 this tiny model fell to 0.27, hence the default 1e-5).
    original = load_keras_model(model_file)
    ptq_agree = check_fidelity(original, ptq, test, n=None).top1_agreement
    qat_agree = entry["fidelity_vs_original"]["top1_agreement"]
    assert qat_agree >= ptq_agree - 0.01 and qat_agree >= 0.6
    # tfmot stayed in its child: this process never switched to legacy Keras.
    assert "tensorflow_model_optimization" not in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1"
