"""The real tflite-micro interpreter runs the int8 model, and the arena search finds its minimum."""

import numpy as np
import pytest

pytest.importorskip("tflite_micro")

from converters import TflmError, tflm_arena_size, tflm_check  # noqa: E402
from converters.tflm import _runtime, _try_run  # noqa: E402

pytestmark = pytest.mark.tflm


def test_minimal_arena_is_minimal(converted):
    flat = converted("resnet", "int8")
    size = tflm_arena_size(flat)
    assert size % 16 == 0
    runtime = _runtime()
    assert _try_run(runtime, flat, size)[0] is not None
    assert _try_run(runtime, flat, size - 16)[0] is None


def test_tflm_matches_litert_reference_on_int8(converted):
    check = tflm_check(converted("resnet", "int8"))
    assert check.arena_size > 0
    assert check.max_abs_diff_vs_litert <= 1  # int8 codes: at most one rounding step apart


def test_float32_runs_on_tflm(converted):
    check = tflm_check(converted("resnet", "float32"))
    assert np.isfinite(check.max_abs_diff_vs_litert) and check.max_abs_diff_vs_litert < 1e-4


@pytest.mark.parametrize("precision, match", [("float16", "DEQUANTIZE|not true"), ("dynamic", "Hybrid")])
def test_precisions_tflm_cannot_run_fail_at_once(converted, precision, match):
    with pytest.raises(TflmError, match=match):
        tflm_arena_size(converted("resnet", precision))
