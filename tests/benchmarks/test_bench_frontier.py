"""Smoke test of benchmarks/bench_frontier.py: the real pipeline, converter and interleaved timing (sample ResNet)."""

import json

import pytest



def test_bad_arguments_give_one_line_and_exit_2(load_bench, capsys):
    mod = load_bench("bench_frontier")
    for argv in (["--models", "alexnet"], ["--budgets", "0.5"], ["--budgets", "two"], ["--schemes", "svd"],
                 ["--schemes", "spatial,spatial"], ["--finetune-epochs", "-1"], ["--eval-samples", "0"],
                 ["--bogus"], ["--ray-address", "head:6379"], ["--seed", "x"]):
        assert mod.main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("bench_frontier.py: error:"), (argv, err)


@pytest.mark.slow
def test_smallest_real_frontier(load_bench, tmp_path, capsys):
    mod = load_bench("bench_frontier")
    out = tmp_path / "frontier"
    argv = ["--models", "resnet", "--schemes", "spatial,channel", "--budgets", "2", "--finetune-epochs", "1",
            "--finetune-samples", "256", "--eval-samples", "500", "--bench-secs", "0.2", "--no-arm",
            "--out", str(out)]
    assert mod.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| spatial | 2x |" in printed and "| channel | 2x |" in printed

    res = json.loads((out / "frontier.json").read_text())
    m = res["models"]["resnet"]
    base = m["baseline"]
    assert base["eval_n"] == 500 and base["macs"] > 20e6
    assert 0.8 < base["keras_top1"] <= 1.0 and 0.8 < base["int8_top1"] <= 1.0
    assert base["int8_median_us"] > 0 and base["fp32_median_us"] > 0
    rows = {(r["scheme"], r["budget"]): r for r in m["rows"]}
    assert set(rows) == {("spatial", 2.0), ("channel", 2.0)}
    for r in rows.values():
        assert r["status"] == "ok" and r["error"] is None and r["bench_error"] is None
        assert r["host_median_us"] > 0
        assert r["speedup_vs_int8"] == pytest.approx(base["int8_median_us"] / r["host_median_us"], rel=1e-9)
        assert r["speedup_vs_fp32"] == pytest.approx(base["fp32_median_us"] / r["host_median_us"], rel=1e-9)
        assert r["macs"] < base["macs"] and r["params"] < base["params"]
        assert 0.5 < r["top1"] <= 1.0
        assert r["drop_pp"] == pytest.approx((base["keras_top1"] - r["top1"]) * 100)
        assert r["a76_instructions"] is None  # --no-arm
    # A whole-model MAC budget: spatial at 2x keeps about half of the model's MACs (ranks round up to x8).
    assert 0.40 <= rows[("spatial", 2.0)]["mac_ratio"] <= 0.56
    # Only the int8 exports the frontier needs were made; the pipeline folder resumes from its stage cache.
    folder = out / "resnet" / "r2"
    assert sorted(p.name for p in (folder / "tflite").glob("*.tflite")) == [
        "baseline-float32.tflite", "baseline-int8.tflite", "channel-int8.tflite", "spatial-int8.tflite"]
    assert (folder / ".stages").is_dir()
    assert m["bench"]["files"] == 4
    png = out / "frontier_resnet.png"
    assert m["plot"] == str(png) and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
