"""Silence native code: TensorFlow's converter and the interpreters print from C++ straight to fds 1 and 2."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile


@contextlib.contextmanager
def quiet_fds(*fds: int):
    """Send what native code writes on `fds` (1 = stdout, 2 = stderr) to a temp file; yield the file.

    Python-level redirects do not catch C++ logging, so this works at the file-descriptor level; Python's
    own `sys.stdout`/`sys.stderr` (which may not be fds 1/2, e.g. under pytest) are silenced as well.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink, contextlib.ExitStack() as stack:
        if 1 in fds:
            stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        if 2 in fds:
            stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        saved = [os.dup(fd) for fd in fds]
        try:
            for fd in fds:
                os.dup2(sink.fileno(), fd)
            yield sink
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            for fd, copy in zip(fds, saved):
                os.dup2(copy, fd)
                os.close(copy)
