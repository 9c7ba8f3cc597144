"""device_bench: benchmark .tflite files with LiteRT + XNNPACK, without TensorFlow.

Runs on the host, on aarch64 under QEMU, with the TFLM interpreter, and on boards over ssh. Only numpy and
ai-edge-litert are needed (see requirements.txt); importing this package never imports TensorFlow, and the
names below are imported lazily so `import device_bench` stays cheap on a board.

Public API:
    bench_models(paths, params, *, target="host", data=None, interleave=True) -> list[BenchResult]
    measure(model_path, params, inputs) -> BenchResult     (one model, this process, no child)
    compare(results, baseline) -> list[dict]               (speedups with 95% confidence intervals)
    report.to_json / to_csv / to_markdown                  (versioned JSON schema)
    BenchParams, BenchResult, Stats, BenchError
"""

__version__ = "0.1.0"

_LAZY = {
    "bench_models": ("bench", "bench_models"),
    "measure": ("measure", "measure"),
    "compare": ("compare", "compare"),
    "BenchParams": ("results", "BenchParams"),
    "BenchResult": ("results", "BenchResult"),
    "Stats": ("results", "Stats"),
    "SCHEMA_VERSION": ("results", "SCHEMA_VERSION"),
    "BenchError": ("errors", "BenchError"),
}

__all__ = sorted(_LAZY) + ["report"]


def __getattr__(name):
    import importlib

    if name == "report":
        return importlib.import_module(".report", __name__)
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'device_bench' has no attribute {name!r}")
