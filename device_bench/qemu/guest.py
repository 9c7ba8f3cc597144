"""Runs INSIDE the emulated aarch64 Python: one model, with markers around every invoke.

Why a separate script: the guest has only numpy and ai_edge_litert (no edge_lowrank, no device_bench), so
this file imports nothing else. It reads a JSON job written by `runner.py`, loads the model with LiteRT's
default resolver (XNNPACK), checks that XNNPACK took part of the graph, then runs: two empty marker pairs
(the markers' own cost, subtracted by the host), the first invoke, the warm-up and the timed invokes, each
between a start and a stop marker that the `insn_count` plugin turns into instruction counts. Garbage
collection is off while counting, so each count is the same from run to run. It writes a JSON report and the
first inference's outputs (.npz) to the host paths the job names.

Usage: python3.11 guest.py JOB.json
"""

import ctypes
import gc
import json
import sys
import time


def main(job_path):
    with open(job_path) as f:
        job = json.load(f)
    report = {"regions": [], "times_us": {}, "error": None}
    try:
        _run(job, report)
    except Exception as e:  # reported to the host as one line; the host raises its own error
        report["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    with open(job["report"], "w") as f:
        json.dump(report, f)
    return 0 if report["error"] is None else 3


def _run(job, report):
    import numpy as np
    from ai_edge_litert import __version__ as litert_version
    from ai_edge_litert.interpreter import Interpreter

    libc = ctypes.CDLL(None, use_errno=True)
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    marker = int(job["marker"])
    regions = report["regions"]

    def counted(name, fn):
        # The same Python path for every region, so the empty region measures the markers' own cost.
        regions.append(name)
        syscall(marker, 1)
        fn()
        syscall(marker, 2)

    def nothing():
        return None

    report["versions"] = {"litert": litert_version, "numpy": np.__version__,
                          "python": sys.version.split()[0]}
    # What XNNPACK's cpuinfo will read: an x86 text here means the profile's cpuinfo was not shadowing the host's.
    with open("/proc/cpuinfo") as f:
        parts = [line.split(":", 1)[1].strip() for line in f if line.startswith("CPU part")]
    report["cpuinfo_part"] = parts[0] if parts else None
    gc.disable()
    counted("empty", nothing)
    counted("empty", nothing)

    t0 = time.perf_counter()
    interp = Interpreter(model_path=job["model"], num_threads=job["num_threads"])
    interp.allocate_tensors()
    report["init_us"] = (time.perf_counter() - t0) * 1e6
    ops = interp._get_ops_details()
    report["ops"] = [{"index": int(op["index"]), "op_name": op["op_name"],
                      "inputs": [int(t) for t in op["inputs"]], "outputs": [int(t) for t in op["outputs"]]}
                     for op in ops]
    if job["require_delegate"] and not any(op["op_name"] == "DELEGATE" for op in ops):
        raise RuntimeError("XNNPACK did not delegate any node (silent fallback to the builtin kernels)")

    inputs = np.load(job["inputs"])
    for i, detail in enumerate(interp.get_input_details()):
        interp.set_tensor(detail["index"], inputs[f"arr_{i}"])

    def timed(name, times):
        t = time.perf_counter()
        counted(name, interp.invoke)
        times.append((time.perf_counter() - t) * 1e6)

    first = []
    timed("first", first)
    report["times_us"]["first"] = first
    outputs = [interp.get_tensor(d["index"]) for d in interp.get_output_details()]
    np.savez(job["outputs"], *outputs)

    deadline = time.perf_counter() + job["max_secs"]
    warm, runs = [], []
    for _ in range(job["warmup_runs"]):
        timed("warmup", warm)
    for _ in range(job["num_runs"]):
        timed("run", runs)
        if time.perf_counter() > deadline:
            break
    report["times_us"]["warmup"] = warm
    report["times_us"]["run"] = runs
    gc.enable()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
