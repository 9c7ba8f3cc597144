"""`edge-lowrank compress`: the table, the files, and one-line errors with exit code 1."""

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edge_lowrank.cli.main import main  # noqa: E402

L = keras.layers


@pytest.fixture
def model_file(tmp_path):
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((12, 12, 1)), L.Conv2D(32, 3, activation="relu", name="c1"),
                          L.Conv2D(32, 3, name="c2"), L.GlobalAveragePooling2D(),
                          L.Dense(10, activation="softmax", name="head")])
    path = tmp_path / "m.keras"
    m.save(path)
    return path


def test_compress_writes_model_and_json(model_file, tmp_path, capsys):
    out, rep = tmp_path / "o" / "small.keras", tmp_path / "rep.json"
    code = main(["compress", str(model_file), "--scheme", "tucker2", "--rank", "8", "-o", str(out),
                 "--json", str(rep), "-q"])
    text = capsys.readouterr().out
    assert code == 0
    assert "c2" in text and "factorized" in text and "8x8" in text and "MACs" in text
    data = json.loads(rep.read_text())
    rows = {r["name"]: r for r in data["layers"]}
    assert rows["c2"]["ranks"] == [8, 8] and rows["c1"]["action"] == "kept" and rows["c1"]["reason"]
    assert data["macs_after"] < data["macs_before"]
    m = keras.models.load_model(out)
    x = np.random.default_rng(0).random((2, 12, 12, 1)).astype("float32")
    assert m.predict(x, verbose=0).shape == (2, 10)
    assert not list(out.parent.glob(".*tmp*"))


@pytest.mark.parametrize("args, match", [
    (["--scheme", "tucker2", "--rank", "0"], "rank"),
    (["--scheme", "output", "--rank", "8"], "calibration"),
    (["--scheme", "cp", "--rank", "4", "-o", "x.h5"], ".keras"),
    (["--scheme", "spatial", "--rank", "4000"], "full rank"),
])
def test_bad_arguments_one_line(model_file, tmp_path, capsys, args, match):
    code = main(["compress", str(model_file), *args])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and match in err


def test_not_a_keras_file(tmp_path, capsys):
    bad = tmp_path / "m.keras"
    bad.write_text("not a model")
    assert main(["compress", str(bad), "--scheme", "tucker2"]) == 1
    assert "not a Keras model file" in capsys.readouterr().err


def test_nothing_to_rewrite_writes_nothing(tmp_path, capsys):
    m = keras.Sequential([keras.Input((8, 8, 2)), L.DepthwiseConv2D(3), L.GlobalAveragePooling2D()])
    path, out = tmp_path / "dw.keras", tmp_path / "out.keras"
    m.save(path)
    assert main(["compress", str(path), "--scheme", "tucker2", "--rank", "8", "-o", str(out)]) == 1
    assert "Nothing written" in capsys.readouterr().err and not out.exists()


def test_layer_rank_flag(model_file, tmp_path, capsys):
    rep = tmp_path / "rep.json"
    assert main(["compress", str(model_file), "--scheme", "tucker2", "--energy", "0.5", "--layer-rank", "c2=4x8",
                 "--json", str(rep), "-q"]) == 0
    assert {r["name"]: r["ranks"] for r in json.loads(rep.read_text())["layers"]}["c2"] == [4, 8]
    assert main(["compress", str(model_file), "--scheme", "tucker2", "--layer-rank", "c2=four"]) == 1
    assert "--layer-rank" in capsys.readouterr().err
