# Two entry points on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_OUT ?= out/demo
DEMO_MINUTES ?= 3

STUDIO_RUN ?= pretrained
STUDIO_STAMP := $(VENV)/.studio-stamp

.PHONY: install test test-fast demo studio bench clean

# torch is pinned and installed first: the CPU wheel on these machines. The package's own
# torch requirement is a range that 2.13.0 satisfies, so nothing bigger is pulled after it.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# two workers, one core each (tests/conftest.py sets one torch thread per worker)
test: install
	$(BIN)/python -m pytest -n 2

# the inner loop: no test marked slow (training beyond a few steps, kills, torchrun, fuzzing)
test-fast: install
	MTVAE_TEST_FAST=1 $(BIN)/python -m pytest -n 2 -m "not slow"

demo: install
	$(BIN)/mtvae demo --out $(DEMO_OUT) --minutes $(DEMO_MINUTES)

$(STUDIO_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[studio]'
	touch $(STUDIO_STAMP)

# the local web page (http://127.0.0.1:7860); STUDIO_RUN=runs/mine for another model
studio: $(STUDIO_STAMP)
	$(BIN)/mtvae studio $(STUDIO_RUN)

bench: install
	$(BIN)/python bench/prepare.py
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/generate_speed.py

clean:
	rm -rf $(VENV) out
