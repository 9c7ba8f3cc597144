"""The ARM target: aarch64 LiteRT + XNNPACK under QEMU user mode, with deterministic instruction counts.

Emulated wall time is no device figure (200-800x slower than native, and unstable), but the number of ARM
instructions one inference executes is deterministic and follows the kernels XNNPACK picks for the
emulated core, so CI can see an ARM regression. A TCG plugin of the project counts them between markers the
guest emits. Set up with `edge-lowrank setup-arm` (`setup.setup_arm`); run with `run_qemu`.

Imports no TensorFlow, and no QEMU machinery until a run is asked for.
"""

from __future__ import annotations

from .cpuinfo import PROFILES, CpuProfile
from .errors import SETUP_HINT, QemuRunError, QemuSetupError

__all__ = ["PROFILES", "CpuProfile", "QemuRunError", "QemuSetupError", "available", "run_qemu", "setup_arm"]


def available() -> tuple[bool, str]:
    """(True, "") when `setup-arm` has run and its files are still there; else (False, how to set it up)."""
    from .setup import load_manifest

    m = load_manifest()
    if m is None:
        return False, f"QEMU is not set up: {SETUP_HINT}."
    return True, ""


def setup_arm(force: bool = False, verbose: bool = True) -> dict:
    from .setup import setup_arm as _setup

    return _setup(force=force, verbose=verbose)


def run_qemu(model_path, profile: str, params=None, data=None):
    from .runner import run_qemu as _run

    return _run(model_path, profile, params, data=data)
