"""The console script, its lazy command table, exit codes, and the two commands README.md promises."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge_lowrank.cli.main import COMMANDS, main

EXE = Path(sys.executable).with_name("edge-lowrank")


def run_cli(*args, **kw):
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, **kw)


def test_help_lists_every_command():
    proc = run_cli("--help")
    assert proc.returncode == 0, proc.stderr
    for name in COMMANDS:
        assert name in proc.stdout


def test_every_command_module_exists_and_has_help():
    for name in COMMANDS:
        proc = run_cli(name, "--help")
        assert proc.returncode == 0, f"{name}: {proc.stderr[-500:]}"
        assert f"edge-lowrank {name}" in proc.stdout


def test_unknown_command_is_a_usage_error():
    proc = run_cli("frobnicate")
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


def test_bad_model_file_gives_one_line_and_exit_1(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"this is not a zip")
    proc = run_cli("info", str(bad))
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "not a Keras model file" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert main(["info", str(tmp_path / "missing.keras")]) == 1


def test_readme_commands_exist_in_the_makefile(repo_root):
    readme = (repo_root / "README.md").read_text()
    targets = set(re.findall(r"^make (\w[\w-]*)", readme, flags=re.M))
    assert {"demo", "test"} <= targets
    for target in targets:
        proc = subprocess.run(["make", "-n", target], cwd=repo_root, capture_output=True, text=True)
        assert proc.returncode == 0, f"make {target}: {proc.stderr}"


def test_ci_runs_the_readme_test_command(repo_root):
    assert "make test" in (repo_root / ".ci" / "run").read_text()


def test_setup_is_idempotent_and_quick(repo_root):
    proc = subprocess.run(["bash", "scripts/setup.sh"], cwd=repo_root, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "installing" not in proc.stdout  # already set up: nothing to do


@pytest.mark.parametrize("module", ["device_bench", "device_bench.datasets", "device_bench.results",
                                    "edge_lowrank", "edge_lowrank.cli.main"])
def test_light_modules_do_not_import_tensorflow(module):
    code = f"import sys, {module}; bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
