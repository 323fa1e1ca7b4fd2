# Two commands on a fresh machine: `make demo` and `make test`. Each sets up .venv first.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean

venv: $(STAMP)

# torch==2.13.0 is the CPU build the dev machines keep on disk; install it only when no torch is
# importable, so a machine that already has a (CUDA) torch keeps it.
$(STAMP): pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -c "import torch" 2>/dev/null || $(VPY) -m pip install -q torch==2.13.0
	$(VPY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check cosmos_t2 tests scripts
	$(VENV)/bin/ruff format --check cosmos_t2 tests scripts
	$(VENV)/bin/snakefmt --check workflow/

test: $(STAMP)
	$(MAKE) lint
	# Three workers on CI's two cores: a third of the suite's time is spent waiting (on SLURM's status
	# polls, Snakemake's latency checks, servers starting), not computing (2026-12-08: 24.5 CPU-minutes
	# in 18 minutes of make test on 2 cores with -n 2).
	$(VENV)/bin/pytest -q -m "not slow and not gpu" -n 3 --timeout 900 --durations=25
	# The same-bytes promises once more with two threads per process (conftest pins one): a result that
	# follows the thread count fails here.
	OMP_NUM_THREADS=2 $(VENV)/bin/pytest -q -m "determinism and not slow and not gpu" -p no:cacheprovider --timeout 900

# The default sweep (config/config.yaml: the bundled robot example, tiny model, CPU) -> results/report.html.
# `--quiet rules host` leaves Snakemake's progress and errors but not a block per job (~450 lines); the last
# three lines say what was made, what it is and where the report is.
demo: $(STAMP)
	$(VENV)/bin/snakemake --profile profiles/local --quiet rules host
	@$(VPY) -m cosmos_t2.report.summary results results/report.html

clean:
	rm -rf $(VENV) results .snakemake
