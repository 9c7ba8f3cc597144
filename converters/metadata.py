"""Provenance that travels inside the .tflite: scheme, ranks, source model hash, tool version, input normalization.

It is stored as UTF-8 JSON in the flatbuffer's metadata table under the name ``edge_lowrank``, so the file
alone says what it is; LiteRT and TFLM ignore metadata they do not know. No timestamp is written: the same
inputs must give byte-identical files.

The input normalization (`device_bench.transform`) is stored as TFLite's metadata convention states it
(NormalizationOptions): ``model_input = (pixel - mean) / std`` on 0..255 pixels, so an app feeding camera
pixels knows what to do; the map on [0, 1] images (scale, offset) is kept beside it.
"""

from __future__ import annotations

import json

from converters.flatbuffer import metadata_entries, read_model, with_metadata
from edge_lowrank.errors import ModelError

METADATA_NAME = "edge_lowrank"


def embed_metadata(tflite: bytes, metadata: dict) -> bytes:
    """Return `tflite` with `metadata` (a JSON-serialisable dict) in its ``edge_lowrank`` metadata buffer."""
    if not isinstance(metadata, dict):
        raise ModelError(f"Invalid value for argument `metadata`. Expected a dict. "
                         f"Received: {type(metadata).__name__}.")
    try:
        payload = json.dumps(metadata, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise ModelError(f"Invalid value for argument `metadata`: not JSON-serialisable ({e}).") from None
    return with_metadata(tflite, METADATA_NAME, payload)


def read_metadata(tflite: bytes) -> dict:
    """The ``edge_lowrank`` metadata dict of a model ({} when it has none)."""
    raw = metadata_entries(read_model(tflite)).get(METADATA_NAME)
    if not raw:
        return {}
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelError(f"The model's `{METADATA_NAME}` metadata is not valid JSON.") from None
    return value if isinstance(value, dict) else {"value": value}


def normalization_metadata(transform) -> dict:
    """The metadata entries of an input transform: ``input_normalization`` (mean/std) and ``input_transform``."""
    out = {"input_transform": {"scale": transform.scale, "offset": transform.offset, "source": transform.source,
                               "formula": "model_input = image * scale + offset, image in [0, 1]"}}
    norm = transform.normalization()
    if norm is not None:
        out["input_normalization"] = norm
    else:
        out["input_transform"]["formula"] = "model_input = data as given (range not stated)"
    return out


def read_normalization(tflite: bytes) -> dict | None:
    """The ``input_normalization`` a model records (mean, std on 0..255 pixels), or None."""
    norm = read_metadata(tflite).get("input_normalization")
    return norm if isinstance(norm, dict) and "mean" in norm and "std" in norm else None
