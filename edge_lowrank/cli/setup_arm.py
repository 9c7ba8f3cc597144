"""`edge-lowrank setup-arm`: install QEMU user mode, build the aarch64 sysroot and the counting plugin.

Idempotent: a second run checks stamps and takes seconds. The cache folder is `$EDGE_LOWRANK_CACHE/arm`
(default ~/.cache/edge-lowrank/arm). The `make test` target runs it before the QEMU tests.
"""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("--force", action="store_true", help="rebuild the sysroot, header and plugin even if cached")
    parser.add_argument("--quiet", action="store_true", help="print only the final line")


def run(args) -> int:
    from device_bench.qemu.setup import arm_cache, setup_arm

    m = setup_arm(force=args.force, verbose=not args.quiet)
    profiles = ", ".join(f"{n} (-cpu {p['qemu_cpu']})" for n, p in m["profiles"].items())
    print(f"QEMU {m['qemu_version']} ready in {m['setup_s']:.1f} s; profiles: {profiles}; cache: {arm_cache()}")
    return 0
