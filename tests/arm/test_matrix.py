"""The comparison across models and profiles renders the counts the runs measured (no extra emulation)."""

import pytest

from device_bench.qemu.matrix import to_markdown

pytestmark = pytest.mark.qemu


def test_matrix_table_lists_counts_and_ratios(qemu_run):
    results = [qemu_run(m, p) for p in ("cortex-a53", "cortex-a76")
               for m in ("small_cnn_fp32.tflite", "small_cnn_int8.tflite")]
    md = to_markdown(results)
    assert "cortex-a53 instr/inf" in md and "cortex-a76 instr/inf" in md
    for r in results:
        assert f"{r.instructions_per_inference / 1e6:.3f}M" in md
    a76_fp, a76_i8 = results[2], results[3]
    assert f"({a76_i8.instructions_per_inference / a76_fp.instructions_per_inference:.2f}x)" in md
    assert "bit-exact" in md and "not caches" in md
