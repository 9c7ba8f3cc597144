"""Labelled image data for calibration, fine-tuning and accuracy, in pure numpy (no TensorFlow).

It lives in `device_bench` because a board must read the same data spellings without TensorFlow;
`edge_lowrank.data` re-exports it.

One spelling for data on every command:

- ``fashion-mnist`` : the split the command wants by default (test for accuracy, calibration subset for
  quantization, train for fine-tuning);
- ``fashion-mnist:train`` (60,000), ``fashion-mnist:test`` (10,000), ``fashion-mnist:calib`` (the fixed
  calibration subset, below);
- ``PATH.npz`` : a user's file with an array ``x`` (N, H, W, C) or (N, H, W) and, optionally, integer
  labels ``y`` (N,).

Fashion-MNIST is read from Debian's ``dataset-fashion-mnist`` files (``/usr/share/datasets/fashion-mnist``,
overridable by the ``data_dir`` argument or ``$EDGE_LOWRANK_FASHION_MNIST_DIR``). Without them, and when
``$EDGE_LOWRANK_OFFLINE`` is unset, it downloads the same files ``keras.datasets.fashion_mnist`` would into the
cache folder (no Keras needed, so a board can do it too). Images are float32 NHWC scaled to [0, 1]; labels are
int64. How images map to what a model takes is stated once, in `device_bench.transform`.

The calibration subset is 100 images of each class from the training split, the first ones of each class in
a permutation of the 60,000 indices by ``numpy.random.default_rng(20240601)``: 1,000 images, always the same.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from pathlib import Path

import numpy as np

try:  # device_bench must run without edge_lowrank installed (on a board)
    from edge_lowrank.errors import DataError
except ImportError:  # pragma: no cover - exercised on boards only
    class DataError(ValueError):
        pass

DEFAULT_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
DATA_DIR_ENV = "EDGE_LOWRANK_FASHION_MNIST_DIR"
OFFLINE_ENV = "EDGE_LOWRANK_OFFLINE"
# Where keras.datasets.fashion_mnist downloads from; used only when the Debian files are missing.
DOWNLOAD_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
CALIB_SEED = 20240601
CALIB_PER_CLASS = 100
SPLITS = ("train", "test", "calib")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Images `x` (float32 NHWC), labels `y` (int64, or None when unlabelled) and where they came from."""

    x: np.ndarray
    y: np.ndarray | None
    name: str

    def __len__(self) -> int:
        return len(self.x)

    def take(self, n: int | None) -> "Dataset":
        """The first `n` samples (all of them when `n` is None)."""
        if n is None or n >= len(self):
            return self
        return Dataset(self.x[:n], None if self.y is None else self.y[:n], f"{self.name}[:{n}]")

    def subset(self, idx, name: str) -> "Dataset":
        return Dataset(self.x[idx], None if self.y is None else self.y[idx], name)

    def with_x(self, x: np.ndarray) -> "Dataset":
        """The same samples with other inputs (e.g. through the input transform)."""
        return Dataset(x, self.y, self.name)

    def with_labels(self, y: np.ndarray) -> "Dataset":
        return Dataset(self.x, np.asarray(y, dtype=np.int64), self.name)


DEFAULT_TEST_FRACTION = 0.2


def split_indices(n: int, y: np.ndarray | None, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices, both sorted: per class when labelled (stratified), seeded.

    Each class gives round(test_fraction * its count) images to the test part, at least one when it has two
    or more, never all of them: every class is both learnt from and scored. Unlabelled data split as one class.
    """
    if not 0 < test_fraction < 1:
        raise DataError(f"Invalid value for `test_fraction`. Expected a float in (0, 1). "
                        f"Received: test_fraction={test_fraction}.")
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if y is None else [np.flatnonzero(y == c) for c in np.unique(y)]
    test = []
    for members in groups:
        k = int(round(test_fraction * len(members)))
        k = min(max(k, 1 if len(members) >= 2 else 0), len(members) - 1)
        test.append(rng.permutation(members)[:k])
    test = np.sort(np.concatenate(test)).astype(np.int64)
    train = np.setdiff1d(np.arange(n), test)
    if len(test) == 0 or len(train) == 0:
        raise DataError(f"Cannot split {n} image(s) into a fine-tuning part and a held-out test part: "
                        f"give more data, or separate files with --train-data.")
    return train, test


def split_dataset(ds: Dataset, test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0):
    """Split one data set into (fine-tuning/calibration part, held-out test part); see `split_indices`."""
    train, test = split_indices(len(ds), ds.y, test_fraction, seed)
    pct = f"{test_fraction:g}"
    return (ds.subset(train, f"{ds.name}[train part, test fraction {pct}, seed {seed}]"),
            ds.subset(test, f"{ds.name}[test part, test fraction {pct}, seed {seed}]"))


def _read_idx(path: Path) -> np.ndarray:
    """Read one gzipped IDX file (the MNIST format: magic, dims, big-endian uint8 data)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes.")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {data.size}.")
    return data.reshape(dims)


def _download(name: str) -> Path:
    """Fetch one IDX file into the cache (``$EDGE_LOWRANK_CACHE`` or ``~/.cache/edge-lowrank``), atomically."""
    import tempfile
    import urllib.request

    try:  # the project's one cache rule, when edge_lowrank is installed
        from edge_lowrank.paths import cache_dir

        cache = cache_dir("fashion-mnist")
    except ImportError:  # pragma: no cover - on a board with device_bench alone
        cache = Path(os.environ.get("EDGE_LOWRANK_CACHE") or Path.home() / ".cache" / "edge-lowrank") / "fashion-mnist"
        cache.mkdir(parents=True, exist_ok=True)
    path = cache / name
    if path.is_file():
        return path
    with urllib.request.urlopen(DOWNLOAD_URL + name, timeout=30) as resp:
        data = resp.read()
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=f".{name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


def _fashion_mnist_dir(data_dir=None) -> Path:
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_FASHION_MNIST_DIR)


def _load_raw_split(split: str, data_dir=None) -> tuple[np.ndarray, np.ndarray]:
    folder = _fashion_mnist_dir(data_dir)
    img_name, lbl_name = _FILES[split]
    if (folder / img_name).is_file() and (folder / lbl_name).is_file():
        return _read_idx(folder / img_name), _read_idx(folder / lbl_name)
    if not os.environ.get(OFFLINE_ENV):
        try:  # the files Keras' own loader downloads, cached; fails fast without internet
            return _read_idx(_download(img_name)), _read_idx(_download(lbl_name))
        except (OSError, DataError):
            pass
    raise DataError(
        f"Fashion-MNIST not found in {folder}: install Debian's package `dataset-fashion-mnist` "
        f"(apt-get install dataset-fashion-mnist) or set ${DATA_DIR_ENV} to a folder with the IDX files."
    )


def calibration_indices(labels: np.ndarray, per_class: int = CALIB_PER_CLASS, seed: int = CALIB_SEED):
    """Indices of the fixed calibration subset: the first `per_class` of each class in a seeded permutation."""
    order = np.random.default_rng(seed).permutation(len(labels))
    picked = [order[labels[order] == c][:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def load_fashion_mnist(split: str = "test", data_dir=None) -> Dataset:
    """Load one split of Fashion-MNIST: ``train``, ``test`` or ``calib``.

    Returns:
        A `Dataset` with x of shape (N, 28, 28, 1) float32 in [0, 1] and y int64.

    Raises:
        DataError: the split name is unknown, or the files are missing and cannot be downloaded.
    """
    if split not in SPLITS:
        raise DataError(f"Invalid Fashion-MNIST split. Expected one of {SPLITS}. Received: split={split!r}.")
    raw_split = "test" if split == "test" else "train"
    x, y = _load_raw_split(raw_split, data_dir)
    if split == "calib":
        idx = calibration_indices(y)
        x, y = x[idx], y[idx]
    x = (x.astype(np.float32) / 255.0)[..., None]
    return Dataset(x, y.astype(np.int64), f"fashion-mnist:{split}")


def load_npz(path) -> Dataset:
    """Load a user's ``.npz`` with ``x`` (N, H, W[, C]) and optional integer ``y`` (N,).

    Float arrays are used as they are (cast to float32); uint8 arrays are scaled to [0, 1] like Fashion-MNIST.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Data file {path} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:
        raise DataError(f"{path} is not a readable .npz file ({type(e).__name__}).") from None
    if "x" not in arrays:
        raise DataError(f"{path} has no array `x` (found: {sorted(arrays) or 'none'}); expected x and y.")
    x = arrays["x"]
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or len(x) == 0:
        raise DataError(f"Array `x` in {path} must have shape (N, H, W) or (N, H, W, C) with N > 0. "
                        f"Received: shape={x.shape}.")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    else:
        raise DataError(f"Array `x` in {path} must be float or uint8. Received: dtype={x.dtype}.")
    if not np.isfinite(x).all():
        raise DataError(f"Array `x` in {path} holds NaN or Inf values.")
    y = arrays.get("y")
    if y is not None:
        if not np.issubdtype(y.dtype, np.integer) or y.shape != (len(x),):
            raise DataError(f"Array `y` in {path} must be integer labels of shape ({len(x)},). "
                            f"Received: dtype={y.dtype}, shape={y.shape}.")
        y = y.astype(np.int64)
    return Dataset(x, y, str(path))


def load_dataset(spec: str, default_split: str = "test", data_dir=None) -> Dataset:
    """Load data from its spelling (see the module docstring).

    Args:
        spec: ``fashion-mnist``, ``fashion-mnist:SPLIT`` or a path to an ``.npz``.
        default_split: the split used for a bare ``fashion-mnist``.
    """
    spec = str(spec)
    if spec == "fashion-mnist":
        return load_fashion_mnist(default_split, data_dir)
    if spec.startswith("fashion-mnist:"):
        return load_fashion_mnist(spec.split(":", 1)[1], data_dir)
    if spec.endswith(".npz"):
        return load_npz(spec)
    raise DataError(f"Invalid data `{spec}`. Expected fashion-mnist, fashion-mnist:train|test|calib "
                    f"or a path to an .npz file.")
