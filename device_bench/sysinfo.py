"""What a figure was measured on (the environment tag) and how much memory the process holds.

Latency means little without the CPU, runtime, thread count, delegate and whether the CPU was emulated, so
every BenchResult carries this tag. Memory follows TFLite's tool: resident set size, approximate.
"""

from __future__ import annotations

import os
import platform
import resource
import sys


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (x86 `model name`, ARM `Model`/`Hardware`/`CPU part`), else platform."""
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    for key in ("model name", "Model", "Hardware", "cpu model"):
        if fields.get(key):
            return fields[key]
    if fields.get("CPU part"):
        return f"ARM CPU part {fields['CPU part']}"
    return platform.processor() or platform.machine() or "unknown"


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def rss_mb() -> float | None:
    """Current resident set size (VmRSS) in MiB, or None where /proc is missing."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far in MiB.

    VmHWM first: `ru_maxrss` survives fork + exec on Linux, so a worker would report its parent's peak.
    """
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def env_tag(*, runtime: str, num_threads, xnnpack: bool | None, emulated: bool = False) -> dict:
    """The environment tag stored in every BenchResult."""
    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "runtime": runtime,
        "threads": num_threads,
        "xnnpack": xnnpack,
        "emulated": emulated,
        "hostname": platform.node(),
    }
