# The two commands of README.md: `make run` (main job, embedded default) and `make test`.
# Both create the virtual environment first if it is missing or older than pyproject.toml.

PYTHON ?= python3
VENV   ?= .venv
CORES  ?= all
# torch is installed first and pinned, so that pip never pulls a CUDA build on a CPU
# machine. On a GPU node give the CUDA wheel index, e.g.
#   make run TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH_INDEX ?=

BIN := $(VENV)/bin

.PHONY: run test test-fast setup lint clean figures report plan robustness

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q torch==2.13.0 -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

# TARGET: all (default: the config's studies and the summary), study_a or study_b
TARGET ?=

run: setup
	$(BIN)/snakemake --cores $(CORES) $(TARGET)

# snakefmt: the Snakefile and rules/*.smk as snakefmt writes them (black for their Python)
test: setup
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/lint-imports
	$(BIN)/snakemake --lint --cores 1
	$(MAKE) -s test-fast
	$(BIN)/pytest -q -rs --durations=10 -m slow

# the unit tests alone, two at a time at one torch thread each (pytest-xdist): not the
# end-to-end runs (pytest marker `slow`), which run one at a time, each on both cores
test-fast: setup
	OMP_NUM_THREADS=1 $(BIN)/pytest -q -rs --durations=10 -m "not slow" -n auto --dist worksteal

# Figures and the HTML report from finished results alone: only the figure rules run
# (the tables they read must exist; nothing upstream is recomputed).
FIGURE_RULES := $(shell sed -n 's/^ *rule \(figures\{0,1\}_[a-z0-9_]*\):/\1/p' rules/*.smk)
REPORT ?= results/report.html
SMK_ARGS ?=

figures:
	$(BIN)/snakemake --cores $(CORES) --forcerun $(FIGURE_RULES) --allowed-rules all $(FIGURE_RULES) $(SMK_ARGS)

report:
	$(BIN)/snakemake --report $(REPORT) $(SMK_ARGS)

# The bill before submitting: jobs and SLURM jobs per rule, GPU-hours and peak GPU memory
# (`vermem plan`, vermem.workflow.plan; memory model and benchmarks/throughput.json), e.g.
#   make plan CONFIG=config/pythia.yaml        (PLAN_ARGS='--device cpu', '--profile none')
CONFIG ?= config/config.yaml
PLAN_ARGS ?=

plan: setup
	$(BIN)/vermem plan --configfile $(CONFIG) $(PLAN_ARGS)

# Study A over 3 organism training seeds x 3 split seeds (config/robustness.yaml): the
# claims by seed and their agreement in results/robustness/summary.md (docs/running.md)
ROBUSTNESS ?= config/robustness.yaml

robustness: setup
	$(BIN)/vermem robustness --configfile $(ROBUSTNESS) --cores $(CORES)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/lint-imports
	$(BIN)/snakemake --lint --cores 1

clean:
	rm -rf results logs .snakemake
