# Every target sets up .venv first, so one command is enough on a fresh machine.
# torch is pinned and installed before anything else: an unpinned torch pulls several GB of
# CUDA packages from PyPI, while 2.13.0 resolves to the CPU build available locally.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0
STAMP := $(VENV)/.installed-$(TORCH)

.PHONY: venv test demo bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/imse demo --out demo-output

# The benchmark's peers (itk-elastix) come with the bench extra, installed once.
$(VENV)/.installed-bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(PY) Testing/bench/run.py --out bench-output

clean:
	rm -rf $(VENV) demo-output bench-output test-output
