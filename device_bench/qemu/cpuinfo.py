"""The emulated CPU profiles: QEMU's `-cpu` model plus a matching ARM `/proc/cpuinfo`.

Why both: QEMU user mode 7.2 passes the host's x86 /proc/cpuinfo through, and XNNPACK's cpuinfo library then
crashes or silently runs without XNNPACK. The `-cpu` model sets the ISA features the guest sees (HWCAPs:
dot product, i8mm); the `CPU part` in /proc/cpuinfo sets the microarchitecture XNNPACK tunes its kernel
choice for. Each profile therefore carries both, and they must agree. The guest is shown one core, so the
kernel choice does not depend on the host's core count.
"""

from __future__ import annotations

import dataclasses

# Linux arm64 HWCAP names, in the order the kernel prints them.
_V8_BASE = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
_V82_DOT = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
            "asimddp")
_V9_I8MM = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc "
            "dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg dcpodp "
            "sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svebf16 i8mm bf16 dgh bti")


@dataclasses.dataclass(frozen=True)
class CpuProfile:
    """One emulated core.

    Args:
        name: the profile name used on the command line (`--target qemu:<name>`).
        qemu_cpu: candidates for QEMU's `-cpu`, best first; the first one the installed QEMU knows is used
            (QEMU 7.2 has no Armv9 cores, so the i8mm profile falls back to `max` with SME off).
        part: the MIDR part number XNNPACK reads (0xd03 Cortex-A53, 0xd0b Cortex-A76, 0xd47 Cortex-A710).
        features: the `Features` line (Linux HWCAP names).
        summary: one line for listings and reports.
    """

    name: str
    qemu_cpu: tuple[str, ...]
    part: int
    variant: int
    revision: int
    architecture: int
    features: str
    summary: str

    def cpuinfo(self) -> str:
        """The /proc/cpuinfo text of a one-core Linux arm64 system with this core."""
        return (f"processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: {self.features}\n"
                f"CPU implementer\t: 0x41\nCPU architecture: {self.architecture}\n"
                f"CPU variant\t: 0x{self.variant:x}\nCPU part\t: 0x{self.part:03x}\n"
                f"CPU revision\t: {self.revision}\n\n")


PROFILES: dict[str, CpuProfile] = {p.name: p for p in (
    CpuProfile("cortex-a53", ("cortex-a53",), 0xd03, 0x0, 4, 8, _V8_BASE,
               "Armv8.0 in-order little core (NEON, no dot product)"),
    CpuProfile("cortex-a72", ("cortex-a72",), 0xd08, 0x0, 3, 8, _V8_BASE,
               "Armv8.0 out-of-order big core (NEON, no dot product)"),
    CpuProfile("cortex-a76", ("cortex-a76",), 0xd0b, 0x4, 1, 8, _V82_DOT,
               "Armv8.2 big core with the dot product (SDOT/UDOT)"),
    CpuProfile("cortex-a710", ("cortex-a710", "max,sme=off,pauth-impdef=on"), 0xd47, 0x2, 0, 8, _V9_I8MM,
               "Armv9 big core with dot product and i8mm (SMMLA); QEMU < 8 emulates it with `max`"),
)}
