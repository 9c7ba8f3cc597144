"""Data sets for every command; the loader itself is pure numpy and lives in `device_bench.datasets`."""

from device_bench.datasets import (  # noqa: F401
    FASHION_MNIST_CLASSES,
    Dataset,
    calibration_indices,
    load_dataset,
    load_fashion_mnist,
    load_npz,
    split_dataset,
)
