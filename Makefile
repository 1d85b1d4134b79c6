# Every target installs what it needs into .venv first (Python 3.11, pip; torch comes from the local wheel cache).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The main job: show the search space and measure one sampled architecture at 32 px.
run: $(STAMP)
	$(BIN)/instanas space --resolution 32
	$(BIN)/instanas measure --resolution 32 --arch "$$($(BIN)/instanas sample --resolution 32 -n 1 --seed 0)"

## The unit tests (CPU, a few minutes).
test: $(STAMP)
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
