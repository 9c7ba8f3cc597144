"""The QEMU target's errors, each one line for the CLI (subclasses of device_bench's `BenchError`)."""

from ..errors import BenchError

SETUP_HINT = "run `edge-lowrank setup-arm` (as root on Debian) to install QEMU and build the aarch64 sysroot"


class QemuSetupError(BenchError):
    """Installing or building the QEMU target failed, or it was never set up."""


class QemuRunError(BenchError):
    """The emulated run failed: QEMU or the guest died, XNNPACK did not delegate, counts are missing."""
