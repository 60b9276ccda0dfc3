# The two commands of the README, and a few conveniences. Everything installs into .venv/.
#   make zoo    install sslzoo, then run the mini zoo end to end (results/tables/)
#   make zoo-all   the same with every method of the zoo and the comparison page (config/mini-all.yaml)
#   make test   install sslzoo with the test extras and the parity side environment, then run the tests
#   make parity-env  the reference implementations the parity tests compare against (.venv-parity/)
#   make dag    draw the rule graph to docs/rulegraph.svg (needs graphviz)
#   make report the Snakemake HTML report of a finished run, results/report.html

VENV ?= .venv
PARITY ?= .venv-parity
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export SSLZOO_PARITY_ENV := $(abspath $(PARITY))

.PHONY: zoo zoo-all test install install-test parity-env lint dag report clean-results

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# The side environment of tests/parity, from PyPI, never committed: the wheels of
# tests/parity/reference.txt unpacked into unpacked/ (their scripts are run and loaded by file
# path); tests/parity/requirements.txt installed with --no-deps into site/ (used in the test
# process on top of .venv's torch: no second torch); tests/parity/requirements-scripts.txt into
# scripts/ (for the reference scripts' processes). .complete is written last.
PARITY_PINS := tests/parity/reference.txt tests/parity/requirements.txt tests/parity/requirements-scripts.txt

$(PARITY)/.complete: $(PARITY_PINS) $(VENV)/.installed
	rm -rf $(PARITY)
	mkdir -p $(PARITY)/wheels $(PARITY)/unpacked
	$(BIN)/python -m pip download --quiet --no-deps --dest $(PARITY)/wheels -r tests/parity/reference.txt
	for wheel in $(PARITY)/wheels/*.whl; do $(BIN)/python -m zipfile -e "$$wheel" $(PARITY)/unpacked || exit 1; done
	$(BIN)/python -m pip install --quiet --no-deps --target $(PARITY)/site -r tests/parity/requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --target $(PARITY)/scripts -r tests/parity/requirements-scripts.txt
	rm -rf $(PARITY)/wheels
	cp $(PARITY_PINS) $(PARITY)/
	touch $@

parity-env: $(PARITY)/.complete

zoo: install
	snakemake --profile profiles/local

zoo-all: install
	snakemake --profile profiles/local --configfile config/mini.yaml config/mini-all.yaml

test: install-test parity-env
	ruff check src tests bench
	snakemake --lint
	pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; \
	exit $$status

dag: install
	snakemake --profile profiles/local --rulegraph | dot -Tsvg > docs/rulegraph.svg

report: install
	snakemake --profile profiles/local --report results/report.html

clean-results:
	rm -rf results logs .snakemake/metadata
