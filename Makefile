# wsianon — two commands do everything:  make demo  |  make test
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.wsianon-installed
DEMO_OUT ?= demo-out

.PHONY: all venv demo test lint bench bench-peers clean sysdeps

all: test

sysdeps:
	@bash tools/ensure-system-deps.sh

$(STAMP): pyproject.toml setup.py wsianon/io/_markers.c
	@bash tools/ensure-system-deps.sh
	@if [ ! -x $(PY) ]; then \
	  PYBIN=$$(bash tools/find-python.sh) || exit 1; \
	  echo "creating $(VENV) with $$PYBIN"; \
	  "$$PYBIN" -m venv $(VENV) || exit 1; \
	fi
	@$(PY) -m pip install -qq --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install -qq --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# the package's bytecode, as a regular (non-editable) install compiles it: without it every wsianon
# process compiles ~90 modules from source (~0.2 s of CPU), since this project's environments set
# PYTHONDONTWRITEBYTECODE=1; incremental (only changed sources are compiled again)
venv: $(STAMP)
	@$(PY) -m compileall -q wsianon > /dev/null

demo: venv
	@echo "== wsianon demo: anonymizing the bundled Aperio sample (tests/data/CMU-1-Small-Region.svs)"
	@test -e $(DEMO_OUT).key || $(VENV)/bin/wsianon key init $(DEMO_OUT).key
	@$(VENV)/bin/wsianon run --target native tests/data/CMU-1-Small-Region.svs \
	    -o $(DEMO_OUT) --key-file $(DEMO_OUT).key --overwrite
	@echo "== outputs:             $(CURDIR)/$(DEMO_OUT)/"
	@echo "== verification report: $(CURDIR)/$(DEMO_OUT)/wsianon-report.json"
	@echo "== report to look at:   $(CURDIR)/$(DEMO_OUT)/wsianon-report.html (+ wsianon-certificate.json/.pdf)"
	@echo "== private mapping:     $(CURDIR)/$(DEMO_OUT).mapping.csv (outside the shareable folder)"
	@echo "== private review sheet: $(CURDIR)/$(DEMO_OUT).review.html (identifying: sources' labels and macros)"

# the suite runs in TEST_JOBS processes (pytest-xdist), a test file per process at a time (its
# module fixtures built once); measured on the 2-core CI machine: 27:12 in one process, 16:38 in two.
# Its temporary files go to this checkout's .pytest-tmp (emptied at the start of each run), not to
# /tmp/pytest-of-USER: there, every new pytest session deletes all but the 3 newest sessions'
# folders, so other pytest runs on the machine during a long `make test` deleted this run's module
# fixtures under it (a random late test failed, at stop 39 and 40)
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
test: venv lint
	@$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_JOBS) --dist loadfile --basetemp="$(CURDIR)/.pytest-tmp"

# import contracts (layers; the verifier never imports a redactor), lint + format, types: config in pyproject.toml
lint: venv
	@out=$$($(VENV)/bin/lint-imports --no-cache 2>&1) || { echo "$$out"; exit 1; }; echo "import contracts: kept"
	@$(VENV)/bin/ruff check -q wsianon tests benchmarks tools && $(VENV)/bin/ruff format -q --check wsianon tests benchmarks tools && echo "ruff: clean (lint + format)"
	@$(VENV)/bin/mypy --no-error-summary && echo "mypy: clean"

bench: venv
	@$(PY) benchmarks/run_all.py

# wsianon against PathSafe, dicognito and deid on the same planted slides (benchmarks/bench_peers.py);
# the peers get their own environment (.venv-peers), never wsianon's
PEERS := .venv-peers
bench-peers: venv
	@test -x $(PEERS)/bin/python || "$$(bash tools/find-python.sh)" -m venv $(PEERS)
	@$(PEERS)/bin/python -m pip install -qq --disable-pip-version-check 'pathsafe[dicom,openslide,convert]==2.0.4' dicognito==0.19.0 deid==0.4.13 openslide-bin
	@$(PY) benchmarks/bench_peers.py --peers-venv $(PEERS)

clean:
	rm -rf $(VENV) $(PEERS) .pytest-tmp $(DEMO_OUT) $(DEMO_OUT).key $(DEMO_OUT).mapping.csv $(DEMO_OUT).quarantine $(DEMO_OUT).review.html $(DEMO_OUT).wsianon-record.sqlite $(DEMO_OUT).wsianon-job.sqlite*
