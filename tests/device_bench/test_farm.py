"""The device farm: .tflite files spread over a fleet of real targets (the host and a board reached over a real
sshd on 127.0.0.1), one job per target at a time, one table back in file order; locally and as Ray actors."""

import json
import sys

import pytest
from conftest import fast_params
from test_ssh import sshd  # noqa: F401 - the module's real sshd fixture

from device_bench import BenchError
from device_bench.cli import main
from device_bench.farm import bench_farm, parse_fleet


def test_fleet_spec_is_checked():
    assert parse_fleet("ssh://pi@a, qemu:cortex-a76,host") == ["ssh://pi@a", "qemu:cortex-a76", "host"]
    for bad, why in (("", "empty"), ("host,host", "listed twice"), ("tflm", "Invalid farm target")):
        with pytest.raises(BenchError, match=why):
            parse_fleet(bad)


@pytest.mark.ssh
def test_local_farm_spreads_files_over_host_and_board(sshd, models):  # noqa: F811
    paths = [models["f32"], models["int8"], models["f32"]]
    results = bench_farm(paths, fast_params(), ["host", sshd["target"]], remote_python=sys.executable,
                         ssh_identity=sshd["key"])
    assert [r.model for r in results] == [str(p) for p in paths]
    assert all(r.error is None and r.inference_us.median > 0 for r in results), [r.error for r in results]
    used = [r.extra["farm"]["target"] for r in results]
    assert set(used) == {"host", sshd["target"]}, "each target took a file"
    for r, t in zip(results, used):  # the row's own target field agrees with the farm's bookkeeping
        assert r.target == ("host" if t == "host" else f"ssh:{t.split('//', 1)[1]}")


@pytest.mark.ssh
@pytest.mark.slow
def test_ray_farm_from_the_cli(sshd, models, capsys):  # noqa: F811
    pytest.importorskip("ray", reason="the `ray` extra is not installed (make test installs it)")
    argv = [str(models["f32"]), str(models["int8"]), "--farm", f"host,{sshd['target']}", "--executor", "ray",
            "--remote-python", sys.executable, "--identity", sshd["key"], "--num-runs", "5", "--min-secs", "0",
            "--warmup-runs", "1", "--warmup-min-secs", "0", "--json", "-"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = doc["results"]
    assert [r["model"] for r in rows] == [str(models["f32"]), str(models["int8"])]
    assert {r["extra"]["farm"]["target"] for r in rows} == {"host", sshd["target"]}
    assert all(r["extra"]["farm"]["ray_node_id"] for r in rows) and all(r["error"] is None for r in rows)
