"""Without `setup-arm`, the QEMU target says in one line how to set it up; no QEMU is needed here."""

import os
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


def _cli(tmp_path, *args):
    env = dict(os.environ, EDGE_LOWRANK_CACHE=str(tmp_path / "empty-cache"))
    return subprocess.run([sys.executable, "-m", "edge_lowrank.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_bench_without_setup_gives_one_line(tmp_path):
    p = _cli(tmp_path, "bench", str(FIXTURES / "small_cnn_int8.tflite"), "--target", "qemu:cortex-a76")
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "edge-lowrank setup-arm" in lines[0], p.stderr
    assert "Traceback" not in p.stderr


def test_run_qemu_without_setup_raises_setup_error(tmp_path, monkeypatch):
    import pytest

    from device_bench.qemu import QemuSetupError, available, run_qemu

    monkeypatch.setenv("EDGE_LOWRANK_CACHE", str(tmp_path / "empty-cache"))
    ok, reason = available()
    assert not ok and "edge-lowrank setup-arm" in reason
    with pytest.raises(QemuSetupError, match="setup-arm"):
        run_qemu(FIXTURES / "small_cnn_int8.tflite", "cortex-a76")


def test_qemu_package_imports_without_tensorflow():
    code = ("import sys, device_bench.qemu, device_bench.qemu.runner, device_bench.qemu.setup; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
