"""`edge-lowrank inspect MODEL.tflite [--json]`: ops, MACs, sizes, quantization, XNNPACK delegation, metadata.

Reads the flatbuffer and asks the LiteRT interpreter; imports no TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path


def add_arguments(parser):
    parser.add_argument("model", help="a .tflite file")
    parser.add_argument("--weights", action="store_true", help="list every constant tensor and its quantization")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args) -> int:
    from converters.audit import audit_ops
    from converters.carray import tflm_op_registrations
    from converters.macs import tflite_macs
    from converters.metadata import read_metadata
    from edge_lowrank.errors import ModelError

    path = Path(args.model)
    if not path.is_file():
        raise ModelError(f"Model file {path} does not exist.")
    data = path.read_bytes()
    audit = audit_ops(data)
    metadata = read_metadata(data)
    macs = tflite_macs(data)  # from the ops' shapes: compare with `info` on the .keras
    try:
        tflm_ops = [m[3:] for m in tflm_op_registrations(data)]
    except ModelError:
        tflm_ops = None
    if args.json:
        d = {"model": str(path), "audit": audit.to_dict(), "macs": macs.to_dict(), "metadata": metadata,
             "tflm_ops": tflm_ops}
        if not args.weights:
            d["audit"].pop("weights")
        print(json.dumps(d, indent=2))
        return 0
    print(f"{path}")
    print(audit.render())
    print(macs.render())
    if tflm_ops is not None:
        print("tflm ops: " + ", ".join(tflm_ops))
    if args.weights:
        for w in audit.weights:
            print(f"  {w.name}: {w.dtype} {w.shape} {w.nbytes:,} B, {w.quantization}")
    if metadata:
        print("metadata: " + ", ".join(f"{k}={v}" for k, v in sorted(metadata.items())))
        norm = metadata.get("input_normalization")
        if isinstance(norm, dict) and norm.get("mean") and norm.get("std"):  # what an app feeding pixels does
            print(f"input: model_input = (pixel - {norm['mean'][0]:g}) / {norm['std'][0]:g}, pixels in 0..255 "
                  f"(TFLite metadata convention: mean {norm['mean']}, std {norm['std']})")
    else:
        print("metadata: none (not written by edge-lowrank)")
    return 0
