# The two commands of the README, and a few conveniences. Everything installs into .venv/.
#   make zoo    install sslzoo, then run the mini zoo end to end (results/tables/)
#   make test   install sslzoo with the test extras, then run the tests
#   make dag    draw the rule graph to docs/rulegraph.svg (needs graphviz)
#   make report the Snakemake HTML report of a finished run, results/report.html

VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: zoo test install install-test lint dag report clean-results

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

zoo: install
	snakemake --profile profiles/local

test: install-test
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
