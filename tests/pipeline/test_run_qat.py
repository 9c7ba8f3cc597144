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
