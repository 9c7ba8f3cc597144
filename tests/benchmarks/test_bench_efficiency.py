"""Smoke test of benchmarks/bench_efficiency.py on a tiny CNN: the real children, conversion and timing."""

import json
import math

import pytest



def test_bad_arguments_give_one_line_and_exit_2(load_bench, capsys):
    mod = load_bench("bench_efficiency")
    for argv in (["--archs", "alexnet"], ["--ratio", "1.5"], ["--input-size", "16"], ["--schemes", "svd"],
                 ["--arm-profile", "a99"], ["--bogus"]):
        assert mod.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("bench_efficiency.py: error:"), err


@pytest.mark.slow
def test_tiny_run_writes_consistent_json(load_bench, tmp_path, capsys):
    mod = load_bench("bench_efficiency")
    out = tmp_path / "eff"
    rc = mod.main(["--archs", "tinycnn", "--input-size", "32", "--schemes", "spatial,channel", "--no-arm",
                   "--quick", "--profile-max-ops", "2", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "peak ESTIMATE" in printed and "tool throughput" in printed
    res = json.loads((out / "results.json").read_text())
    assert res["peak_estimate"]["int8"]["macs_per_s"] > 0
    assert "estimate" in res["peak_estimate"]["int8"]["assumption"]
    arch = res["archs"]["tinycnn"]
    host = {(h["scheme"], h["precision"]): h for h in arch["host"]}
    assert set(host) == {("baseline", "int8"), ("spatial", "int8"), ("channel", "int8"), ("baseline", "float32")}
    for h in host.values():
        assert h["error"] is None and h["median_us"] > 0 and h["macs_per_s"] > 0
    assert host[("baseline", "int8")]["mac_ratio"] == 1.0
    for s in ("spatial", "channel"):
        h, v = host[(s, "int8")], arch["variants"][s]
        assert 0 < h["mac_ratio"] < 1
        assert h["mac_ratio"] == pytest.approx(v["macs_after"] / v["macs_before"])
        assert math.isclose(h["efficiency"], h["speedup"] / (1 / h["mac_ratio"]), rel_tol=1e-9)
        assert v["compress_s"] > 0 and v["to_tflite_int8_s"] > 0 and v["peak_rss_mb"] > 100
        assert 0 < h["ci_low"] <= h["ci_high"]
        assert v["new_layers"] and v["replaced_layers"]
    # A second run resumes from the cached children and gives the same MAC figures.
    rc = mod.main(["--archs", "tinycnn", "--input-size", "32", "--schemes", "channel", "--no-arm", "--quick",
                   "--profile-max-ops", "0", "--out", str(out), "--json", str(tmp_path / "again.json")])
    assert rc == 0
    again = json.loads((tmp_path / "again.json").read_text())["archs"]["tinycnn"]
    assert again["variants"]["channel"]["cached"] is True
    assert again["variants"]["channel"]["macs_after"] == arch["variants"]["channel"]["macs_after"]
