"""The corpus builders live in tests/corpus/models.py, shared with benchmarks/bench_corpus.py: load them by
path (tests/ is not a package) and build each model once per session."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def load_corpus():
    name = "edge_lowrank_corpus_models"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("models.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # dataclasses look their module up while the file runs
        spec.loader.exec_module(mod)
    return sys.modules[name]


load_corpus()  # before the test modules import it by name


@pytest.fixture(scope="session")
def corpus():
    return load_corpus()


@pytest.fixture(scope="session")
def built(corpus):
    """name -> model, built on first use and kept for the session (the applications take seconds each)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = corpus.build(name)
        return cache[name]

    return get
