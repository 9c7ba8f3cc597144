"""device_bench's one error type: a bad input (file, option, target) that the CLI prints as one line.

It derives from `edge_lowrank.errors.ModelError` when edge_lowrank is installed (so `edge-lowrank bench`
maps it to exit code 1), and from `ValueError` alone on a board where only device_bench exists.
"""

try:
    from edge_lowrank.errors import ModelError as _Base
except ImportError:  # pragma: no cover - on a board
    _Base = ValueError


class BenchError(_Base):
    """A model, option, data set or target that device_bench cannot use."""
