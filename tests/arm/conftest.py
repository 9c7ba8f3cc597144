"""Fixtures of the ARM (QEMU) tests: the committed models and one emulated run per (model, profile).

Emulation is slow, so each (model, profile) runs once per session and the tests share the result; the
determinism test runs its second run itself. `make test` runs `edge-lowrank setup-arm` first; without it
the QEMU tests fail with the one line that says how to set it up.
"""

from pathlib import Path

import pytest

from device_bench.results import BenchParams

FIXTURES = Path(__file__).parent / "fixtures"
# One warm-up and two timed invokes: every invoke is counted, and the steady ones must agree.
PARAMS = BenchParams(num_runs=2, warmup_runs=1, min_secs=0.0, warmup_min_secs=0.0, timeout_s=300.0)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def bench_params() -> BenchParams:
    return PARAMS


@pytest.fixture(scope="session")
def qemu_ready():
    from device_bench import qemu

    ok, reason = qemu.available()
    if not ok:
        pytest.fail(reason, pytrace=False)
    return qemu


@pytest.fixture(scope="session")
def qemu_run(qemu_ready):
    """`qemu_run(model_name, profile)` -> BenchResult, cached for the session."""
    cache = {}

    def run(model: str, profile: str):
        key = (model, profile)
        if key not in cache:
            cache[key] = qemu_ready.run_qemu(FIXTURES / model, profile, PARAMS)
        return cache[key]

    return run
