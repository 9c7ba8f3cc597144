"""`run_isolated`: a real native crash in the child is one line naming stage, file and signal; results and
errors come back as they would in-process."""

import ctypes
import operator
import os

import numpy as np
import pytest

from edge_lowrank.errors import ModelError
from edge_lowrank.isolate import CrashError, IsolatedError, run_isolated


def test_return_value_comes_back_from_another_process():
    assert run_isolated(os.getpid, stage="probe", subject="x") != os.getpid()
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    got = run_isolated(np.multiply, x, 2, stage="probe", subject="x")  # a ufunc pickles by name too
    np.testing.assert_array_equal(got, x * 2)


def test_keyword_arguments_reach_the_child():
    assert run_isolated(int, "ff", base=16, stage="parse", subject="x") == 255


def test_segfault_is_one_line_naming_stage_file_and_signal():
    with pytest.raises(CrashError) as info:
        run_isolated(ctypes.string_at, 0, stage="TFLM arena search", subject="tflite/auto-int8.tflite")
    msg = str(info.value)
    assert msg == "TFLM arena search on tflite/auto-int8.tflite crashed: SIGSEGV (signal 11)"
    assert info.value.signal_name == "SIGSEGV"


def test_abort_is_reported_as_sigabrt():
    with pytest.raises(CrashError, match=r"^LiteRT fidelity check on m.tflite crashed: SIGABRT \(signal 6\)$"):
        run_isolated(os.abort, stage="LiteRT fidelity check", subject="m.tflite")


def test_the_test_hook_crashes_only_matching_stages(monkeypatch):
    monkeypatch.setenv("EDGE_LOWRANK_TEST_CRASH", "TFLite converter:*spatial*")
    with pytest.raises(CrashError, match="SIGSEGV"):
        run_isolated(abs, -1, stage="TFLite converter", subject="models/spatial.keras")
    assert run_isolated(abs, -1, stage="TFLite converter", subject="models/channel.keras") == 1


def test_project_error_in_the_child_is_reraised_with_its_type_and_line(tmp_path):
    from edge_lowrank.modelio import load_keras_model

    missing = tmp_path / "missing.keras"
    with pytest.raises(ModelError, match=r"^Model file .*missing.keras does not exist\.$"):
        run_isolated(load_keras_model, missing, stage="load", subject=str(missing))


def test_other_exception_in_the_child_is_one_project_line():
    with pytest.raises(IsolatedError) as info:
        run_isolated(operator.truediv, 1, 0, stage="divide", subject="nothing")
    assert str(info.value) == "divide on nothing failed: ZeroDivisionError: division by zero"
    assert not isinstance(info.value, CrashError)


def test_timeout_kills_the_child():
    import time

    with pytest.raises(IsolatedError, match=r"^sleep on x timed out after 0.5 s"):
        run_isolated(time.sleep, 30, stage="sleep", subject="x", timeout_s=0.5)


def test_local_functions_are_refused():
    with pytest.raises(TypeError, match="module-level"):
        run_isolated(lambda: 1, stage="s", subject="x")


def test_a_warm_child_is_reused_and_replaced_after_a_crash():
    from edge_lowrank.isolate import close_warm_children

    try:
        first = run_isolated(os.getpid, stage="s", subject="x", reuse="test")
        assert run_isolated(os.getpid, stage="s", subject="x", reuse="test") == first
        with pytest.raises(CrashError, match="SIGSEGV"):
            run_isolated(ctypes.string_at, 0, stage="s", subject="x", reuse="test")
        assert run_isolated(os.getpid, stage="s", subject="x", reuse="test") not in (first, os.getpid())
    finally:
        close_warm_children()
