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


def _cpuinfo_fields(text: str) -> dict:
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    return fields


def _clock_hz(fields: dict, default_hz: float, read_sysfs: bool) -> tuple[float, str]:
    mhz = fields.get("cpu mhz")
    try:
        if mhz and float(mhz) > 0:
            return float(mhz) * 1e6, f"{float(mhz) / 1000:.2f} GHz (cpu MHz)"
    except ValueError:
        pass
    if read_sysfs:
        try:
            with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", encoding="utf-8") as f:
                return int(f.read().strip()) * 1e3, "max clock from cpufreq"
        except (OSError, ValueError):
            pass
    return default_hz, f"clock unknown, assumed {default_hz / 1e9:.1f} GHz"


def peak_macs_per_s(precision: str = "int8", cpuinfo: str | None = None) -> tuple[float, str]:
    """An ESTIMATE of one core's peak multiply-accumulates per second, and the assumption behind it.

    From the /proc/cpuinfo flags (x86 `flags`, ARM `Features`) and clock: MACs per instruction of the widest
    int8 or fp32 multiply-accumulate the core has, times an assumed 2 issue ports, times the clock. It ignores
    turbo, memory bandwidth and the kernels' real instruction mix: a ceiling to compare against, not a spec.

    Args:
        precision: "int8" or "float32" ("fp32").
        cpuinfo: the text of /proc/cpuinfo (read from the system when None).
    Returns:
        (macs_per_s, one line saying what was assumed).
    """
    p = {"fp32": "float32", "float": "float32"}.get(str(precision).lower(), str(precision).lower())
    if p not in ("int8", "float32"):
        raise ValueError(f"Invalid value for argument `precision`. Expected 'int8' or 'float32'. "
                         f"Received: precision={precision!r}.")
    this_machine = cpuinfo is None
    if this_machine:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    fields = _cpuinfo_fields(cpuinfo)
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    arm = "flags" not in fields and ("features" in fields or (this_machine and platform.machine() in
                                                              ("aarch64", "arm64")))
    hz, clock = _clock_hz(fields, 2.0e9, this_machine)
    ports = 2
    if arm:
        if p == "int8":
            if "i8mm" in flags:
                per, what = 32, "i8mm SMMLA: 32 int8 MACs per 128-bit instruction"
            elif "asimddp" in flags:
                per, what = 16, "dot product SDOT: 16 int8 MACs per 128-bit instruction"
            else:
                per, what = 8, "NEON SMLAL: 8 int8 MACs (16-bit widening) per instruction"
        else:
            per, what = 4, "NEON FMLA: 4 fp32 lanes"
    else:
        if p == "int8":
            if "amx_int8" in flags:
                per, ports, what = 1024, 1, "AMX TMUL: ~1024 int8 MACs per cycle"
            elif "avx512_vnni" in flags:
                per, what = 64, "AVX-512 VNNI VPDPBUSD: 64 int8 MACs per instruction"
            elif "avx_vnni" in flags:
                per, what = 32, "AVX-VNNI VPDPBUSD: 32 int8 MACs per 256-bit instruction"
            elif "avx512bw" in flags:
                per, what = 32, "AVX-512BW VPMADDWD: 32 int16 MACs per instruction (no VNNI)"
            elif "avx2" in flags:
                per, what = 16, "AVX2 VPMADDWD: 16 int8 MACs (widened to int16) per 256-bit instruction (no VNNI)"
            else:
                per, what = 8, "SSE PMADDWD: 8 int16 MACs per instruction"
        else:
            if "avx512f" in flags:
                per, what = 16, "AVX-512 FMA: 16 fp32 lanes"
            elif "fma" in flags and "avx2" in flags:
                per, what = 8, "AVX2 FMA: 8 fp32 lanes"
            else:
                per, ports, what = 4, 1, "SSE: 4 fp32 lanes, separate multiply and add"
    peak = per * ports * hz
    return float(peak), (f"estimate: {what} x {ports} port{'s' if ports > 1 else ''} x {clock} "
                         f"= {per * ports} MACs/cycle; ignores turbo, memory and kernel overheads")
