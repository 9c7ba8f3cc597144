"""`run --qat`: a SCHEME-int8-qat variant beside post-training int8, fine-tuned with tfmot in its own child."""

import json

import pytest

from converters.audit import audit_ops
from edge_lowrank.cli.main import main


@pytest.mark.slow
def test_qat_variant_sits_beside_ptq_with_the_same_ops(tiny, fast_flags, tmp_path, capsys):
    model, data = tiny
    out = tmp_path / "run"
    code = main(["run", str(model), "--data", str(data), "--schemes", "spatial", "--qat", "spatial",
                 "--qat-epochs", "1", "--out", str(out), "--no-c-arrays", *fast_flags])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    rows = {v["id"]: v for v in report["variants"]}
    assert "spatial-int8-qat" in rows and "baseline-int8-qat" not in rows
    qat, ptq = rows["spatial-int8-qat"], rows["spatial-int8"]
    assert qat["precision"] == "int8" and qat["error"] is None
    assert qat["top1"] is not None and qat["fidelity"]["n"] == ptq["fidelity"]["n"]
    # the same graph as post-training int8: same ops, one XNNPACK partition, so it runs as fast
    a_qat = audit_ops((out / qat["files"]["tflite"]).read_bytes())
    a_ptq = audit_ops((out / ptq["files"]["tflite"]).read_bytes())
    assert a_qat.op_counts == a_ptq.op_counts and a_qat.xnnpack_partitions == a_ptq.xnnpack_partitions == 1
    assert qat["host_median_us"] is not None


def test_qat_names_only_schemes_of_the_run(tiny, tmp_path, capsys):
    model, data = tiny
    code = main(["run", str(model), "--data", str(data), "--schemes", "spatial", "--qat", "channel",
                 "--out", str(tmp_path / "r"), "--arm", "none", "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Invalid value for `qat`" in err[0] and "channel" in err[0]


def _int8_rows(report):
    return {v["id"]: v for v in report["variants"] if v["precision"] == "int8" and not v["id"].endswith("-qat")}


def test_qat_needed_is_the_default_and_wants_enough_test_images(full_run):
    """The default run judges int8 agreement on the tiny split's 63 test images: too few to add QAT variants,
    so it names the low ones and adds nothing (the demo's variants are all above 97% on 10,000 images)."""
    out, rc, _, err = full_run
    report = json.loads((out / "report.json").read_text())
    assert rc == 0 and not [v for v in report["variants"] if v["id"].endswith("-qat")]
    for vid, row in _int8_rows(report).items():
        fid = row["fidelity"]
        assert fid["n"] < 500
        named = f"{vid}: int8 top-1 agreement" in err and f"no {vid}-qat (--qat needed wants 500" in err
        assert named == (fid["top1_agreement"] < 0.97), (vid, fid["top1_agreement"])


@pytest.mark.slow
def test_qat_needed_adds_qat_only_below_97_percent(tiny, fast_flags, tmp_path, capsys):
    """With 500+ test images, exactly the int8 variants below 97% agreement get a SCHEME-int8-qat twin."""
    import numpy as np

    from converters.metadata import read_metadata
    from edge_lowrank.data import load_fashion_mnist

    model, _ = tiny
    test = load_fashion_mnist("test")
    data = tmp_path / "d.npz"  # 2,600 images: 520 held out for testing (--test-fraction 0.2)
    np.savez(data, x=(test.x[:2600, ..., 0] * 255).round().astype(np.uint8), y=test.y[:2600])
    out = tmp_path / "run"
    code = main(["run", str(model), "--data", str(data), "--schemes", "spatial", "--qat-epochs", "1",
                 "--out", str(out), "--no-c-arrays", *fast_flags])
    err = capsys.readouterr().err
    assert code == 0, err[-2000:]
    report = json.loads((out / "report.json").read_text())
    rows = {v["id"]: v for v in report["variants"]}
    low = {vid for vid, row in _int8_rows(report).items() if row["fidelity"]["top1_agreement"] < 0.97}
    assert low, "the tiny model's spatial int8 file was below 97% agreement when this test was written"
    assert {vid for vid in rows if vid.endswith("-qat")} == {f"{vid}-qat" for vid in low}
    for vid in low:
        assert f"{vid}: int8 top-1 agreement" in err and f"adding {vid}-qat (--qat needed)" in err
        qat = rows[f"{vid}-qat"]
        assert qat["error"] is None and qat["fidelity"]["n"] >= 500 and qat["host_median_us"] is not None
        assert read_metadata((out / qat["files"]["tflite"]).read_bytes())["qat"]["epochs"] == 1


def test_help_states_the_qat_default(capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--help"])
    assert e.value.code == 0 and "`needed` (a SCHEME-int8-qat variant" in " ".join(capsys.readouterr().out.split())
