"""Host side of the QEMU target: prepares one job, runs the aarch64 guest under `qemu-aarch64` with the
counting plugin, and turns its markers and report into a `BenchResult`.

Why the counts are exact: the guest brackets every invoke with two marker syscalls; the plugin records the
executed-instruction totals at each; the host subtracts the cost of an empty bracket measured in the same
process. Two runs of one model and profile give identical counts (Python's hash seed, BLAS threads and the
guest's garbage collector are pinned). The same inputs also run on the host, so ARM and x86 outputs are
compared in the result (`extra["host_agreement"]`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..inputs import quantize_input, random_inputs
from ..results import BenchParams, BenchResult
from ..stats import summarize
from .cpuinfo import PROFILES
from .errors import SETUP_HINT, QemuRunError, QemuSetupError

MARKER_SYSCALL = 0x7E1A  # no Linux arm64 syscall has this number: QEMU answers -ENOSYS, the plugin records it
CLASSES = ("total", "simd_fp", "simd_ldst", "dot", "i8mm", "sve")
GUEST_SCRIPT = Path(__file__).with_name("guest.py")
FP_TOLERANCE = 1e-4  # fp32: |arm - host| <= 1e-4 * max(1, max|host|) (FMA and summation order differ by ISA)


class _OpsView:
    """Gives `_interpreter.delegation` the guest's op list in the shape LiteRT's interpreter returns it."""

    def __init__(self, ops):
        self._ops = ops

    def _get_ops_details(self):
        return self._ops


def _inputs_for(details, data) -> list[np.ndarray]:
    """The inputs of the counted inference: seeded random, or the first sample of `data`, quantized as needed."""
    if data is None:
        return random_inputs(details)
    if hasattr(data, "x"):  # a device_bench Dataset
        data = data.x
    arrays = list(data) if isinstance(data, (list, tuple)) else [data]
    if len(arrays) != len(details):
        raise QemuRunError(f"The model has {len(details)} inputs; received data for {len(arrays)}.")
    out = []
    for a, d in zip(arrays, details):
        a = np.asarray(a)
        size = int(np.prod(d["shape"]))
        if a.size != size and a.shape[0] > 1:
            a = a[:1]  # a batch of samples: the first one
        if a.dtype == np.dtype(d["dtype"]):
            out.append(a.reshape(tuple(int(s) for s in d["shape"])))
        else:
            out.append(quantize_input(a, d))
    return out


def _host_reference(model_path: str, inputs, num_threads) -> list[np.ndarray]:
    from .._interpreter import make_interpreter

    interp = make_interpreter(model_path, num_threads=num_threads, xnnpack=True)
    interp.allocate_tensors()
    for x, d in zip(inputs, interp.get_input_details()):
        interp.set_tensor(d["index"], x)
    interp.invoke()
    return [interp.get_tensor(d["index"]).copy() for d in interp.get_output_details()]


def _agreement(arm, host) -> dict:
    exact = all(a.shape == h.shape and a.dtype == h.dtype and np.array_equal(a, h) for a, h in zip(arm, host))
    diff = max((float(np.max(np.abs(a.astype(np.float64) - h.astype(np.float64)))) if a.size else 0.0)
               for a, h in zip(arm, host))
    floating = any(np.issubdtype(h.dtype, np.floating) for h in host)
    scale = max([1.0] + [float(np.max(np.abs(h))) for h in host if h.size])
    tol = FP_TOLERANCE * scale if floating else 0.0
    return {"bit_exact": exact, "max_abs_diff": diff, "tolerance": tol, "within_tolerance": diff <= tol}


def parse_counts(text: str, regions: list[str]) -> list[tuple[str, dict]]:
    """Pair the plugin's marker lines with the guest's region names: [(region, {class: instructions})]."""
    marks = []
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "mark":
            marks.append([int(v) for v in parts[2:2 + len(CLASSES)]])
    if len(marks) != 2 * len(regions):
        raise QemuRunError(f"The counting plugin recorded {len(marks)} markers for {len(regions)} regions "
                           f"(expected {2 * len(regions)}).")
    out = []
    for i, name in enumerate(regions):
        start, stop = marks[2 * i], marks[2 * i + 1]
        out.append((name, {c: b - a for c, a, b in zip(CLASSES, start, stop)}))
    return out


def run_qemu(model_path, profile: str, params: BenchParams | None = None, data=None) -> BenchResult:
    """Benchmark one .tflite under QEMU on one CPU profile (see `PROFILES`); every invoke is counted.

    Args:
        model_path: the .tflite file.
        profile: a `PROFILES` name such as "cortex-a76".
        params: BenchParams; `warmup_runs` and `num_runs` set the counted invokes after the first one, and
            `max_secs` / `timeout_s` bound the emulated run. `min_secs` and `warmup_min_secs` are not applied:
            counts are deterministic, and emulated seconds mean nothing.
        data: None (seeded random inputs), arrays, or a Dataset (its first sample).

    Returns:
        A BenchResult with `target="qemu-aarch64:<profile>"`, `emulated=True`, `instructions_first`,
        `instructions_per_inference` (median of the steady invokes), emulated times, delegation, and in
        `extra`: the instruction mix, the outputs, their agreement with the host, the QEMU CPU.

    Raises:
        QemuSetupError: setup-arm has not run. QemuRunError: the run failed, or XNNPACK did not delegate.
    """
    from .._interpreter import delegation, make_interpreter
    from ..sysinfo import env_tag
    from .setup import load_manifest

    params = params or BenchParams()
    if profile not in PROFILES:
        raise QemuRunError(f"Invalid value for argument `profile`. Expected one of {sorted(PROFILES)}. "
                           f"Received: profile={profile!r}.")
    manifest = load_manifest()
    if manifest is None:
        raise QemuSetupError(f"QEMU is not set up: {SETUP_HINT}.")
    prof = manifest["profiles"].get(profile)
    if prof is None:
        raise QemuSetupError(f"The installed QEMU {manifest['qemu_version']} has no CPU for profile {profile}.")
    model_path = str(Path(model_path).resolve())
    if not os.path.isfile(model_path):
        raise QemuRunError(f"No such model file: {model_path}")
    if not params.xnnpack:
        raise QemuRunError("The QEMU target measures XNNPACK's kernels; `xnnpack=False` is not supported there.")

    num_threads = params.num_threads or 1
    if num_threads != 1:  # the plugin's counters are shared by all guest threads: counts need one thread
        raise QemuRunError(f"Invalid value for argument `num_threads`. The QEMU target counts the instructions "
                           f"of one thread. Received: num_threads={num_threads}.")
    probe = make_interpreter(model_path, num_threads=1, xnnpack=False)
    inputs = _inputs_for(probe.get_input_details(), data)

    with tempfile.TemporaryDirectory(prefix="edge-lowrank-qemu.") as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "inputs.npz", *inputs)
        job = {"model": model_path, "inputs": str(tmp / "inputs.npz"), "outputs": str(tmp / "outputs.npz"),
               "report": str(tmp / "report.json"), "marker": MARKER_SYSCALL, "num_threads": num_threads,
               "warmup_runs": max(0, params.warmup_runs), "num_runs": max(1, params.num_runs),
               "max_secs": params.max_secs, "require_delegate": True}
        (tmp / "job.json").write_text(json.dumps(job))
        root = prof["dir"]
        cmd = [manifest["qemu"], "-cpu", prof["qemu_cpu"], "-L", root,
               "-plugin", f"{manifest['plugin']},out={tmp / 'counts.txt'},marker={MARKER_SYSCALL}",
               os.path.join(root, manifest["python"]), str(GUEST_SCRIPT), str(tmp / "job.json")]
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": manifest["site"], "PYTHONHASHSEED": "0",
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONNOUSERSITE": "1", "LC_ALL": "C.UTF-8",
               "HOME": str(tmp), "TF_CPP_MIN_LOG_LEVEL": "2"}
        try:
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=params.timeout_s)
        except subprocess.TimeoutExpired:
            raise QemuRunError(f"The emulated run of {Path(model_path).name} on {profile} took longer than "
                               f"{params.timeout_s:.0f} s (timeout_s).") from None
        report_path = tmp / "report.json"
        if not report_path.exists():
            tail = " ".join((p.stderr or "").strip().splitlines()[-2:])[-300:]
            raise QemuRunError(f"QEMU exited with {p.returncode} before the guest reported on {profile}: {tail}")
        report = json.loads(report_path.read_text())
        if report.get("error"):
            raise QemuRunError(f"{Path(model_path).name} on {profile}: {report['error']}")
        if report.get("cpuinfo_part") is None:
            raise QemuRunError(f"The guest saw no ARM /proc/cpuinfo on {profile} (XNNPACK would pick wrong kernels "
                               f"or none): {SETUP_HINT} again.")
        regions = parse_counts((tmp / "counts.txt").read_text(), report["regions"])
        outputs = list(np.load(tmp / "outputs.npz").values())

    empty = [c for name, c in regions if name == "empty"]
    if len({tuple(c.values()) for c in empty}) != 1:
        raise QemuRunError(f"The markers' own cost varied between brackets ({empty}): counts are not exact.")
    base = empty[0]
    counted = [(name, {k: v - base[k] for k, v in c.items()}) for name, c in regions if name != "empty"]
    first = next(c for name, c in counted if name == "first")
    steady = [c for name, c in counted if name == "run"] or [c for name, c in counted if name == "warmup"] or [first]
    steady_totals = [c["total"] for c in steady]
    per_inf = int(statistics.median_low(steady_totals))
    mix = next(c for c in steady if c["total"] == per_inf)

    partitions, outside, outside_names = delegation(_OpsView(report["ops"]))
    if partitions == 0:
        raise QemuRunError(f"XNNPACK did not delegate any node of {Path(model_path).name} on {profile} "
                           f"(silent fallback to the builtin kernels).")
    host = _host_reference(model_path, inputs, num_threads)
    times = report["times_us"]
    env_info = env_tag(runtime=f"ai-edge-litert {report['versions']['litert']} (aarch64)", num_threads=num_threads,
                       xnnpack=True, emulated=True)
    env_info.update({"machine": "aarch64 (emulated)", "cores": 1, "qemu": manifest["qemu_version"],
                     "qemu_cpu": prof["qemu_cpu"], "cpuinfo_part": report["cpuinfo_part"], "profile": profile,
                     "guest_python": report["versions"]["python"], "guest_numpy": report["versions"]["numpy"],
                     "host_cpu": env_info.get("cpu")})
    env_info["cpu"] = f"{profile} (QEMU -cpu {prof['qemu_cpu']}, MIDR part {prof['part']})"
    return BenchResult(
        model=str(model_path), target=f"qemu-aarch64:{profile}", model_size_mb=os.path.getsize(model_path) / 1e6,
        emulated=True, init_us=report["init_us"], first_inference_us=times["first"][0],
        warmup_mean_us=float(np.mean(times["warmup"])) if times["warmup"] else None,
        inference_us=summarize(times["run"]) if times["run"] else None,
        delegate_partitions=partitions, nodes_outside_delegate=outside,
        instructions_first=int(first["total"]), instructions_per_inference=per_inf,
        env=env_info, params=dataclasses.asdict(params),
        extra={"times_emulated": True,
               "instruction_mix": mix,
               "instruction_mix_first": first,
               "instructions_steady": steady_totals,
               "marker_overhead_instructions": base["total"],
               "ops_outside_delegate": outside_names,
               "outputs": [o.tolist() for o in outputs],
               "output_dtypes": [str(o.dtype) for o in outputs],
               "host_agreement": _agreement(outputs, host)})
