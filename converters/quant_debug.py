"""Where full-integer quantization loses accuracy, layer by layer, and what keeping layers in float costs.

Built on TFLite's own `tf.lite.experimental.QuantizationDebugger` (it works with Keras 3 through
`TFLiteConverter.from_keras_model`): it calibrates once, instruments the int8 model with NumericVerify ops
that run each op in float on the same dequantized inputs, and reports per-op error statistics on the
calibration data. The error of one op is its own, not the accumulated error upstream. Each op is scored by
RMSE / scale: uniform rounding noise alone gives 1/sqrt(12) = 0.29 quantization steps, so an op well above
that is quantized badly (a range too wide for its values, or channels of very different ranges sharing one
per-tensor scale).

Selective quantization keeps the named ops in float (`denylisted_nodes` of TFLite's MLIR quantizer applied
to the same calibrated model); the price is DEQUANTIZE/QUANTIZE pairs and float kernels, measured by
`fallback_latency` with device_bench on the host (interleaved, one thread).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np

from converters.convert import ConversionError, weights_sha256
from converters.quiet import quiet_fds
from edge_lowrank.errors import DataError, ModelError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Rounding noise of a uniform quantizer, in quantization steps: the floor of RMSE / scale.
ROUNDING_NOISE = 1 / math.sqrt(12)
# An op whose RMSE is this many times the rounding noise stands out (clipping, a crushed range, bad weights).
OUTLIER_FACTOR = 2.0
# Below this int8 top-1 agreement with Keras, `convert` suggests remedies.
AGREEMENT_THRESHOLD = 0.97


@dataclasses.dataclass(frozen=True)
class LayerError:
    """NumericVerify statistics of one quantized op's output on the calibration data.

    `node` is the op's output tensor name (what `denylisted_nodes` takes); `layer` the Keras layer it came
    from (its first fused op; the tensor name when none matches); `rmse_scale` the RMSE in quantization
    steps; `range` the float range the int8 tensor covers (255 x scale).
    """

    index: int
    op: str
    layer: str
    node: str
    rmse_scale: float
    max_abs_error: float
    mean_error: float
    scale: float
    zero_point: int
    range: float
    elements: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class QuantReport:
    """Per-op int8 error of one model, in graph order."""

    layers: tuple
    samples: int

    def worst(self, n: int = 5) -> list[LayerError]:
        """The `n` ops with the largest RMSE / scale, worst first."""
        return sorted(self.layers, key=lambda e: -e.rmse_scale)[:max(0, int(n))]

    def to_dict(self) -> dict:
        return {"samples": self.samples, "rounding_noise": ROUNDING_NOISE,
                "layers": [e.to_dict() for e in self.layers]}

    def render(self, n: int = 5) -> str:
        lines = [f"int8 error per op on {self.samples} calibration samples (RMSE in quantization steps; "
                 f"rounding alone gives {ROUNDING_NOISE:.2f}); worst {min(n, len(self.layers))}:"]
        for e in self.worst(n):
            lines.append(f"  {e.rmse_scale:7.3f}  {e.op:<16} range {e.range:9.4g}  {e.layer}")
        return "\n".join(lines)


def layer_of(node: str, layer_names) -> str:
    """The Keras layer a TFLite tensor comes from: the longest layer name that is a scope of its first fused
    op (Keras 3 scopes read `model_1/layer_1/op`); the tensor name itself when none is."""
    first = node.split(";")[0]
    scopes = [re.sub(r"_\d+$", "", p) for p in first.split("/")[:-1]] + first.split("/")[:-1]
    hits = [n for n in layer_names if n in scopes]
    return max(hits, key=len) if hits else node


def _layer_names(model) -> list[str]:
    names = []
    for layer in model.layers:
        names.append(layer.name)
        if hasattr(layer, "layers"):
            names.extend(_layer_names(layer))
    return names


class QuantDebugger:
    """Calibrate a Keras 3 model once, then measure per-op int8 error and export with ops kept in float.

    Args:
        model: a Keras 3 model (single input).
        calib: float32 NHWC calibration images (the ones the int8 export uses).
        float_io: keep float32 model inputs and outputs (int8 otherwise, as `to_tflite`).
        equalize: equalize chained low-rank factors first, as `to_tflite` does.
        input_range: (low, high) the model expects; calibration data outside it is refused.
    """

    def __init__(self, model, calib, *, float_io: bool = False, equalize: bool = True, input_range=None):
        import keras

        from converters.calibration import validate_representative_data
        from edge_lowrank.modelio import with_static_batch

        if not isinstance(model, keras.Model):
            raise ModelError(f"Expected a keras.Model. Received: {type(model).__name__}.")
        if len(model.inputs) != 1:
            raise ConversionError(f"The quantization debugger supports single-input models; this one has "
                                  f"{len(model.inputs)} inputs.")
        self.model = model
        self.float_io = float_io
        self.calib = validate_representative_data(calib, model.inputs[0].shape[1:], input_range)
        static = with_static_batch(model, 1)
        if equalize:
            from converters.equalize import equalize_factor_chains

            equal_model, pairs = equalize_factor_chains(model, self.calib)
            if pairs:
                static = with_static_batch(equal_model, 1)
        import tensorflow as tf

        calib_x = self.calib

        def representative():
            for i in range(len(calib_x)):
                yield [calib_x[i:i + 1]]

        with quiet_fds(1, 2), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                converter = tf.lite.TFLiteConverter.from_keras_model(static)
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.representative_dataset = representative
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                self._debugger = tf.lite.experimental.QuantizationDebugger(converter=converter,
                                                                          debug_dataset=representative)
            except Exception as e:
                raise ConversionError(f"The quantization debugger failed: "
                                      f"{(str(e).strip().splitlines() or [type(e).__name__])[0][:300]}") from None
        self._report = None

    def report(self) -> QuantReport:
        """Per-op RMSE / scale on the calibration data (computed once)."""
        if self._report is None:
            with quiet_fds(1, 2), warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                self._debugger.run()
                buf = io.StringIO()
                self._debugger.layer_statistics_dump(buf)
            rows, names = [], _layer_names(self.model)
            for i, row in enumerate(csv.DictReader(io.StringIO(buf.getvalue()))):
                scale = float(row["scale"])
                mse = float(row["mean_squared_error"])
                rows.append(LayerError(
                    index=i, op=row["op_name"], layer=layer_of(row["tensor_name"], names), node=row["tensor_name"],
                    rmse_scale=math.sqrt(max(mse, 0.0)) / scale if scale else float("nan"),
                    max_abs_error=float(row["max_abs_error"]), mean_error=float(row["mean_error"]),
                    scale=scale, zero_point=int(float(row["zero_point"])), range=255.0 * scale,
                    elements=int(float(row["num_elements"]))))
            self._report = QuantReport(tuple(rows), len(self.calib))
        return self._report

    def quantized(self, keep_float=(), *, metadata: dict | None = None) -> bytes:
        """The int8 model from the same calibration, with the ops whose output tensors are `keep_float`
        (names from `report()`) left in float. With nothing kept in float it equals the PTQ export."""
        import tensorflow as tf
        from tensorflow.lite.python import convert as tfl_convert

        from converters.metadata import embed_metadata
        from edge_lowrank import __version__

        nodes = [str(n) for n in keep_float]
        known = {e.node for e in self.report().layers}
        unknown = [n for n in nodes if n not in known]
        if unknown:
            raise DataError(f"Unknown op output {unknown[0]!r}: expected names from the debugger's report.")
        io_type = tf.float32 if self.float_io else tf.int8
        with quiet_fds(1, 2):
            try:
                flat = tfl_convert.mlir_quantize(self._debugger.calibrated_model, input_data_type=io_type,
                                                 output_data_type=io_type, denylisted_nodes=nodes or None)
            except Exception as e:
                raise ConversionError(f"Selective quantization failed: "
                                      f"{(str(e).strip().splitlines() or [type(e).__name__])[0][:300]}") from None
        info = {"tool": "edge-lowrank", "tool_version": __version__, "precision": "int8",
                "io": "float32" if self.float_io else "int8",
                "source_weights_sha256": weights_sha256(self.model),
                "calibration_samples": int(len(self.calib))}
        if nodes:
            names = _layer_names(self.model)
            info["float_fallback"] = [layer_of(n, names) for n in nodes]
        info.update(metadata or {})
        return embed_metadata(bytes(flat), info)

    def fallback(self, n: int, *, metadata: dict | None = None) -> tuple[bytes, list[LayerError]]:
        """The int8 model with the `n` worst ops (by RMSE / scale) kept in float, and those ops."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise DataError(f"Invalid value for `float-fallback`. Expected an int >= 0. Received: {n!r}.")
        worst = self.report().worst(n)
        return self.quantized([e.node for e in worst], metadata=metadata), worst


def fallback_latency(int8: bytes, fallback: bytes, *, rounds: int = 5, min_secs: float = 0.5) -> dict:
    """Host latency of the int8 and the float-fallback files, interleaved, one thread (device_bench).

    Returns {"int8_ms", "fallback_ms", "ratio"} (ratio = fallback / int8, medians of the timed runs).
    """
    from device_bench.bench import bench_models
    from device_bench.results import BenchParams

    with tempfile.TemporaryDirectory(prefix="edge-lowrank-qdebug-") as tmp:
        paths = [Path(tmp) / "int8.tflite", Path(tmp) / "fallback.tflite"]
        for p, data in zip(paths, (int8, fallback)):
            p.write_bytes(data)
        params = BenchParams(num_runs=20, min_secs=min_secs, rounds=rounds, num_threads=1)
        res = bench_models(paths, params, target="host", interleave=True)
    for r in res:
        if r.error:
            raise ConversionError(f"Benchmarking {Path(r.model).name} failed: {r.error}")
    a, b = (r.inference_us.median / 1000 for r in res)
    # four significant digits, not four decimals: a small model's 0.01 ms kept only 1 % there, so the rounded
    # times no longer gave the ratio reported beside them (a flaky test)
    return {"int8_ms": float(f"{a:.4g}"), "fallback_ms": float(f"{b:.4g}"), "ratio": round(b / a, 3),
            "partitions": [r.delegate_partitions for r in res]}


def remedies(agreement: float, report: QuantReport | None = None, *, calib_samples: int | None = None,
             qat: bool = False, threshold: float = AGREEMENT_THRESHOLD) -> str | None:
    """One line saying what to try when int8 top-1 agreement with Keras is below `threshold`, else None.

    With `qat` (the file is already fine-tuned) it suggests more QAT epochs instead of QAT."""
    if agreement >= threshold:
        return None
    tips = []
    if calib_samples is not None and calib_samples < 1000:
        tips.append(f"more calibration data (--calib-samples 1000; now {calib_samples})")
    tips.append("more QAT epochs or samples (--qat-epochs, --qat-samples)" if qat
                else "quantization-aware fine-tuning (--qat)")
    if report is not None and report.layers:
        worst = report.worst(3)
        if worst[0].rmse_scale < OUTLIER_FACTOR * ROUNDING_NOISE:
            tips.append(f"(no op stands out: the worst, {worst[0].layer}, is at {worst[0].rmse_scale:.2f} steps, "
                        f"rounding alone gives {ROUNDING_NOISE:.2f}; the error accumulates over the layers, so "
                        "keeping a few ops in float will not help)")
        else:
            named = ", ".join(f"{e.layer} ({e.rmse_scale:.2f} steps)" for e in worst)
            tips.append(f"keeping the worst ops in float (--float-fallback N; worst: {named})")
    else:
        tips.append("keeping the worst ops in float (--debug names them, --float-fallback N)")
    return (f"int8 top-1 agreement {agreement * 100:.1f}% is below {threshold * 100:.0f}%: try "
            + "; ".join(tips) + ".")


__all__ = ["QuantDebugger", "QuantReport", "LayerError", "fallback_latency", "remedies", "layer_of",
           "debug_file", "AGREEMENT_THRESHOLD", "ROUNDING_NOISE"]


def debug_file(keras_path, calib, *, float_fallback: int = 0, float_io: bool = False, equalize: bool = True,
               input_range=None, metadata: dict | None = None, bench: bool = True) -> dict:
    """The debugger on a saved model, for a child process (`edge_lowrank.isolate`): the report, and with
    `float_fallback` > 0 the fallback flatbuffer, the ops kept in float and the host latency cost.

    Returns {"report": QuantReport, "fallback": bytes | None, "kept": [LayerError], "latency": dict | None}.
    """
    from edge_lowrank.modelio import load_keras_model

    dbg = QuantDebugger(load_keras_model(keras_path), calib, float_io=float_io, equalize=equalize,
                        input_range=input_range)
    out = {"report": dbg.report(), "fallback": None, "kept": [], "latency": None}
    if float_fallback:
        flat, kept = dbg.fallback(float_fallback, metadata=metadata)
        out.update(fallback=flat, kept=kept)
        if bench:
            out["latency"] = fallback_latency(dbg.quantized(metadata=metadata), flat)
    return out
