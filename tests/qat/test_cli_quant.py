"""`edge-lowrank convert --debug / --float-fallback / --qat` through the real CLI entry point."""

import json

import pytest

from edge_lowrank.cli.main import main


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A small Conv -> ReLU -> BN Sequential CNN, trained a little on real images."""
    import keras
    from keras import layers

    from edge_lowrank.data import load_dataset

    keras.utils.set_random_seed(11)
    train = load_dataset("fashion-mnist:train").take(400)
    model = keras.Sequential([keras.Input((28, 28, 1)),
                              layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
                              layers.BatchNormalization(name="conv1_bn"), layers.MaxPooling2D(2, name="pool1"),
                              layers.Flatten(name="flatten"), layers.Dense(32, activation="relu", name="fc1"),
                              layers.Dense(10, activation="softmax", name="predictions")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(train.x, train.y, epochs=2, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("models") / "seq.keras"
    model.save(path)
    return path


def _only_one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edge-lowrank convert: error:"), err
    return err[0]


@pytest.mark.slow
def test_float_fallback_names_layers_and_prices_them(saved_model, tmp_path, capsys):
    out = tmp_path / "fb.tflite"
    rc = main(["convert", str(saved_model), "--mode", "int8", "--calib-samples", "50", "--eval-samples", "100",
               "--float-fallback", "1", "-o", str(out), "--json"])
    captured = capsys.readouterr()
    assert rc == 0 and out.is_file(), captured.err[-2000:]
    summary = json.loads(captured.out)
    debug = summary["quant_debug"]
    layers = [e["layer"] for e in debug["report"]["layers"]]
    assert {"conv1", "fc1", "predictions"} <= set(layers)
    worst = max(debug["report"]["layers"], key=lambda e: e["rmse_scale"])
    assert debug["kept_in_float"] == [worst["layer"]]
    assert summary["metadata"]["float_fallback"] == [worst["layer"]]
    assert debug["latency"]["int8_ms"] > 0 and debug["latency"]["ratio"] > 0
    assert summary["audit"]["op_counts"].get("DEQUANTIZE", 0) >= 1
    assert summary["fidelity"]["n"] == 100


def test_debug_text_and_bad_options(saved_model, tmp_path, capsys):
    out = tmp_path / "m.tflite"
    rc = main(["convert", str(saved_model), "--mode", "int8", "--calib-samples", "50", "--eval-samples", "50",
               "--debug", "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "int8 error per op on 50 calibration samples" in text and "worst 5:" in text
    report = text.split("worst 5:")[1].splitlines()[1:6]
    assert all(line.split()[-1] in ("conv1", "conv1_bn", "pool1", "flatten", "fc1", "predictions")
               or line.split()[-1].startswith("StatefulPartitionedCall") for line in report), report
    assert "kept in float" not in text

    for argv, match in ((["--qat"], "--qat needs --mode int8"),
                        (["--debug"], "--debug needs --mode int8"),
                        (["--mode", "int8", "--float-fallback", "-2"], "Expected an int >= 0"),
                        (["--mode", "int8", "--qat", "--float-fallback", "1"], "one at a time"),
                        (["--mode", "int8", "--qat", "--qat-epochs", "0"], "`--qat-epochs`. Expected a positive")):
        assert main(["convert", str(saved_model), "-o", str(tmp_path / "x.tflite"), *argv]) == 1
        assert match in _only_one_error_line(capsys)
    assert not (tmp_path / "x.tflite").exists()


@pytest.mark.slow
def test_qat_through_the_cli(saved_model, tmp_path, capsys):
    out = tmp_path / "qat.tflite"
    rc = main(["convert", str(saved_model), "--mode", "int8", "--calib-samples", "50", "--eval-samples", "100",
               "--qat", "--qat-samples", "300", "--qat-epochs", "1", "-o", str(out), "--json"])
    captured = capsys.readouterr()
    assert rc == 0 and out.is_file(), captured.err[-2000:]
    summary = json.loads(captured.out)
    qat = summary["metadata"]["qat"]
    assert qat["train_samples"] == 300 and qat["epochs"] == 1 and qat["lr"] == 1e-5
    assert qat["labels"] is False and qat["label_weight"] == 0.0  # pure distillation by default
    assert summary["audit"]["xnnpack_partitions"] == 1
    assert summary["fidelity"]["top1_agreement"] >= 0.75
