"""Run native work (the TFLite converter, TFLite Micro, LiteRT) in a child process: a crash is one line, not a
dead command.

Why a child: a segfault or abort inside C++ kills the whole process, report and other variants included
(tflite-micro did, on a mini-Xception). The child is a fresh `python -m edge_lowrank.isolate`, never a fork: a
fork of a process that has imported TensorFlow inherits its threads and locks. The call (a module-level
function and its arguments) and its result travel as pickles through files in a temporary folder. The child
imports only the function's module, so a LiteRT or TFLM child stays light (about 0.3 s, no TensorFlow); a
converter child pays TensorFlow's import (about 2.5 s), small beside a conversion.

The child's stdout and stderr (native logs) go to a file that is dropped unless `EDGE_LOWRANK_DEBUG` is set.

Test hook: with `EDGE_LOWRANK_TEST_CRASH=GLOB` in the environment, a child whose "STAGE:SUBJECT" matches the
glob dereferences a null pointer before it starts its work: a genuine SIGSEGV, for the tests of crash
handling. Nothing else reads it.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import pickle
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from edge_lowrank.errors import EdgeLowrankError

CRASH_ENV = "EDGE_LOWRANK_TEST_CRASH"
_ROOT = str(Path(__file__).resolve().parent.parent)  # holds edge_lowrank, converters and device_bench


class IsolatedError(EdgeLowrankError):
    """Work in a child process failed: it raised an unexpected exception, crashed, or timed out."""

    def __init__(self, message: str, *, stage: str = "", subject: str = "", signal_name: str | None = None):
        super().__init__(message)
        self.stage, self.subject, self.signal_name = stage, subject, signal_name

    def __reduce__(self):
        return (_rebuild_isolated_error, (str(self), self.stage, self.subject, self.signal_name, type(self)))


class CrashError(IsolatedError):
    """The child died from a signal (SIGSEGV, SIGABRT, ...) or exited without a result."""


def _rebuild_isolated_error(message, stage, subject, signal_name, cls):
    return cls(message, stage=stage, subject=subject, signal_name=signal_name)


def _signal_text(code: int) -> tuple[str, str]:
    """("SIGSEGV", "SIGSEGV (signal 11)") for a child killed by signal `code` (> 0)."""
    try:
        name = signal.Signals(code).name
    except ValueError:
        name = f"signal {code}"
        return name, name
    return name, f"{name} (signal {code})"


def _tail(log_path: Path) -> str:
    try:
        text = log_path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(("INFO:", "WARNING: All"))]
    return lines[-1][:200] if lines else ""


def run_isolated(fn, *args, stage: str, subject: str, timeout_s: float | None = None, **kwargs):
    """Call `fn(*args, **kwargs)` in a child process and return its result.

    Args:
        fn: a module-level function (it is imported by name in the child); arguments and result must pickle.
        stage: what runs, for messages (e.g. "TFLM arena search").
        subject: the file it runs on, for messages (e.g. "tflite/auto-int8.tflite").
        timeout_s: kill the child after this many seconds (None: no limit).

    Raises:
        EdgeLowrankError: the project error `fn` raised in the child, re-raised as is (same type and line).
        IsolatedError: `fn` raised another exception ("STAGE on SUBJECT failed: Type: line"), or timed out.
        CrashError: the child died from a signal ("STAGE on SUBJECT crashed: SIGSEGV (signal 11)") or exited
            without a result.
    """
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or module == "__main__" or "<" in name:
        raise TypeError(f"run_isolated needs a module-level function, not {fn!r}.")
    where = f"{stage} on {subject}"
    with tempfile.TemporaryDirectory(prefix="edge-lowrank-child.") as tmp:
        call, result, log = Path(tmp) / "call.pkl", Path(tmp) / "result.pkl", Path(tmp) / "child.log"
        with open(call, "wb") as fh:
            pickle.dump({"module": module, "name": name, "args": args, "kwargs": kwargs,
                         "stage": stage, "subject": subject}, fh, protocol=pickle.HIGHEST_PROTOCOL)
        env = dict(os.environ)
        env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with open(log, "wb") as log_fh:
            proc = subprocess.Popen([sys.executable, "-m", "edge_lowrank.isolate", str(call), str(result)],
                                    stdin=subprocess.DEVNULL, stdout=log_fh, stderr=subprocess.STDOUT, env=env)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise IsolatedError(f"{where} timed out after {timeout_s:g} s (child killed).", stage=stage,
                                subject=subject) from None
        except BaseException:  # Ctrl-C: do not leave the child behind
            proc.kill()
            proc.wait()
            raise
        if os.environ.get("EDGE_LOWRANK_DEBUG"):
            sys.stderr.write(log.read_bytes().decode("utf-8", "replace"))
        if code < 0:
            sig, text = _signal_text(-code)
            raise CrashError(f"{where} crashed: {text}", stage=stage, subject=subject, signal_name=sig)
        try:
            with open(result, "rb") as fh:
                status, value = pickle.load(fh)
        except Exception:  # no result file (the child died in its own start-up), or a broken one
            tail = _tail(log)
            raise CrashError(f"{where} crashed: the child exited with code {code} and no result"
                             + (f" ({tail})" if tail else ""), stage=stage, subject=subject) from None
    if status == "ok":
        return value
    if status == "project-error":
        raise value
    if status == "project-line":  # a project error whose type does not pickle: its line, as a project error
        raise IsolatedError(value, stage=stage, subject=subject)
    raise IsolatedError(f"{where} failed: {value}", stage=stage, subject=subject)


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0][:300]}" if lines else type(e).__name__


def _child(call_path: str, result_path: str) -> int:
    with open(call_path, "rb") as fh:
        call = pickle.load(fh)
    pattern = os.environ.get(CRASH_ENV)
    if pattern and fnmatch.fnmatchcase(f"{call['stage']}:{call['subject']}", pattern):
        import ctypes

        ctypes.string_at(0)  # a real null-pointer read: SIGSEGV, as a native library would crash
    try:
        fn = importlib.import_module(call["module"])
        for part in call["name"].split("."):
            fn = getattr(fn, part)
        out = ("ok", fn(*call["args"], **call["kwargs"]))
    except EdgeLowrankError as e:
        try:
            pickle.loads(pickle.dumps(e))
            out = ("project-error", e)
        except Exception:
            out = ("project-line", str(e))
    except Exception as e:
        if os.environ.get("EDGE_LOWRANK_DEBUG"):
            import traceback

            traceback.print_exc()
        out = ("error", _one_line(e))
    tmp = result_path + ".part"
    try:
        with open(tmp, "wb") as fh:
            pickle.dump(out, fh, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # an unpicklable result or exception: say so in one line
        with open(tmp, "wb") as fh:
            pickle.dump(("error", f"its result cannot be sent back ({_one_line(e)})"), fh)
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1], sys.argv[2]))
