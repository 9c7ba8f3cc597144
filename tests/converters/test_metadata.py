"""Provenance in the flatbuffer's metadata: written by to_tflite, read back, harmless to the interpreters."""

import numpy as np
import pytest

from converters import embed_metadata, read_metadata, run_tflite, to_tflite
from converters.convert import weights_sha256
from edge_lowrank import __version__
from edge_lowrank.errors import ModelError


def test_to_tflite_records_tool_precision_and_weights_hash(tiny_resnet, calib):
    flat = to_tflite(tiny_resnet, precision="int8", representative_data=calib,
                     metadata={"scheme": "tucker2", "ranks": {"conv2d_1": [8, 16]}, "source_sha256": "ab" * 32})
    meta = read_metadata(flat)
    assert meta["scheme"] == "tucker2" and meta["ranks"] == {"conv2d_1": [8, 16]}
    assert meta["source_sha256"] == "ab" * 32
    assert meta["tool"] == "edge-lowrank" and meta["tool_version"] == __version__
    assert meta["precision"] == "int8" and meta["io"] == "int8" and meta["calibration_samples"] == len(calib)
    assert meta["source_weights_sha256"] == weights_sha256(tiny_resnet)


def test_metadata_round_trip_and_replace(converted):
    flat = converted("resnet", "float32")
    once = embed_metadata(flat, {"scheme": "cp"})
    twice = embed_metadata(once, {"scheme": "spatial", "ranks": [1, 2]})
    assert read_metadata(once)["scheme"] == "cp"
    assert read_metadata(twice) == {"scheme": "spatial", "ranks": [1, 2]}
    assert len(twice) - len(once) < 64  # replaced in place, not appended


def test_metadata_does_not_change_what_the_model_computes(converted):
    flat = converted("resnet", "int8")
    tagged = embed_metadata(flat, {"note": "x" * 1000})
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(run_tflite(flat, x), run_tflite(tagged, x))


def test_model_without_our_metadata_reads_empty(fixtures_dir):
    assert read_metadata((fixtures_dir / "split_dynamic_batch.tflite").read_bytes()) == {}


def test_unserialisable_metadata_is_refused(converted):
    with pytest.raises(ModelError, match="not JSON-serialisable"):
        embed_metadata(converted("resnet", "float32"), {"bad": object()})
