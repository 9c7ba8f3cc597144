"""`edge-lowrank bench A.tflite [B.tflite ...]`: the device_bench command line, without TensorFlow.

The options and behaviour live in `device_bench.cli` so that `python -m device_bench` on a board is the same
command; errors are `BenchError` (an `EdgeLowrankError`), which `edge-lowrank` prints as one line, exit 1.
"""

from device_bench.cli import add_arguments, run

__all__ = ["add_arguments", "run"]
