# Every target sets up .venv first, so one command is enough on a fresh machine.
# torch is pinned and installed before anything else: an unpinned torch pulls several GB of
# CUDA packages from PyPI, while 2.13.0 resolves to the CPU build available locally.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0
STAMP := $(VENV)/.installed-$(TORCH)

ANTS_VENV := .venv-ants
ANTS := antspyx==0.6.3

.PHONY: venv test demo bench ants clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# The tests check the benchmark's peers too (elastix, ANTs), so they install them.
test: $(VENV)/.installed-bench ants
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/imse demo --out demo-output

# The benchmark's peers (itk-elastix) come with the bench extra, installed once.
$(VENV)/.installed-bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $@

# ANTs, the other peer, gets an environment of its own: antspyx 0.6.3 pins numpy < 2.4 and
# scipy < 1.16, which would downgrade ours. The benchmark runs it there as a subprocess.
ants: $(ANTS_VENV)/.installed-$(ANTS)

$(ANTS_VENV)/.installed-$(ANTS):
	test -x $(ANTS_VENV)/bin/python || $(PYTHON) -m venv $(ANTS_VENV)
	$(ANTS_VENV)/bin/python -m pip install --quiet $(ANTS)
	touch $@

bench: $(VENV)/.installed-bench ants
	$(PY) Testing/bench/run.py --out bench-output

clean:
	rm -rf $(VENV) $(ANTS_VENV) demo-output bench-output test-output
