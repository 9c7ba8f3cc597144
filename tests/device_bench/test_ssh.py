"""The board target against a real OpenSSH server that this test starts on 127.0.0.1 (and always stops).

The "board" is this machine: the runner is copied over scp to a temporary folder and run with the venv's
Python (which, like a board, has numpy and ai-edge-litert), exactly as on a Raspberry Pi.
"""

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from conftest import fast_params

from device_bench import BenchError, bench_models
from device_bench.datasets import load_dataset

pytestmark = pytest.mark.ssh
SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if not os.path.exists(SSHD) or not shutil.which("ssh") or not shutil.which("scp") or not shutil.which("ssh-keygen"):
        pytest.skip("OpenSSH server/client not installed (Debian: openssh-server openssh-client)")
    d = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    os.chmod(d / "user_key", 0o600)
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "StrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # privilege separation folder sshd insists on
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stdout=subprocess.DEVNULL,
                            stderr=open(d / "sshd.log", "wb"))
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.skip(f"sshd did not start: {(d / 'sshd.log').read_text()[-300:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("sshd did not listen within 15 s")
                time.sleep(0.1)
        yield {"target": f"ssh://{getpass.getuser()}@127.0.0.1:{port}", "key": str(d / "user_key"), "port": port}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_ssh_target_runs_on_the_board(sshd, models):
    data = load_dataset("fashion-mnist:test").take(100)
    results = bench_models([models["int8"], models["f32"]], fast_params(num_runs=6, rounds=3), target=sshd["target"],
                           data=data, remote_python=sys.executable, ssh_identity=sshd["key"])
    (host,) = bench_models([models["int8"]], fast_params(), data=data)
    for r, path in zip(results, [models["int8"], models["f32"]]):
        assert r.error is None, r.error
        assert r.model == str(path)
        assert r.target == f"ssh:{getpass.getuser()}@127.0.0.1:{sshd['port']}"
        assert r.inference_us.count == 6 and len(r.round_medians_us) == 3
        assert r.extra["remote_model"].startswith("m")  # ran on the copy in the board's temporary folder
    assert results[0].accuracy == host.accuracy and results[0].confusion == host.confusion


def test_ssh_target_reports_corrupt_models_as_rows(sshd, corrupt_files):
    (r,) = bench_models([corrupt_files["random_with_magic"]], fast_params(), target=sshd["target"],
                        remote_python=sys.executable, ssh_identity=sshd["key"])
    assert "not a valid Flatbuffer" in r.error


def test_ssh_failures_are_one_clear_line(sshd, models):
    with pytest.raises(BenchError, match="not found on the board"):
        bench_models([models["int8"]], fast_params(), target=sshd["target"], remote_python="no-such-python3",
                     ssh_identity=sshd["key"])
    closed = _free_port()
    with pytest.raises(BenchError, match="ssh failed: .*(refused|closed)"):
        bench_models([models["int8"]], fast_params(), target=f"ssh://root@127.0.0.1:{closed}",
                     ssh_identity=sshd["key"])
