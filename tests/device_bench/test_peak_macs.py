"""`device_bench.sysinfo.peak_macs_per_s`: a per-core peak estimate from /proc/cpuinfo, without TensorFlow."""

import subprocess
import sys

import pytest

from device_bench.sysinfo import peak_macs_per_s

ZEN3 = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\ncpu MHz\t\t: 2445.402\nflags\t\t: fpu sse sse2 ssse3 sse4_1 avx fma avx2\n"
ICX = "processor\t: 0\ncpu MHz\t\t: 2000.000\nflags\t\t: avx avx2 fma avx512f avx512bw avx512_vnni\n"
SPR = "processor\t: 0\ncpu MHz\t\t: 2000.000\nflags\t\t: avx2 fma avx512f avx512_vnni amx_tile amx_int8\n"
A76 = "processor\t: 0\nFeatures\t: fp asimd evtstrm asimddp\nCPU part\t: 0xd0b\n"
A53 = "processor\t: 0\nFeatures\t: fp asimd evtstrm\nCPU part\t: 0xd03\n"


def test_avx2_without_vnni():
    i8, why = peak_macs_per_s("int8", ZEN3)
    assert i8 == pytest.approx(32 * 2445.402e6)
    assert "estimate" in why and "VPMADDWD" in why and "2.45 GHz" in why
    f32, why = peak_macs_per_s("fp32", ZEN3)
    assert f32 == pytest.approx(16 * 2445.402e6) and "FMA" in why


def test_wider_units_give_higher_estimates():
    assert peak_macs_per_s("int8", ICX)[0] == pytest.approx(128 * 2e9)
    assert peak_macs_per_s("float32", ICX)[0] == pytest.approx(32 * 2e9)
    assert peak_macs_per_s("int8", SPR)[0] > peak_macs_per_s("int8", ICX)[0]


def test_arm_dot_product_and_unknown_clock():
    a76, why = peak_macs_per_s("int8", A76)
    a53, _ = peak_macs_per_s("int8", A53)
    assert a76 == 2 * a53 > 0
    assert "SDOT" in why
    assert peak_macs_per_s("float32", A76)[0] > 0


def test_this_machine_and_bad_precision():
    v, why = peak_macs_per_s("int8")
    assert v > 0 and why
    with pytest.raises(ValueError, match="precision"):
        peak_macs_per_s("int4")


def test_no_tensorflow_import():
    code = "import sys, device_bench.sysinfo as s; s.peak_macs_per_s('int8'); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
