"""`--select-on`: best.tflite is the fastest variant on the deployment target, and the report says which figure."""

import argparse
import contextlib
import io
import json
import shutil

import pytest

from edge_lowrank.cli.main import main
from edge_lowrank.pipeline import config, gates


def variant(vid, top1, host_us, a76=None, size=100_000):
    """A report variant: host median latency and, where counted, cortex-a76 instructions per inference."""
    return {"id": vid, "top1": top1, "accuracy_drop_pp": (0.90 - top1) * 100, "host_median_us": host_us,
            "size_bytes": size, "arena_bytes": None, "error": None,
            "arm": {"cortex-a76": {"instructions": a76, "ratio": None}}}


# the demo's situation on this AVX2 host: float32 is faster here, the int8 twin needs 3x fewer a76 instructions
VARIANTS = [variant("baseline-float32", 0.900, 600), variant("baseline-int8", 0.899, 680, 2_290_000),
            variant("spatial-float32", 0.895, 330), variant("spatial-int8", 0.894, 430, 1_420_000),
            variant("cp-int8", 0.880, 450, 1_300_000)]
ARM = {"available": True, "reason": None, "profiles": ["cortex-a76"]}


def with_speedup(sel, variants, vs="float32"):
    ref = next(v for v in variants if v["id"] == f"baseline-{vs}")
    return [{**v, "speedup_gate": gates.speedup_on(sel, v, ref)} for v in variants]


def test_a76_counts_pick_the_int8_variant_host_latency_the_float32_one():
    a76 = gates.resolve_selection("auto", ARM, VARIANTS)
    assert a76.on == "qemu:cortex-a76" and "cortex-a76 was measured" in a76.reason
    out = gates.evaluate(with_speedup(a76, VARIANTS), {"max_accuracy_drop": 1.0}, selection=a76)
    assert out.best == "spatial-int8"  # cp-int8 needs fewer instructions but misses the accuracy gate
    assert out.not_measured == ("baseline-float32", "spatial-float32")
    assert "chosen on cortex-a76 instructions per inference" in out.message
    assert "--arm-precisions int8,float32" in out.message  # how to make float32 a candidate

    host = gates.resolve_selection("host", ARM, VARIANTS)
    out = gates.evaluate(with_speedup(host, VARIANTS), {"max_accuracy_drop": 1.0}, selection=host)
    assert out.best == "spatial-float32" and out.not_measured == ()
    assert "chosen on host median latency" in out.message
    # without a selection evaluate ranks by host latency, as before --select-on existed
    assert gates.evaluate(with_speedup(host, VARIANTS), {"max_accuracy_drop": 1.0}).best == "spatial-float32"


def test_auto_falls_back_to_host_when_nothing_was_counted():
    sel = gates.resolve_selection("auto", {"available": False, "reason": "--arm none", "profiles": []}, VARIANTS)
    assert sel.on == "host" and "no ARM profile measured (--arm none)" in sel.reason
    failed = [{**v, "arm": {"cortex-a76": {"instructions": None, "ratio": None}}} for v in VARIANTS]
    assert gates.resolve_selection("auto", ARM, failed).on == "host"


def test_speed_gate_compares_on_the_selection_figure():
    a76 = gates.Selection("qemu:cortex-a76", "--select-on qemu:cortex-a76")
    vs8 = with_speedup(a76, VARIANTS, vs="int8")
    assert next(v for v in vs8 if v["id"] == "spatial-int8")["speedup_gate"] == pytest.approx(2.29 / 1.42, 1e-3)
    out = gates.evaluate(vs8, {"min_speedup": 1.7}, selection=a76)
    assert out.best == "cp-int8"  # 1.76x fewer instructions; on the host it is 1.5x faster only
    out = gates.evaluate(vs8, {"min_speedup": 2.0}, selection=a76)
    assert not out.passed
    assert "the closest, cp-int8, misses --min-speedup 2 by" in out.message
    assert "(reaches 1.76 x in cortex-a76 instructions)" in out.message
    host = gates.Selection()
    out = gates.evaluate(with_speedup(host, VARIANTS, vs="int8"), {"min_speedup": 1.7}, selection=host)
    assert out.best == "spatial-float32"  # 680 / 330 = 2.06x on the host


def parse(argv):
    p = argparse.ArgumentParser()
    config.add_arguments(p)
    return config.from_args(p.parse_args(argv))


def test_settings(tmp_path):
    assert parse([]).select_target() == "auto"
    assert parse(["--select-on", "qemu:a76"]).select_target() == "qemu:cortex-a76"
    f = tmp_path / "ci.toml"
    f.write_text('[run]\nselect-on = "qemu:cortex-a53"\n')
    assert parse(["--config", str(f)]).select_profile() == "cortex-a53"
    assert parse(["--config", str(f), "--select-on", "host"]).select_target() == "host"  # the flag wins


@pytest.mark.parametrize("argv, match", [
    (["--select-on", "ssh://pi@raspberrypi.local"], "run measures the host and QEMU profiles only"),
    (["--select-on", "qemu:cortex-x9"], "Expected qemu:<profile> with a profile from cortex-a53"),
    (["--select-on", "phone"], "Expected auto, host or qemu:<profile>"),
    (["--select-on", "qemu:a76", "--arm", "none"], "needs the ARM counts that --arm none turns off"),
])
def test_bad_settings_are_one_line(argv, match):
    with pytest.raises(config.ConfigError, match=match):
        parse(argv)


def test_bad_select_on_from_the_cli_exits_1_with_one_line(tiny, capsys):
    rc = main(["run", str(tiny[0]), "--data", str(tiny[1]), "--select-on", "ssh://pi@board", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "ssh://pi@board" in err


def test_report_names_the_figure_that_chose_best(full_run):
    out, rc, stdout, _ = full_run
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    sel = report["selection"]  # the shared run has --arm none, so the default falls back to the host
    assert sel["on"] == "host" and sel["figure"].startswith("host median latency") and sel["not_measured"] == []
    assert "(--arm none)" in sel["reason"]
    assert report["best"]["select_on"] == "host" and report["best"]["value"] > 0
    assert report["gates"]["select_on"]["on"] == "host"
    for text in (stdout, (out / "report.md").read_text(), (out / "report.html").read_text()):
        assert "best.tflite chosen on host median latency" in text


@pytest.mark.qemu
@pytest.mark.slow
def test_run_selects_on_a76_counts_by_default_when_measured(full_run, fast_flags, tmp_path):
    from device_bench import qemu

    ok, reason = qemu.available()
    if not ok:
        pytest.skip(reason)
    out = tmp_path / "out"
    shutil.copytree(full_run[0], out)  # a copy: finished stages are reused, the shared run stays as it was
    report = json.loads((out / "report.json").read_text())
    flags = [f for f in fast_flags if f not in ("--arm", "none")]
    base = ["run", report["model"]["path"], "--data", report["data"]["test"]["spec"], "--out", str(out),
            "--schemes", "channel,spatial", *flags, "--max-accuracy-drop", "100"]
    so, se = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):
        rc = main([*base, "--arm", "cortex-a76", "--min-speedup", "1.0"])
    assert rc == 0, se.getvalue()
    report = json.loads((out / "report.json").read_text())
    sel = report["selection"]
    assert sel["on"] == "qemu:cortex-a76" and sel["reason"].startswith("default")
    v = {v["id"]: v for v in report["variants"]}
    counts = {k: x["arm"]["cortex-a76"]["instructions"] for k, x in v.items()}
    int8 = {k: c for k, c in counts.items() if k.endswith("-int8")}
    assert report["best"]["id"] == min(int8, key=int8.get)  # fewest a76 instructions wins (no accuracy limit)
    assert report["best"]["value"] == int8[report["best"]["id"]]
    # --min-speedup against float32 on a76 counts: baseline-float32 was counted for it, float32 variants not
    assert counts["baseline-float32"] > counts["baseline-int8"] and counts["spatial-float32"] is None
    assert set(sel["not_measured"]) == {"channel-float32", "spatial-float32"}
    best = v[report["best"]["id"]]
    assert best["speedup_gate"] == pytest.approx(counts["baseline-float32"] / counts[best["id"]], rel=1e-3)
    assert "chosen on cortex-a76 instructions per inference (QEMU)" in so.getvalue()
    assert "chosen on cortex-a76 instructions" in (out / "report.md").read_text()

    so, se = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):  # host selection: as before
        rc = main([*base, "--arm", "cortex-a76", "--select-on", "host"])
    assert rc == 0, se.getvalue()
    report = json.loads((out / "report.json").read_text())
    hosts = {x["id"]: x["host_median_us"] for x in report["variants"]}
    assert report["selection"]["on"] == "host" and report["best"]["id"] == min(hosts, key=hosts.get)
    assert "stage arm:cortex-a76:spatial-int8: cached (skipped)" in se.getvalue()
