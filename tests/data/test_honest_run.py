"""Honest data end to end on real Fashion-MNIST images and the small CNN fixture, through the real CLI.

- an unlabelled .npz given alone: split into a fine-tuning part and a held-out test part, distilled on the
  original's outputs, every accuracy figure is top-1 agreement with the original, labelled as such; a
  Functional model saved as a legacy Keras 2 .h5 leaves no Keras warning on stderr (they go to debug.log);
- a model defined on 0..255 pixels gets, with `--input-range 0,255`, the top-1 the [0, 1] model gets
  without it, in `info`, `convert` + `bench` (also from the .tflite's recorded normalization) and `run`;
  a model starting with Rescaling(1/255) gets pixels without any flag.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

N = 300
FAST = ["--batch-size", "64", "--calib-samples", "64", "--num-runs", "3", "--min-secs", "0.02", "--arm", "none",
        "--no-progress", "--no-c-arrays"]


def cli(*args, cwd=None):
    """`python -m edge_lowrank ARGS` in a child, as a user or CI job runs it: (rc, stdout, stderr)."""
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0",
           "OPENBLAS_NUM_THREADS": "1"}
    env.pop("EDGE_LOWRANK_DEBUG", None)
    p = subprocess.run([sys.executable, "-m", "edge_lowrank", *map(str, args)], env=env, cwd=cwd,
                       capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout, p.stderr


def in_process(*args):
    """The CLI in this process (TensorFlow is imported once): (rc, stdout, stderr)."""
    import contextlib
    import io

    from edge_lowrank.cli.main import main

    so, se = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
        rc = main([str(a) for a in args])
    return rc, so.getvalue(), se.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory, repo_root):
    """Real images as uint8 .npz (labelled and not), the fixture CNN, its 0..255 twin and a Rescaling-led one."""
    from edge_lowrank.data import load_dataset

    folder = tmp_path_factory.mktemp("honest")
    test = load_dataset("fashion-mnist:test")
    x = (test.x[:N, ..., 0] * 255).round().astype(np.uint8)
    np.savez(folder / "labelled.npz", x=x, y=test.y[:N])
    np.savez(folder / "unlabelled.npz", x=x)
    src = repo_root / "tests" / "fixtures" / "small_cnn_fmnist.keras"
    model = keras.models.load_model(src)
    # the same function on 0..255 pixels: the first conv's kernel takes the 1/255 (bias unchanged)
    pixels = keras.models.clone_model(model)
    pixels.set_weights(model.get_weights())
    first = next(lyr for lyr in pixels.layers if isinstance(lyr, keras.layers.Conv2D))
    kernel, bias = first.get_weights()
    first.set_weights([kernel / 255.0, bias])
    pixels.save(folder / "pixels.keras")
    inp = keras.Input((28, 28, 1))
    rescaled = keras.Model(inp, model(keras.layers.Rescaling(1 / 255.0)(inp)))
    rescaled.save(folder / "rescaled.keras")
    # a Functional model saved as a Keras 2 era .h5: input/output layers as lists of lists
    import h5py

    model.save(folder / "legacy.h5")
    with h5py.File(folder / "legacy.h5", "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        for key in ("input_layers", "output_layers"):
            cfg["config"][key] = [cfg["config"][key]]
        f.attrs["model_config"] = json.dumps(cfg)
    return {"dir": folder, "model": src, "pixels": folder / "pixels.keras", "rescaled": folder / "rescaled.keras",
            "legacy": folder / "legacy.h5", "labelled": folder / "labelled.npz",
            "unlabelled": folder / "unlabelled.npz"}


@pytest.mark.slow
def test_unlabelled_npz_alone_is_split_and_scored_as_agreement_without_keras_noise(files):
    out = files["dir"] / "run_unlabelled"
    rc, stdout, stderr = cli("run", files["legacy"], "--data", files["unlabelled"], "--out", out,
                             "--schemes", "spatial", "--finetune-epochs", "1", "--max-accuracy-drop", "100", *FAST)
    assert rc == 0, stderr
    # no Keras/TF warning reaches the user; they are kept in debug.log
    assert "structure of `inputs`" not in stderr and "Warning" not in stderr, stderr
    assert all(line.startswith(("[", "  ")) for line in stderr.splitlines() if line.strip()), stderr
    assert "The structure of `inputs` doesn't match" in (out / "debug.log").read_text()
    report = json.loads((out / "report.json").read_text())
    data = report["data"]
    assert data["mode"] == "agreement" and data["metric"] == "top-1 agreement with the original float model"
    split = data["split"]
    assert split["rule"] == "random (no labels)" and split["n_total"] == N
    assert (data["test"]["n"], data["train"]["n"]) == (split["n_test"], split["n_finetune_calib"]) == (60, 240)
    spatial = next(s for s in report["schemes"] if s["scheme"] == "spatial")
    assert spatial["status"] == "ok" and spatial["finetune"]["labels"] is False  # distilled on the teacher alone
    base = next(v for v in report["variants"] if v["id"] == "baseline-float32")
    assert base["top1"] == 1.0  # the float .tflite agrees with the float Keras model it came from
    for v in report["variants"]:
        assert 0.5 < v["top1"] <= 1.0, v
    md = (out / "report.md").read_text()
    assert "Agreement w/ float model %" in md and "Top-1 %" not in md
    assert "60 held out for testing" in md and "--max-accuracy-drop applies to it" in md
    html = (out / "report.html").read_text()
    assert "Agreement w/ float model %" in html and "test data have no labels" in html
    assert "Agreement w/ float model %" in stdout and "240 images for fine-tuning" in stdout


def test_keras_warnings_go_to_the_debug_log_and_ours_stay(files, capsys, monkeypatch, tmp_path):
    """The CLI's warning hook: Keras' "structure of `inputs`" on a legacy Functional .h5 leaves stderr clean."""
    import warnings

    from edge_lowrank import debuglog
    from edge_lowrank.cli.main import _project_notes_as_lines
    from edge_lowrank.modelio import load_keras_model

    monkeypatch.delenv("EDGE_LOWRANK_DEBUG", raising=False)
    model = load_keras_model(files["legacy"])
    x = np.zeros((1, 28, 28, 1), np.float32)
    # pytest records warnings itself: print them as Python would, so the hook's fall-through is visible
    monkeypatch.setattr(warnings, "showwarning", lambda m, c, f, n, file=None, line=None:
                        print(f"{f}:{n}: {c.__name__}: {m}", file=sys.stderr))
    ours = str(Path(debuglog.__file__).parent / "rank" / "budget.py")  # as if the rank budget warned
    debuglog.set_file(tmp_path / "debug.log")
    try:
        with _project_notes_as_lines("run"), warnings.catch_warnings():
            warnings.simplefilter("always")
            model(x)  # Keras warns: the .h5 lists its one input as a list
            warnings.warn_explicit("a note of the project's own", UserWarning, ours, 1)
    finally:
        debuglog.close()
    err = capsys.readouterr().err
    assert "structure of `inputs`" not in err and "a note of the project's own" in err
    assert "The structure of `inputs` doesn't match" in (tmp_path / "debug.log").read_text()


def test_accuracy_gate_on_agreement_says_so():
    from edge_lowrank.pipeline.gates import evaluate

    variants = [{"id": "a", "top1": 0.9, "accuracy_drop_pp": 10.0, "host_median_us": 1.0, "size_bytes": 10,
                 "speedup_gate": 1.0}]
    msg = evaluate(variants, {"max_accuracy_drop": 1.0}, accuracy="agreement").message
    assert "--max-accuracy-drop 1 by 9 pp" in msg and "top-1 agreement with the original" in msg
    assert "agreement" not in evaluate(variants, {"max_accuracy_drop": 1.0}).message


def _top1(text):
    return float(text.split("top-1 on ")[1].split(": ")[1].split("%")[0])


def test_a_pixel_model_gets_pixels_with_the_flag_in_info(files):
    rc, base, err = in_process("info", files["model"], "--data", files["labelled"])
    assert rc == 0, err
    rc, px, err = in_process("info", files["pixels"], "--data", files["labelled"], "--input-range", "0,255")
    assert rc == 0, err
    assert _top1(px) == _top1(base) > 80.0
    rc, wrong, err = in_process("info", files["pixels"], "--data", files["labelled"], "--input-scale", "1")
    assert rc == 0 and _top1(wrong) < _top1(base) - 20  # fed [0, 1] images, the pixel model is lost
    rc, rescaled, err = in_process("info", files["rescaled"], "--data", files["labelled"])  # no flag: the layer says
    assert rc == 0 and _top1(rescaled) == _top1(base) and "0..255 pixels" in rescaled, rescaled + err


@pytest.mark.slow
def test_a_pixel_model_converted_with_the_flag_benches_like_the_unit_model(files, tmp_path):
    a, b = tmp_path / "a.tflite", tmp_path / "b.tflite"
    rc, _, err = in_process("convert", files["model"], "-o", a, "--eval-data", "none")
    assert rc == 0, err
    rc, text, err = in_process("convert", files["pixels"], "-o", b, "--eval-data", files["labelled"],
                               "--input-range", "0,255")
    assert rc == 0 and "x * 255 + 0" in text, text + err
    assert "top-1 agreement 100.00%" in text  # fidelity fed the pixel model pixels too
    rc, text, err = in_process("inspect", b, "--json")
    norm = json.loads(text)["metadata"]["input_normalization"]
    assert (norm["mean"], norm["std"]) == ([0.0], [1.0])  # the app feeds raw pixels: (pixel - 0) / 1
    acc = {}
    for name, flags in (("a", []), ("b-flag", ["--input-range", "0,255"]), ("b-metadata", [])):
        path = a if name == "a" else b
        rc, text, err = in_process("bench", path, "--data", files["labelled"], "--num-runs", "3", "--min-secs", "0",
                            "--warmup-runs", "1", "--warmup-min-secs", "0", "--json", "-", *flags)
        assert rc == 0, err
        result = json.loads(text)["results"][0]
        acc[name] = result["accuracy"]
        assert ("x * 255 + 0" in result["extra"]["input_transform"]) == (name != "a")
    assert acc["a"] == acc["b-flag"] == acc["b-metadata"] > 0.8, acc


@pytest.mark.slow
def test_run_gives_a_pixel_model_the_same_top1_with_the_flag(files):
    common = ["--data", files["labelled"], "--schemes", "weight-svd", "--finetune-epochs", "0",
              "--max-accuracy-drop", "100", *FAST]
    reports = {}
    for name, model, flags in (("unit", files["model"], []), ("pixels", files["pixels"], ["--input-range", "0,255"]),
                               ("rescaled", files["rescaled"], [])):
        out = files["dir"] / f"run_{name}"
        rc, _, err = cli("run", model, "--out", out, *common, *flags)
        assert rc == 0, err
        reports[name] = json.loads((out / "report.json").read_text())
    top1 = {n: {v["id"]: v["top1"] for v in r["variants"]} for n, r in reports.items()}
    assert top1["pixels"]["baseline-float32"] == top1["unit"]["baseline-float32"] > 0.8
    assert top1["rescaled"]["baseline-float32"] == top1["unit"]["baseline-float32"]
    assert abs(top1["pixels"]["baseline-int8"] - top1["unit"]["baseline-int8"]) <= 0.02
    assert reports["pixels"]["data"]["input_transform"]["normalization"]["std"] == [1.0]
    assert reports["unit"]["data"]["input_transform"]["source"] == "default"
    rescaled = reports["rescaled"]["data"]
    assert rescaled["input_transform"]["source"] == "model"
    assert any("data go in raw, as 0..255 pixels" in n for n in rescaled["notes"])


def test_which_data_are_split(files, tmp_path):
    """Fashion-MNIST keeps its official split; --train-data means no split; an .npz alone is split per class."""
    from edge_lowrank.pipeline.config import RunConfig
    from edge_lowrank.pipeline.stages import load_inputs

    def inputs(**kw):
        return load_inputs(RunConfig(model=str(files["model"]), out=str(tmp_path), finetune_samples=500,
                                     calib_samples=50, **kw).validate())

    fm = inputs(data="fashion-mnist", eval_samples=300)
    assert fm.data_info["split"] is None and fm.data_info["specs"]["train"] == ("fashion-mnist:train", None)
    assert (len(fm.test), len(fm.train), fm.data_info["specs"]["calib"][0]) == (300, 500, "fashion-mnist:calib")
    given = inputs(data=str(files["labelled"]), train_data=str(files["unlabelled"]))
    assert given.data_info["split"] is None and len(given.test) == N and given.train.y is None
    alone = inputs(data=str(files["labelled"]), test_fraction=0.5, seed=7)
    split = alone.data_info["split"]
    assert split["rule"] == "per class (stratified)" and split["seed"] == 7
    assert abs(len(alone.test) - N / 2) <= 10 and len(alone.test) + len(alone.train) == N
    # every class is in both parts, about half of it in each
    for c in range(10):
        n_test, n_train = int(np.sum(alone.test.y == c)), int(np.sum(alone.train.y == c))
        assert n_test >= 1 and n_train >= 1 and abs(n_test - n_train) <= 1
    test_rows = {alone.test.x[i].tobytes() for i in range(len(alone.test))}
    assert not any(alone.train.x[i].tobytes() in test_rows for i in range(len(alone.train)))
    assert alone.fingerprints["test"] != alone.fingerprints["train"]
