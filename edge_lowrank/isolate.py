"""Run native work (the TFLite converter, TFLite Micro, LiteRT) in a child process: a crash is one line, not a
dead command.

Why a child: a segfault or abort inside C++ kills the whole process, report and other variants included
(tflite-micro did, on a mini-Xception). The child is a fresh `python -m edge_lowrank.isolate`, never a fork: a
fork of a process that has imported TensorFlow inherits its threads and locks. The call (a module-level
function and its arguments) and its result travel as pickles through files in a temporary folder. The child
imports only the function's module, so a LiteRT or TFLM child stays light (about 0.3 s, no TensorFlow). The
converter's child pays TensorFlow's import (2.5 s on a quiet machine, 7 s on a loaded one), so it is kept
warm for the next conversion (`reuse=`) and replaced only when it crashed.

The child's stdout and stderr (native logs) go to a file that is dropped unless `EDGE_LOWRANK_DEBUG` is set.

Test hook: with `EDGE_LOWRANK_TEST_CRASH=GLOB` in the caller's environment, a call whose "STAGE:SUBJECT"
matches the glob dereferences a null pointer in the child before its work starts: a genuine SIGSEGV, for the
tests of crash handling. Nothing else reads it.
"""

from __future__ import annotations

import atexit
import contextlib
import fnmatch
import importlib
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import time
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


def _tail(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(("INFO:", "WARNING: All"))]
    return lines[-1][:200] if lines else ""


class _Child:
    """One `python -m edge_lowrank.isolate` process that runs calls one after another.

    Requests are lines "CALL.pkl<TAB>RESULT.pkl" on its stdin; it answers "done" on a pipe of its own, so that
    whatever native code prints (on fds 1 and 2, sent to a log file) never mixes with the protocol.
    """

    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="edge-lowrank-child.")
        self.log_path = Path(self.tmp.name) / "child.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        read_fd, write_fd = os.pipe()
        with open(self.log_path, "wb") as log_fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "edge_lowrank.isolate", str(write_fd)],
                                         stdin=subprocess.PIPE, stdout=log_fh, stderr=subprocess.STDOUT, env=env,
                                         pass_fds=(write_fd,))
        os.close(write_fd)
        self.replies = os.fdopen(read_fd, "rb")
        self.calls = 0

    def call(self, request: dict, timeout_s: float | None) -> tuple[str, object]:
        """(status, value) of one request; raises `_Died(code, log tail)` or `_TimedOut`."""
        self.calls += 1
        call, result = Path(self.tmp.name) / f"call{self.calls}.pkl", Path(self.tmp.name) / f"result{self.calls}.pkl"
        with open(call, "wb") as fh:
            pickle.dump(request, fh, protocol=pickle.HIGHEST_PROTOCOL)
        log_start = self.log_path.stat().st_size
        try:
            self.proc.stdin.write(f"{call}\t{result}\n".encode())
            self.proc.stdin.flush()
        except OSError:
            pass  # it died already: the reply pipe says so below
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.replies], [], [], wait)
            if not ready:
                raise _TimedOut()
            if self.replies.readline() == b"done\n":
                break
            code = self.proc.wait()  # EOF: the child is gone
            raise _Died(code, self._log_since(log_start))
        if os.environ.get("EDGE_LOWRANK_DEBUG"):
            sys.stderr.write(self._log_since(log_start))
        try:
            with open(result, "rb") as fh:
                return pickle.load(fh)
        finally:
            call.unlink(missing_ok=True)
            result.unlink(missing_ok=True)

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # EOF: it exits on its own
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        self.replies.close()
        self.tmp.cleanup()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.close()


class _Died(Exception):
    def __init__(self, code: int, log: str):
        super().__init__(code)
        self.code, self.log = code, log


class _TimedOut(Exception):
    pass


_WARM: dict[str, _Child] = {}


@atexit.register
def close_warm_children() -> None:
    """End the warm children (`reuse=`); also called at exit."""
    while _WARM:
        _WARM.popitem()[1].close()


def run_isolated(fn, *args, stage: str, subject: str, timeout_s: float | None = None, reuse: str | None = None,
                 **kwargs):
    """Call `fn(*args, **kwargs)` in a child process and return its result.

    Args:
        fn: a module-level function (it is imported by name in the child); arguments and result must pickle.
        stage: what runs, for messages (e.g. "TFLM arena search").
        subject: the file it runs on, for messages (e.g. "tflite/auto-int8.tflite").
        timeout_s: kill the child after this many seconds (None: no limit).
        reuse: keep the child alive under this key for the next call with the same key (it pays a costly
            import once, e.g. TensorFlow's, instead of per call); a child that crashed or timed out is
            replaced. None: a fresh child for this call only.

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
    child = _WARM.pop(reuse, None) if reuse else None
    if child is None or child.proc.poll() is not None:
        child = _Child()
    request = {"module": module, "name": name, "args": args, "kwargs": kwargs, "stage": stage, "subject": subject,
               "crash": os.environ.get(CRASH_ENV)}  # read now: a warm child's environment is older
    try:
        status, value = child.call(request, timeout_s)
    except _TimedOut:
        child.kill()
        raise IsolatedError(f"{where} timed out after {timeout_s:g} s (child killed).", stage=stage,
                            subject=subject) from None
    except _Died as died:
        child.close()
        if died.code < 0:
            sig, text = _signal_text(-died.code)
            raise CrashError(f"{where} crashed: {text}", stage=stage, subject=subject, signal_name=sig) from None
        tail = _tail(died.log)
        raise CrashError(f"{where} crashed: the child exited with code {died.code} and no result"
                         + (f" ({tail})" if tail else ""), stage=stage, subject=subject) from None
    except BaseException:  # Ctrl-C, or a result that does not unpickle: do not leave the child behind
        child.kill()
        raise
    if reuse:
        _WARM[reuse] = child
    else:
        child.close()
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


def _child(call_path: str, result_path: str) -> None:
    with open(call_path, "rb") as fh:
        call = pickle.load(fh)
    pattern = call.get("crash")
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
    del call
    try:
        with open(result_path, "wb") as fh:
            pickle.dump(out, fh, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # an unpicklable result or exception: say so in one line
        with open(result_path, "wb") as fh:
            pickle.dump(("error", f"its result cannot be sent back ({_one_line(e)})"), fh)


def _serve(reply_fd: int) -> None:
    with os.fdopen(reply_fd, "wb", buffering=0) as replies:
        for line in sys.stdin:
            if line.strip():
                _child(*line.rstrip("\n").split("\t"))
                sys.stdout.flush()
                sys.stderr.flush()
                replies.write(b"done\n")


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
