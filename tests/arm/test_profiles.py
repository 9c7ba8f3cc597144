"""CPU profiles: each `-cpu` model comes with the /proc/cpuinfo XNNPACK needs to pick that core's kernels."""

import re

from device_bench.qemu import PROFILES


def _field(text, name):
    return re.search(rf"^{name}\s*: (.*)$", text, re.M).group(1)


def test_required_profiles_exist():
    assert {"cortex-a53", "cortex-a76", "cortex-a710"} <= set(PROFILES)


def test_cpuinfo_part_and_features_match_the_core():
    parts = {"cortex-a53": "0xd03", "cortex-a72": "0xd08", "cortex-a76": "0xd0b", "cortex-a710": "0xd47"}
    for name, part in parts.items():
        text = PROFILES[name].cpuinfo()
        assert _field(text, "CPU part") == part
        assert _field(text, "CPU implementer") == "0x41"
        assert _field(text, "processor") == "0"  # one core, whatever the host has
    feats = {n: set(_field(PROFILES[n].cpuinfo(), "Features").split()) for n in parts}
    assert "asimddp" not in feats["cortex-a53"] and "asimddp" in feats["cortex-a76"]
    assert "i8mm" in feats["cortex-a710"] and "i8mm" not in feats["cortex-a76"]


def test_i8mm_profile_falls_back_to_qemu_max_without_sme():
    # QEMU 7.2 has no Armv9 core models: `max` with SME off gives dot product and i8mm.
    cpus = PROFILES["cortex-a710"].qemu_cpu
    assert cpus[0] == "cortex-a710" and any(c.startswith("max,") and "sme=off" in c for c in cpus)
