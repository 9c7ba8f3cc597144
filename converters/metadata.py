"""Provenance that travels inside the .tflite: scheme, ranks, source model hash, tool version.

It is stored as UTF-8 JSON in the flatbuffer's metadata table under the name ``edge_lowrank``, so the file
alone says what it is; LiteRT and TFLM ignore metadata they do not know. No timestamp is written: the same
inputs must give byte-identical files.
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
