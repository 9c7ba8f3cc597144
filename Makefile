# The two commands README.md promises: `make demo` and `make test`. Both set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/edge-lowrank
PYTEST_ARGS ?=
# OpenBLAS threads fight each other on a loaded 2-core machine (a 256x256 eigh ran ~20x slower): pin one.
TEST_ENV := TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0 OPENBLAS_NUM_THREADS=1 PYTHONHASHSEED=0

.PHONY: setup setup-test setup-arm demo test test-quick bench clean

setup:
	@bash scripts/setup.sh

setup-arm: setup
	@$(CLI) setup-arm

# ARM counts are part of the demo when QEMU can be set up; without it the run reports the host figures only.
demo: setup
	@$(CLI) setup-arm --quiet || echo "demo: ARM set-up failed (see above); the run skips ARM instruction counts"
	@$(CLI) run --out runs/demo

# The tests also exercise the optional Ray executor: they install the `ray` extra beside `dev`.
setup-test: setup
	@EXTRAS=dev,ray bash scripts/setup.sh

# Full suite, ARM (QEMU), ssh and TFLM tests included.
test: setup-test setup-arm
	@$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

# The quick subset: no slow, QEMU or ssh tests.
test-quick: setup-test
	@$(TEST_ENV) $(PY) -m pytest -m "not slow and not qemu and not ssh" $(PYTEST_ARGS)

clean:
	rm -rf runs .pytest_cache
