"""The board target `ssh://user@host[:port]`: run device_bench on a Linux board with the board's own Python.

It copies a tarball of device_bench's own files, the models and the data to a temporary folder on the board,
runs `python -m device_bench --job job.json --json -` there (numpy + ai-edge-litert are all the board needs),
reads the JSON document back from stdout and removes the folder. Uses the system's `ssh`/`scp` clients, so
keys, agents and ~/.ssh/config work as they do for the user.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import tarfile
import tempfile
from pathlib import Path

from .errors import BenchError
from .results import BenchParams, BenchResult

_TARGET = re.compile(r"^ssh://(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9._:-]+?|\[[0-9a-fA-F:]+\])"
                     r"(?::(?P<port>\d+))?/?$")
CONNECT_TIMEOUT_S = 15


@dataclasses.dataclass(frozen=True)
class SshTarget:
    user: str | None
    host: str
    port: int
    identity: str | None = None

    @property
    def dest(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def label(self) -> str:
        return f"ssh:{self.dest}" + (f":{self.port}" if self.port != 22 else "")

    def _opts(self) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}"]
        return opts + (["-i", self.identity] if self.identity else [])

    def ssh(self, command: str, timeout: float, check: bool = True) -> subprocess.CompletedProcess:
        return _run(["ssh", *self._opts(), "-p", str(self.port), self.dest, command], timeout, self, check)

    def scp_to(self, files: list[str], remote_dir: str, timeout: float) -> None:
        _run(["scp", "-q", *self._opts(), "-P", str(self.port), *files, f"{self.dest}:{remote_dir}/"], timeout, self)


def parse_target(target: str, identity: str | None = None) -> SshTarget:
    """`ssh://user@host[:port]` -> SshTarget; one clear line for anything else."""
    m = _TARGET.match(target)
    if not m:
        raise BenchError(f"Invalid target `{target}`. Expected ssh://user@host[:port].")
    port = int(m.group("port") or 22)
    if not 0 < port < 65536:
        raise BenchError(f"Invalid port {port} in target `{target}`. Expected 1-65535.")
    if identity is not None and not os.path.isfile(identity):
        raise BenchError(f"ssh identity file {identity} does not exist.")
    return SshTarget(m.group("user"), m.group("host").strip("[]"), port, identity)


def _run(cmd: list[str], timeout: float, target: SshTarget, check: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except FileNotFoundError:
        raise BenchError(f"`{cmd[0]}` is not installed: the ssh target needs the OpenSSH client.") from None
    except subprocess.TimeoutExpired:
        raise BenchError(f"{target.label}: `{cmd[0]}` timed out after {timeout:g} s.") from None
    if proc.returncode != 0 and (check or proc.returncode == 255):  # 255: ssh itself failed
        err = [ln for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()]
        last = err[-1].strip()[:300] if err else f"exit code {proc.returncode}"
        if cmd[0] == "ssh" and proc.returncode == 127:
            last = f"command not found on the board ({last})"
        raise BenchError(f"{target.label}: {cmd[0]} failed: {last}")
    return proc


def package_tarball(dest: str) -> str:
    """A .tar.gz of device_bench's own source files (no caches), for the board."""
    root = Path(__file__).resolve().parent
    with tarfile.open(dest, "w:gz") as tar:
        for f in sorted(root.rglob("*")):
            if f.is_file() and f.suffix in (".py", ".json") and "__pycache__" not in f.parts:
                tar.add(f, arcname=str(Path("device_bench") / f.relative_to(root)))
    return dest


def run_ssh(paths, params_list: list[BenchParams], target: str, *, data=None, inputs: str | None = None,
            interleave: bool = True, remote_python: str = "python3", identity: str | None = None) -> list[BenchResult]:
    """Benchmark the models on a board over ssh; rows come back labelled `ssh:user@host[:port]`."""
    t = parse_target(target, identity)
    for p in paths:
        if not os.path.isfile(p):
            raise BenchError(f"Model file {p} does not exist.")
    budget = sum(p.timeout_s for p in params_list) + 120
    # The board's own temporary folder ($TMPDIR or its default), removed again at the end.
    remote = t.ssh("mktemp -d -t device_bench.XXXXXX", CONNECT_TIMEOUT_S + 30).stdout.decode().strip()
    if not (remote.startswith("/") and os.path.basename(remote).startswith("device_bench.")):
        raise BenchError(f"{t.label}: could not create a temporary folder on the board (got {remote!r}).")
    try:
        with tempfile.TemporaryDirectory(prefix="device_bench.ssh.") as tmp:
            files = [package_tarball(os.path.join(tmp, "device_bench.tgz"))]
            names = []
            for i, p in enumerate(paths):
                name = f"m{i}_{Path(p).name}"
                names.append(name)
                if name not in {Path(f).name for f in files}:
                    link = os.path.join(tmp, name)
                    os.symlink(os.path.abspath(p), link)
                    files.append(link)
            job = {"paths": names, "params": [dataclasses.asdict(p) for p in params_list],
                   "interleave": interleave, "data": None, "inputs": None}
            if data is not None:
                from .host import write_data_npz

                files.append(write_data_npz(data, tmp))
                job["data"] = "data.npz"
            if inputs is not None:
                link = os.path.join(tmp, "inputs.npz")
                os.symlink(os.path.abspath(inputs), link)
                files.append(link)
                job["inputs"] = "inputs.npz"
            with open(os.path.join(tmp, "job.json"), "w") as f:
                json.dump(job, f)
            files.append(os.path.join(tmp, "job.json"))
            t.scp_to(files, remote, budget)
        q = shlex.quote(remote)
        cmd = (f"cd {q} && tar xzf device_bench.tgz && PYTHONPATH={q} TF_CPP_MIN_LOG_LEVEL=2 "
               f"{shlex.quote(remote_python)} -m device_bench --job job.json --json -")
        proc = t.ssh(cmd, budget, check=False)
    finally:
        try:
            t.ssh(f"rm -rf {shlex.quote(remote)}", CONNECT_TIMEOUT_S + 30)
        except BenchError:
            pass
    from .report import from_json

    text = proc.stdout.decode(errors="replace")
    start = text.find("{")
    if start < 0:
        err = [ln.strip() for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()]
        why = err[-1][:300] if err else f"exit code {proc.returncode}"
        if proc.returncode == 127:
            why = f"`{remote_python}` not found on the board ({why})"
        raise BenchError(f"{t.label}: device_bench failed on the board: {why}")
    results, _ = from_json(text[start:])
    if len(results) != len(paths):
        raise BenchError(f"{t.label}: the board returned {len(results)} results for {len(paths)} models.")
    for r, p in zip(results, paths):
        r.extra["remote_model"] = r.model
        r.model = str(p)
        r.target = t.label
        r.env = {**r.env, "board": t.label}
    return results
