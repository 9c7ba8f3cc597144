"""The benchmark scripts are files, not a package: load one by name as a module."""

import importlib.util

import pytest


@pytest.fixture
def load_bench(repo_root):
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, repo_root / "benchmarks" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load
