# Every target installs what it needs into .venv first (Python 3.11, pip; torch comes from the local wheel cache), with
# the ONNX Runtime and OpenVINO extras, so that the backends' tests run, and the MNIST digits of cluttered MNIST.
# --no-compile: Python compiles the modules it imports when it first imports them, instead of pip compiling every file
# of torch and the rest at install (half the install's CPU time here: 35 s of user time against 63 s). That needs
# Python to keep what it compiled: this machine's environment sets PYTHONDONTWRITEBYTECODE=1, under which every new
# process compiled torch, scipy and the rest again (importing the CLI: 8.1 s of user time, 2.8 s from bytecode; the
# tests start about twenty processes), so every target here lets Python write the bytecode of what it imports.
export PYTHONDONTWRITEBYTECODE :=
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# pytest-benchmark: the baseline is committed under bench/baseline/<machine-id>/. A check fails when a benchmark's
# median, divided by the change of the machine-speed probe timed beside it, is more than 1.5x the baseline's
# (a 2x slowdown fails; this shared machine's 3x speed swings do not). See bench/check.py.
# Warm-up: 20 calls (pytest-benchmark's default, 100,000 calls, warms up for another 2 × max-time per benchmark, half a
# minute of CI for minima that the first calls do not set).
BENCH := $(BIN)/python -m pytest bench -q --benchmark-only --benchmark-storage=file://bench/baseline \
	--benchmark-min-rounds=5 --benchmark-max-time=0.5 --benchmark-warmup=on --benchmark-warmup-iterations=20 \
	--benchmark-sort=fullname \
	--benchmark-columns=min,median,iqr,rounds
MAX_SLOWDOWN ?= 1.5

.PHONY: run test install clean bench-check bench-baseline

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-compile -e ".[dev,onnx,openvino,mnist]"
	touch $(STAMP)

install: $(STAMP)

## The main job, small: profile this CPU at 32 px, calibrate the LUT on 300 children, validate it on 300 others
## (agreement table and scatter plot), waiting at most a minute per step for the machine's speed. The full job is the
## same three commands with their defaults (1,000 calibration children, 10,000 validated, 30 minutes' wait).
MAIN_JOB := build/main-job
run: $(STAMP)
	rm -rf $(MAIN_JOB)
	INSTANAS_LUT_DIR=$(MAIN_JOB)/lut $(BIN)/instanas profile --resolution 32 --rounds 2
	INSTANAS_LUT_DIR=$(MAIN_JOB)/lut $(BIN)/instanas calibrate --resolution 32 -n 300 --wait-for-speed 1 --out $(MAIN_JOB)/calibrate-32
	INSTANAS_LUT_DIR=$(MAIN_JOB)/lut $(BIN)/instanas correlate --resolution 32 -n 300 --wait-for-speed 1 --out $(MAIN_JOB)/correlate-32

## The linter (ruff, configured in pyproject.toml), then the unit tests (CPU, a few minutes): two workers, one core
## each, by test file; then the tests that assert on measured speed (marked `timing`), alone on the machine. Both
## runs share one folder of session fixtures (the tiny profile and training run), removed at the end.
test: $(STAMP)
	$(BIN)/ruff check .
	fixtures=$$(mktemp -d) && trap 'rm -rf "$$fixtures"' EXIT && export INSTANAS_TEST_FIXTURES="$$fixtures" && \
	$(BIN)/python -m pytest -q --durations=10 -n 2 --dist loadfile -m "not timing" tests && \
	$(BIN)/python -m pytest -q --durations=5 -m timing tests

## Re-run the benchmarks, show them beside the committed baseline, and fail naming any benchmark past MAX_SLOWDOWN.
bench-check: $(STAMP)
	mkdir -p build
	$(BENCH) --benchmark-compare --benchmark-json=build/bench-current.json
	$(BIN)/python bench/check.py build/bench-current.json --max-slowdown $(MAX_SLOWDOWN)

## Replace the committed baseline with a fresh run on this machine (commit bench/baseline afterwards).
bench-baseline: $(STAMP)
	rm -rf bench/baseline
	$(BENCH) --benchmark-save=baseline

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
