"""Instruction counts under QEMU: deterministic, following the core's kernels, outputs equal to the host's.

Every invoke of a run is counted between two marker syscalls, minus the markers' own cost. Counts are exact
and deterministic (Python's hash seed, one BLAS thread, the guest's garbage collector off while counting),
so the tests require EQUAL counts, not counts within a tolerance.
"""

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.qemu
FIXTURES = Path(__file__).parent / "fixtures"

INT8 = "small_cnn_int8.tflite"
FP32 = "small_cnn_fp32.tflite"


def _host_outputs(model, inputs):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(FIXTURES / model), num_threads=1)
    interp.allocate_tensors()
    for x, d in zip(inputs, interp.get_input_details()):
        interp.set_tensor(d["index"], x)
    interp.invoke()
    return [interp.get_tensor(d["index"]) for d in interp.get_output_details()]


def _random_inputs(model):
    from device_bench.inputs import random_inputs
    from ai_edge_litert.interpreter import Interpreter

    return random_inputs(Interpreter(model_path=str(FIXTURES / model)).get_input_details())


@pytest.mark.slow
def test_two_runs_give_identical_counts(qemu_run, qemu_ready, bench_params):
    from concurrent.futures import ThreadPoolExecutor

    first = {p: qemu_run(INT8, p) for p in ("cortex-a76", "cortex-a53")}
    # The second runs go at the same time, on two profiles: per-profile directories keep them apart.
    with ThreadPoolExecutor(2) as pool:
        again = dict(zip(first, pool.map(lambda p: qemu_ready.run_qemu(FIXTURES / INT8, p, bench_params), first)))
    for p in first:
        assert first[p].instructions_per_inference == again[p].instructions_per_inference, p
        assert first[p].instructions_first == again[p].instructions_first, p
        assert first[p].extra["instruction_mix"] == again[p].extra["instruction_mix"], p
    first = first["cortex-a76"]
    # Within one run, every steady-state invoke executes the same instructions.
    steady = first.extra["instructions_steady"]
    assert len(steady) == bench_params.num_runs and len(set(steady)) == 1


def test_result_fields(qemu_run, bench_params):
    r = qemu_run(INT8, "cortex-a76")
    assert r.target == "qemu-aarch64:cortex-a76" and r.emulated and r.extra["times_emulated"]
    assert r.delegate_partitions == 1 and r.nodes_outside_delegate == 0
    assert 100_000 < r.instructions_per_inference < 10_000_000
    assert r.instructions_first >= r.instructions_per_inference
    assert r.inference_us.count == bench_params.num_runs and r.first_inference_us > 0
    assert r.env["emulated"] and r.env["qemu_cpu"] == "cortex-a76" and r.env["cpuinfo_part"] == "0xd0b"
    mix = r.extra["instruction_mix"]
    assert mix["total"] == r.instructions_per_inference
    assert mix["simd_fp"] + mix["simd_ldst"] + mix["sve"] <= mix["total"]


def test_int8_fewer_instructions_on_a76_than_a53(qemu_run):
    a53, a76 = qemu_run(INT8, "cortex-a53"), qemu_run(INT8, "cortex-a76")
    # The A76 has SDOT: XNNPACK's dot-product kernels do the int8 convolutions in far fewer instructions.
    assert a76.instructions_per_inference < 0.6 * a53.instructions_per_inference
    assert a53.extra["instruction_mix"]["dot"] == 0 and a76.extra["instruction_mix"]["dot"] > 0


def test_int8_outputs_bit_exact_with_host(qemu_run):
    inputs = _random_inputs(INT8)  # the runner's default inputs: seeded random
    host = _host_outputs(INT8, inputs)
    for profile in ("cortex-a53", "cortex-a76"):
        r = qemu_run(INT8, profile)
        arm = [np.asarray(o, dtype=d) for o, d in zip(r.extra["outputs"], r.extra["output_dtypes"])]
        assert len(arm) == len(host)
        for a, h in zip(arm, host):
            assert a.dtype == h.dtype == np.int8
            np.testing.assert_array_equal(a, h, err_msg=profile)
        assert r.extra["host_agreement"]["bit_exact"]


def test_i8mm_profile_uses_smmla(qemu_run):
    a76, a710 = qemu_run(INT8, "cortex-a76"), qemu_run(INT8, "cortex-a710")
    assert a710.extra["instruction_mix"]["i8mm"] > 0
    assert a710.instructions_per_inference < a76.instructions_per_inference
    assert a710.extra["host_agreement"]["bit_exact"]


def test_fp32_outputs_within_tolerance_of_host(qemu_run):
    r = qemu_run(FP32, "cortex-a76")
    host = _host_outputs(FP32, _random_inputs(FP32))
    arm = [np.asarray(o, dtype=np.float32) for o in r.extra["outputs"]]
    for a, h in zip(arm, host):
        # FMA contraction and summation order differ between x86 and ARM kernels: 1e-4 of the output scale.
        np.testing.assert_allclose(a, h, rtol=0, atol=1e-4 * max(1.0, float(np.abs(h).max())))
    assert r.extra["host_agreement"]["within_tolerance"]


def test_silent_fallback_is_an_error(qemu_ready, bench_params):
    # An int8 SOFTMAX alone: XNNPACK takes nothing, which must not pass as an XNNPACK measurement.
    with pytest.raises(qemu_ready.QemuRunError, match="XNNPACK did not delegate"):
        qemu_ready.run_qemu(FIXTURES / "softmax_int8.tflite", "cortex-a76", bench_params)
