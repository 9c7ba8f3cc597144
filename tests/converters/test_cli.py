"""`edge-lowrank convert` and `inspect`, run through the real CLI entry point on saved .keras files."""

import hashlib
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from edge_lowrank.cli.main import main


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, tiny_resnet):
    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    tiny_resnet.save(path)
    return path


def _convert(*argv):
    return main(["convert", *map(str, argv)])


def _only_one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edge-lowrank convert: error:"), err
    return err[0]


def test_convert_int8_with_c_array_then_inspect(saved_model, tmp_path, capsys):
    out, cc = tmp_path / "m.tflite", tmp_path / "m.cc"
    rc = _convert(saved_model, "--mode", "int8", "--calib-samples", 32, "--eval-samples", 100,
                  "-o", out, "--c-array", cc)
    text = capsys.readouterr().out
    assert rc == 0
    assert "xnnpack: 1 partition(s); nodes outside: SOFTMAX (expected" in text
    assert "fidelity on 100 samples of fashion-mnist:test[:100]" in text
    assert "tflm: runs, minimal arena" in text
    assert out.is_file() and cc.is_file() and (tmp_path / "m.h").is_file()
    assert '#include "m.h"' in cc.read_text() and "g_m_ARENA_SIZE" not in cc.read_text()
    assert "#define G_M_ARENA_SIZE" in (tmp_path / "m.h").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.cc", "m.h", "m.tflite"]  # no temp files left

    assert main(["inspect", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    meta = info["metadata"]
    assert meta["source_sha256"] == hashlib.sha256(saved_model.read_bytes()).hexdigest()
    assert meta["precision"] == "int8" and meta["calibration_samples"] == 32
    assert info["audit"]["xnnpack_partitions"] == 1 and info["tflm_ops"][0] == "Add"

    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "weights: " in text and "metadata: " in text and "source_model=tiny.keras" in text


def test_metadata_json_travels_with_the_model(saved_model, tmp_path, capsys):
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"scheme": "tucker2", "ranks": {"conv2d": [4, 8]}}))
    out = tmp_path / "m.tflite"
    assert _convert(saved_model, "--mode", "float16", "--eval-data", "none", "--metadata-json", meta,
                    "-o", out, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["metadata"]["scheme"] == "tucker2" and summary["fidelity"] is None
    assert summary["size_bytes"] == out.stat().st_size


@pytest.mark.slow
def test_cli_output_is_byte_identical_across_processes(saved_model, tmp_path, capsys):
    a, b = tmp_path / "a.tflite", tmp_path / "b.tflite"
    assert _convert(saved_model, "--mode", "float32", "--eval-data", "none", "-o", a) == 0
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0")
    subprocess.run([sys.executable, "-m", "edge_lowrank.cli.main", "convert", str(saved_model), "--mode",
                    "float32", "--eval-data", "none", "-o", str(b)], check=True, env=env, timeout=300,
                   capture_output=True)
    assert a.read_bytes() == b.read_bytes()


def test_corrupt_keras_file(tmp_path, capsys):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(os.urandom(2048))
    out = tmp_path / "out.tflite"
    assert _convert(bad, "--mode", "float32", "-o", out) == 1
    assert "not a Keras model file" in _only_one_error_line(capsys)
    assert not out.exists()

    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("config.json", "{not json")
    assert _convert(bad, "--mode", "float32", "-o", out) == 1
    assert "Cannot load" in _only_one_error_line(capsys)
    assert not out.exists()


def test_lambda_layer_is_refused_without_running_it(tmp_path, capsys):
    import keras

    marker = tmp_path / "ran"
    inp = keras.Input((28, 28, 1))
    leaves_trace = eval(f"lambda t: (open({str(marker)!r}, 'w').close(), t * 2.0)[1]")  # a file when it runs
    x = keras.layers.Lambda(leaves_trace)(inp)
    out_t = keras.layers.Dense(3)(keras.layers.Flatten()(x))
    path = tmp_path / "lambda.keras"
    keras.Model(inp, out_t).save(path)
    marker.unlink()
    out = tmp_path / "out.tflite"
    assert _convert(path, "--mode", "float32", "-o", out) == 1
    assert "Lambda" in _only_one_error_line(capsys)
    assert not out.exists() and not marker.exists()


def test_unregistered_custom_layer_is_refused(tmp_path, capsys):
    import keras

    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inp = keras.Input((4,))
    path = tmp_path / "custom.keras"
    keras.Model(inp, Doubler()(inp)).save(path)
    out = tmp_path / "out.tflite"
    assert _convert(path, "--mode", "float32", "-o", out) == 1
    assert "Cannot load" in _only_one_error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("x, match", [
    (np.random.default_rng(0).random((16, 32, 32, 1), dtype=np.float32), r"shape \(32, 32, 1\)"),
    (np.random.default_rng(0).integers(0, 256, (16, 28, 28, 1)).astype(np.float32), "input range"),
    (np.zeros((0, 28, 28, 1), np.float32), "N > 0"),
])
def test_bad_calibration_data(saved_model, tmp_path, capsys, x, match):
    data = tmp_path / "calib.npz"
    np.savez(data, x=x)
    out = tmp_path / "out.tflite"
    assert _convert(saved_model, "--mode", "int8", "--calib-data", data, "-o", out) == 1
    line = _only_one_error_line(capsys)
    assert pytest.importorskip("re").search(match, line), line
    assert not out.exists()


def test_bad_output_names_and_ranges(saved_model, tmp_path, capsys):
    assert _convert(saved_model, "-o", tmp_path / "out.bin") == 1
    assert ".tflite" in _only_one_error_line(capsys)
    assert _convert(saved_model, "-o", tmp_path / "o.tflite", "--input-range", "1,0") == 1
    assert "LOW must be below HIGH" in _only_one_error_line(capsys)
    assert not list(tmp_path.iterdir())


def test_c_array_for_a_precision_tflm_cannot_run(saved_model, tmp_path, capsys):
    out = tmp_path / "m.tflite"
    assert _convert(saved_model, "--mode", "dynamic", "--eval-data", "none", "-o", out,
                    "--c-array", tmp_path / "m.cc") == 1
    assert "--mode int8" in _only_one_error_line(capsys)
    assert not list(tmp_path.iterdir())


def test_inspect_bad_files(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing.tflite")]) == 1
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"junk" * 10)
    assert main(["inspect", str(junk)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "TFL3" in err[1]
