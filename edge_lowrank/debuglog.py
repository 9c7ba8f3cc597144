"""Third-party warnings and TensorFlow/Keras logging go to a debug log, never to the user's terminal.

Why: Keras and TensorFlow print notes a user cannot act on (e.g. "The structure of `inputs` doesn't match the
expected structure" on Functional .h5 models, tf.function retracing). The project's own warnings (raised from
its packages: a budget not met, a repaired legacy file) stay on stderr. The rest is kept, not lost: in
`<out>/debug.log` for `run` (lines seen before the folder exists are written when it is set), and on stderr
as `debug: ...` lines with ``EDGE_LOWRANK_DEBUG=1``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

DEBUG_ENV = "EDGE_LOWRANK_DEBUG"
PROJECT_PACKAGES = ("edge_lowrank", "converters", "device_bench", "sample_models", "benchmarks")
THIRD_PARTY_LOGGERS = ("tensorflow", "absl", "keras", "h5py")
_ROOT = Path(__file__).resolve().parent.parent
_MAX_PENDING = 2000

_pending: list[str] = []
_path: Path | None = None


def is_ours(filename) -> bool:
    """Whether a warning raised at `filename` comes from the project's own packages."""
    try:
        rel = Path(filename).resolve().relative_to(_ROOT)
    except (ValueError, OSError):
        return False
    return bool(rel.parts) and rel.parts[0] in PROJECT_PACKAGES


def record(text: str) -> None:
    """Keep one debug line: in the debug file when set (else until it is), on stderr under EDGE_LOWRANK_DEBUG."""
    text = " ".join(str(text).split())
    if os.environ.get(DEBUG_ENV):
        print(f"debug: {text}", file=sys.stderr)
    if _path is None:
        if len(_pending) < _MAX_PENDING:
            _pending.append(text)
        return
    try:
        with _path.open("a", encoding="utf-8") as f:
            f.write(text + "\n")
    except OSError:  # a debug log must never fail the command
        pass


def record_warning(message, category, filename, lineno) -> None:
    record(f"{category.__name__} at {filename}:{lineno}: {message}")


def set_file(path) -> None:
    """Write debug lines to `path` from now on, starting with those kept so far."""
    global _path
    _path = Path(path)
    pending = list(_pending)
    _pending.clear()
    for text in pending:  # already echoed to stderr, if at all, when recorded
        _append(text)


def close() -> None:
    """Stop writing to the debug file (a later command in the same process keeps its lines in memory)."""
    global _path
    _path = None
    _pending.clear()


def _append(text: str) -> None:
    try:
        with _path.open("a", encoding="utf-8") as f:
            f.write(text + "\n")
    except OSError:
        pass


class _Handler(logging.Handler):
    def emit(self, rec: logging.LogRecord) -> None:
        try:
            record(f"{rec.name} {rec.levelname}: {rec.getMessage()}")
        except Exception:  # a malformed log call must not fail the command
            pass


def route_logging() -> None:
    """Send the TensorFlow/Keras/absl Python loggers to the debug log (call after TensorFlow is imported)."""
    try:
        import tensorflow as tf

        tf.get_logger()  # TF adds its stderr handler on first use: create it now, then replace it
    except ImportError:
        pass
    handler = _Handler(level=logging.DEBUG)
    for name in THIRD_PARTY_LOGGERS:
        lg = logging.getLogger(name)
        lg.handlers = [handler]
        lg.propagate = False
