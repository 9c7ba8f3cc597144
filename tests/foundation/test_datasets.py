"""The Fashion-MNIST loader reads Debian's files: official split, shapes, dtypes, a fixed calibration subset."""

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest

from device_bench.datasets import (
    CALIB_PER_CLASS,
    DataError,
    calibration_indices,
    load_dataset,
    load_fashion_mnist,
    load_npz,
)


@pytest.fixture(scope="module")
def test_split():
    return load_fashion_mnist("test")


def test_test_split_shapes_dtypes_and_classes(test_split):
    assert test_split.x.shape == (10_000, 28, 28, 1)
    assert test_split.x.dtype == np.float32
    assert test_split.y.dtype == np.int64
    assert 0.0 <= test_split.x.min() and test_split.x.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(test_split.y), np.full(10, 1_000))


def test_train_split_is_the_official_60k():
    train = load_dataset("fashion-mnist:train")
    assert train.x.shape == (60_000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(train.y), np.full(10, 6_000))


def test_calibration_subset_is_fixed_and_balanced():
    calib = load_dataset("fashion-mnist:calib")
    assert len(calib) == 10 * CALIB_PER_CLASS
    np.testing.assert_array_equal(np.bincount(calib.y), np.full(10, CALIB_PER_CLASS))
    again = load_dataset("fashion-mnist", default_split="calib")
    np.testing.assert_array_equal(calib.x, again.x)
    labels = np.repeat(np.arange(10), 50)
    np.testing.assert_array_equal(calibration_indices(labels, 5), calibration_indices(labels, 5))


def test_bare_spelling_uses_the_commands_default_split(test_split):
    assert load_dataset("fashion-mnist").name == "fashion-mnist:test"
    assert load_dataset("fashion-mnist", default_split="calib").name == "fashion-mnist:calib"


def test_missing_data_without_internet_is_one_clear_line(tmp_path):
    env = dict(os.environ, EDGE_LOWRANK_FASHION_MNIST_DIR=str(tmp_path / "none"), EDGE_LOWRANK_OFFLINE="1")
    code = "from device_bench.datasets import load_dataset; load_dataset('fashion-mnist:test')"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "dataset-fashion-mnist" in proc.stderr
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        os.environ["EDGE_LOWRANK_OFFLINE"] = "1"
        try:
            load_fashion_mnist("test", data_dir=tmp_path / "none")
        finally:
            del os.environ["EDGE_LOWRANK_OFFLINE"]


def test_data_dir_override_reads_other_idx_files(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    labels = np.array([3, 7], dtype=np.uint8)
    header_i = bytes([0, 0, 8, 3]) + np.array([2, 28, 28], ">u4").tobytes()
    header_l = bytes([0, 0, 8, 1]) + np.array([2], ">u4").tobytes()
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(header_i + images.tobytes())
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(header_l + labels.tobytes())
    ds = load_fashion_mnist("test", data_dir=tmp_path)
    np.testing.assert_array_equal(ds.y, [3, 7])
    np.testing.assert_allclose(ds.x[..., 0], images / 255.0, rtol=1e-6)


def test_unknown_split_and_spelling_are_refused():
    with pytest.raises(DataError, match="split"):
        load_dataset("fashion-mnist:validation")
    with pytest.raises(DataError, match="Expected fashion-mnist"):
        load_dataset("cifar10")


def test_npz_round_trip_and_uint8_scaling(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.full((4, 8, 8), 255, np.uint8), y=np.arange(4))
    ds = load_npz(path)
    assert ds.x.shape == (4, 8, 8, 1) and ds.x.dtype == np.float32 and ds.x.max() == 1.0
    assert ds.y.dtype == np.int64
    unlabelled = tmp_path / "u.npz"
    np.savez(unlabelled, x=np.zeros((3, 8, 8, 3), np.float32))
    assert load_dataset(str(unlabelled)).y is None


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"y": np.arange(3)}, "no array `x`"),
        ({"x": np.zeros((3, 8), np.float32)}, "shape"),
        ({"x": np.zeros((3, 8, 8), np.int32)}, "dtype"),
        ({"x": np.full((3, 8, 8), np.nan, np.float32)}, "NaN"),
        ({"x": np.zeros((3, 8, 8), np.float32), "y": np.arange(2)}, "labels"),
        ({"x": np.zeros((3, 8, 8), np.float32), "y": np.zeros(3, np.float32)}, "labels"),
    ],
)
def test_malformed_npz_is_refused(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=match):
        load_npz(path)


def test_not_an_npz_is_refused(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_npz(path)
    with pytest.raises(DataError, match="does not exist"):
        load_npz(tmp_path / "missing.npz")


def test_download_fallback_fetches_and_caches_the_idx_files(tmp_path, monkeypatch):
    """Without the Debian files, the loader downloads the IDX files (here from a local HTTP server) once."""
    import functools
    import http.server
    import threading

    import device_bench.datasets as datasets

    served = tmp_path / "served"
    served.mkdir()
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    with gzip.open(served / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + np.array([3, 28, 28], ">u4").tobytes() + images.tobytes())
    with gzip.open(served / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + np.array([3], ">u4").tobytes() + bytes([1, 2, 3]))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(datasets, "DOWNLOAD_URL", f"http://127.0.0.1:{server.server_port}/")
        monkeypatch.setenv("EDGE_LOWRANK_CACHE", str(tmp_path / "cache"))
        monkeypatch.delenv("EDGE_LOWRANK_OFFLINE", raising=False)
        ds = load_fashion_mnist("test", data_dir=tmp_path / "no-debian-files")
    finally:
        server.shutdown()
    np.testing.assert_array_equal(ds.y, [1, 2, 3])
    assert (tmp_path / "cache" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").is_file()
    again = load_fashion_mnist("test", data_dir=tmp_path / "no-debian-files")  # server gone: from the cache
    np.testing.assert_array_equal(again.x, ds.x)
