"""How far the .tflite strays from the Keras model on held-out samples.

Both run on the same images: Keras in batches, LiteRT one image at a time (the model has a static batch of
1). int8 inputs are quantized and int8 outputs dequantized with the model's own scale and zero point, so
the errors are in the Keras output's units. LiteRT runs in a child process (`edge_lowrank.isolate`, no
TensorFlow there): a crash in its kernels is one line naming the file, not the end of the caller.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from converters.quiet import quiet_fds
from edge_lowrank.errors import DataError

DEFAULT_FIDELITY_SAMPLES = 1000


@dataclasses.dataclass(frozen=True)
class Fidelity:
    """Agreement of a .tflite with its Keras model on `n` samples.

    `max_rel_err` is the largest per-sample max |tflite - keras| divided by max |keras| of that sample.
    Accuracies are None when the data has no labels.
    """

    n: int
    data: str
    max_abs_err: float
    max_rel_err: float
    mean_abs_err: float
    top1_agreement: float
    accuracy_keras: float | None
    accuracy_tflite: float | None

    @property
    def accuracy_drop(self) -> float | None:
        if self.accuracy_keras is None:
            return None
        return self.accuracy_keras - self.accuracy_tflite

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["accuracy_drop"] = self.accuracy_drop
        return d

    def render(self) -> str:
        s = (f"fidelity on {self.n:,} samples of {self.data}: top-1 agreement {self.top1_agreement * 100:.2f}%, "
             f"max abs err {self.max_abs_err:.4g}, max rel err {self.max_rel_err:.4g}")
        if self.accuracy_keras is not None:
            s += (f"\naccuracy: keras {self.accuracy_keras * 100:.2f}%, tflite {self.accuracy_tflite * 100:.2f}% "
                  f"({-self.accuracy_drop * 100:+.2f} points)")
        return s


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if detail["dtype"] in (np.float32, np.float16) or not scale:
        return x.astype(detail["dtype"])
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if np.issubdtype(y.dtype, np.floating) or not scale:
        return y.astype(np.float32)
    return (y.astype(np.float32) - zero) * scale


def run_tflite(tflite: bytes, x: np.ndarray) -> np.ndarray:
    """Outputs of the .tflite (first output, dequantized) for each image of `x`, via LiteRT + XNNPACK."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_fds(2):
        interp = Interpreter(model_content=bytes(tflite), num_threads=1)
        interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    want = tuple(int(d) for d in inp["shape"][1:])
    if tuple(x.shape[1:]) != want:
        raise DataError(f"Data has samples of shape {tuple(x.shape[1:])}, the .tflite wants {want}.")
    ys = []
    for i in range(len(x)):
        interp.set_tensor(inp["index"], _quantize(x[i:i + 1], inp))
        interp.invoke()
        ys.append(_dequantize(interp.get_tensor(out["index"]), out)[0])
    return np.stack(ys)


def check_fidelity(model, tflite: bytes, dataset, n: int | None = DEFAULT_FIDELITY_SAMPLES, *,
                   subject: str = "the model") -> Fidelity:
    """Compare a .tflite with its Keras model on the first `n` samples of `dataset` (all when None).

    Args:
        model: the Keras model the .tflite came from.
        tflite: the flatbuffer bytes.
        dataset: a `Dataset` (x float32 NHWC; y int labels or None), e.g. `load_dataset("fashion-mnist:test")`.
        n: number of samples.
        subject: the .tflite's name in messages.

    Raises:
        DataError: empty data, or samples of the wrong shape.
        CrashError: LiteRT crashed in its child process.
    """
    from edge_lowrank.isolate import run_isolated

    ds = dataset.take(n)
    if len(ds) == 0:
        raise DataError(f"Data {dataset.name} is empty: fidelity needs samples.")
    x = np.asarray(ds.x, dtype=np.float32)
    want = tuple(int(d) for d in model.inputs[0].shape[1:])
    if tuple(x.shape[1:]) != want:
        raise DataError(f"Data {dataset.name} has samples of shape {tuple(x.shape[1:])}, "
                        f"the model wants {want}.")
    static = model.inputs[0].shape[0]  # a static-batch model only takes its own batch size
    batch = static or 256
    if static and len(x) % static:
        raise DataError(f"The model has a static batch of {batch}; {len(x)} samples do not divide into it.")
    ref = np.asarray(model.predict(x, batch_size=batch, verbose=0), dtype=np.float32).reshape(len(x), -1)
    got = run_isolated(run_tflite, bytes(tflite), x, stage="LiteRT fidelity check",
                       subject=subject).reshape(len(x), -1)
    diff = np.abs(got - ref)
    per_sample_rel = diff.max(axis=1) / np.maximum(np.abs(ref).max(axis=1), 1e-12)
    top_ref, top_got = ref.argmax(axis=1), got.argmax(axis=1)
    acc_k = acc_t = None
    if ds.y is not None:
        acc_k = float(np.mean(top_ref == ds.y))
        acc_t = float(np.mean(top_got == ds.y))
    return Fidelity(n=len(x), data=ds.name, max_abs_err=float(diff.max()),
                    max_rel_err=float(per_sample_rel.max()), mean_abs_err=float(diff.mean()),
                    top1_agreement=float(np.mean(top_ref == top_got)),
                    accuracy_keras=acc_k, accuracy_tflite=acc_t)
