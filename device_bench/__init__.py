"""device_bench: benchmark .tflite files with LiteRT + XNNPACK, without TensorFlow.

Runs on the host, on aarch64 under QEMU, with the TFLM interpreter, and on boards over ssh. Only numpy and
ai-edge-litert are needed (see requirements.txt); importing this package never imports TensorFlow, and the
runtime itself is imported only when a model is loaded.

Public API:
    bench_models(paths, params, *, target="host", data=None, interleave=True) -> list[BenchResult]
    measure(model_path, params, inputs) -> BenchResult     (one model, this process, no child)
    compare(results, baseline) -> list[dict]               (speedups with 95% confidence intervals)
    report.to_json / to_csv / to_markdown                  (versioned JSON schema)
    BenchParams, BenchResult, Stats, BenchError
"""

__version__ = "0.1.0"

# Eager, and cheap (numpy only: the runtime is imported inside functions). Eager also because `measure` and
# `compare` are both a module and a function here: binding the functions last makes them win.
from .errors import BenchError  # noqa: E402
from .results import SCHEMA_VERSION, BenchParams, BenchResult, Stats  # noqa: E402
from .bench import bench_models  # noqa: E402
from .measure import measure  # noqa: E402
from .compare import compare  # noqa: E402
from . import report  # noqa: E402

__all__ = ["BenchError", "BenchParams", "BenchResult", "SCHEMA_VERSION", "Stats", "bench_models", "compare",
           "measure", "report"]
