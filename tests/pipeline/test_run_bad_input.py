"""Bad input to `edge-lowrank run`: one clear line, a non-zero exit, and nothing half-written."""

import contextlib
import io
import json

import numpy as np

from edge_lowrank.cli.main import main


def run_main(*args):
    so, se = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
        rc = main(["run", *map(str, args)])
    return rc, so.getvalue(), se.getvalue()


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if "error" in ln]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_data_that_does_not_fit_the_model(fast_flags, tiny, tmp_path):
    model, _ = tiny
    npz = tmp_path / "rgb.npz"
    np.savez(npz, x=np.zeros((8, 32, 32, 3), np.float32), y=np.zeros(8, np.int64))
    out = tmp_path / "out"
    rc, _, stderr = run_main(model, "--data", npz, "--out", out, *fast_flags)
    assert rc == 1
    assert "(32, 32, 3)" in one_error_line(stderr) and "(28, 28, 1)" in stderr
    assert not out.exists(), "inputs are checked before the output folder is made"


def test_unwritable_output_folder(fast_flags, tiny, tmp_path):
    model, npz = tiny
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    rc, _, stderr = run_main(model, "--data", npz, "--out", blocker / "out", *fast_flags)
    assert rc == 1
    assert "not writable" in one_error_line(stderr)
    assert blocker.read_text() == "not a folder"


def test_bad_settings_are_one_line_each(tiny, tmp_path):
    model, npz = tiny
    out = tmp_path / "out"
    rc, _, stderr = run_main(model, "--data", npz, "--out", out, "--schemes", "tucker3")
    assert rc == 1 and "tucker3" in one_error_line(stderr)
    cfg = tmp_path / "bad.toml"
    cfg.write_text("max-sise-kb = 10\n")
    rc, _, stderr = run_main(model, "--data", npz, "--out", out, "--config", cfg)
    assert rc == 1 and "Unknown setting `max-sise-kb`" in one_error_line(stderr)
    cfg.write_text("min-speedup = 'fast'\n")
    rc, _, stderr = run_main(model, "--data", npz, "--out", out, "--config", cfg)
    assert rc == 1 and "min_speedup" in one_error_line(stderr)
    rc, _, stderr = run_main(tmp_path / "missing.keras", "--data", npz, "--out", out)
    assert rc == 1 and "does not exist" in one_error_line(stderr)
    assert not out.exists()


def test_model_with_no_supported_layer_still_reports_the_baseline(fast_flags, tiny, tmp_path):
    import keras

    _, npz = tiny
    keras.utils.set_random_seed(1)
    inp = keras.Input((28, 28, 1))
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=10, padding="same")(inp)  # nothing to factorize
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Activation("softmax")(x))
    path = tmp_path / "depthwise_only.keras"
    model.save(path)
    out = tmp_path / "out"
    rc, stdout, stderr = run_main(path, "--data", npz, "--out", out, "--schemes", "spatial,channel", *fast_flags)
    assert rc == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert [v["id"] for v in report["variants"]] == ["baseline-float32", "baseline-int8"]
    assert [s["status"] for s in report["schemes"]] == ["no-supported-layer"] * 2
    assert all("no layer was rewritten" in s["message"] for s in report["schemes"])
    assert "no-supported-layer" in (out / "report.md").read_text()
    assert not (out / "models" / "spatial.keras").exists()
