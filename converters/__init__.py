"""TFLite export of Keras models, with op/delegation audits, fidelity checks and microcontroller arrays.

Each function is pure (`model -> bytes` or `bytes -> record`); the CLI writes the files. Names load
lazily: `from converters import audit_ops` imports no TensorFlow (only `to_tflite` and `check_fidelity`'s
Keras model do).
"""

import importlib

_EXPORTS = {
    "to_tflite": "converters.convert",
    "to_tflite_isolated": "converters.convert",
    "PRECISIONS": "converters.convert",
    "ConversionError": "converters.convert",
    "audit_ops": "converters.audit",
    "OpAudit": "converters.audit",
    "UnsupportedOpsError": "converters.audit",
    "check_fidelity": "converters.fidelity",
    "Fidelity": "converters.fidelity",
    "run_tflite": "converters.fidelity",
    "c_array": "converters.carray",
    "tflm_op_registrations": "converters.carray",
    "tflm_arena_size": "converters.tflm",
    "tflm_check": "converters.tflm",
    "TflmError": "converters.tflm",
    "read_metadata": "converters.metadata",
    "embed_metadata": "converters.metadata",
    "validate_representative_data": "converters.calibration",
    "calibration_samples": "converters.calibration",
    "tflite_macs": "converters.macs",
    "TfliteMacs": "converters.macs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'converters' has no attribute {name!r}")
