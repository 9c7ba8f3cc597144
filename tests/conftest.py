"""Shared test set-up: quiet, deterministic TensorFlow, and the repository root."""

import os
from pathlib import Path

import pytest

# Pin oneDNN off: Keras outputs differ slightly between oneDNN on and off (NOTES).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PYTHONHASHSEED", "0")

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
