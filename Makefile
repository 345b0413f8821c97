# Every target installs what it needs into .venv; nothing is installed by hand.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_ARGS ?=
BENCH_ARGS ?=

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml requirements/cpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements/cpu.txt
	$(PY) -m pip install -q -e '.[test]'
	# One-time cost at install, not in a timed run: build the fused C++ kernels now.
	$(PY) -m descentlab.optim.fused
	touch $(STAMP)

install: $(STAMP)

# The main job on its default: the classic optimizers compared on MNIST-1D (CNN), 3 seeds
# each, so that the verdict is tested against seed-to-seed variation; one run per core at once.
demo: $(STAMP)
	$(VENV)/bin/descentlab compare --overwrite --seeds 3 $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

# BENCH_ARGS=--muon also times muon (minutes on a CPU without native bfloat16).
bench: $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) benchmarks/trainer_overhead.py
	$(PY) benchmarks/optimizer_step.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
