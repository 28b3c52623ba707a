# Two commands set everything up on a fresh machine: `make book` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PYTHONDONTWRITEBYTECODE :=
# One torch (OpenMP) thread per process while building and checking: these steps run several torch processes
# at once on few cores (pytest beside the book's kernels, two grading jobs, notebooks in kernels), where the
# threads of each spin against the others' (notebook_build.diagnosis_key: 4 s with one thread, 47 s with two on a
# busy 2-core machine). The grader's sandboxes run with one already (g2c/grading/worker.py). Set them to override.
book test pytest pytest-batch pytest-rest test-book-then-rest unit test-book release check-release: export OMP_NUM_THREADS ?= 1
book test pytest pytest-batch pytest-rest test-book-then-rest unit test-book release check-release: export MKL_NUM_THREADS ?= 1

.PHONY: book test lint unit bench notebook reset-notebook submit feedback clean
.PHONY: test-book release check-release bench-grading pytest pytest-batch pytest-rest test-book-then-rest formgrader

# The venv is rebuilt only when requirements.txt or pyproject.toml change. uv installs the pinned requirements
# (11 s from a cold cache where pip took 60 s: it fetches in parallel), from the same wheels pip would see
# (PIP_FIND_LINKS: this machine's CPU torch); pip is the fallback wherever uv cannot run.
# Python writes bytecode as it does by default, each module when it is first imported, even where the machine sets
# PYTHONDONTWRITEBYTECODE: without it every process compiled what it imported (`import torch`: 2.9 s, not 1.3), and
# compiling the whole venv at install instead took 20 s.
UV_VERSION := 0.13.9
ifdef PIP_FIND_LINKS
export UV_FIND_LINKS ?= $(PIP_FIND_LINKS)
endif
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q uv==$(UV_VERSION) 2> >(grep -v 'is ignored: it is neither' >&2) \
	  && $(BIN)/uv pip install --python $(PY) -q -r requirements.txt \
	  || $(PY) -m pip install -q -r requirements.txt 2> >(grep -v 'is ignored: it is neither' >&2)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . 2> >(grep -v 'is ignored: it is neither' >&2)
	touch $@

## book: build the HTML book into _build/html (no warning allowed)
book: $(STAMP)
book: _build/vendor/.fetched
book: _build/.figures-code
	$(BIN)/jupyter-book build . --all -W --keep-going

## test: every check: lint, release in sync, unit tests, pitfall mutants, autograding round trip, the book in a browser
# Two loads side by side: the graded class (pytest-batch, two grading workers) and, one after the other, the book
# with its browser checks and the other tests (pytest-rest, mostly one process at a time). A third load at once
# slowed every sandboxed run three- to fourfold and pushed the fork bomb's past its 50 s limit.
# chromium first: the graded class's load opens formgrader in it too (tests/test_formgrader_browser.py)
test: $(STAMP) /usr/bin/chromium
	$(MAKE) lint
	$(MAKE) check-release
	$(MAKE) -j2 --output-sync=target pytest-batch test-book-then-rest

# the other tests run even when a book check failed; the target fails if either did. Each load says how long it took:
# they should end together (move a module between them with its `batch` mark).
test-book-then-rest: $(STAMP)
	status=0; $(MAKE) test-book || status=1; $(MAKE) pytest-rest || status=1; \
	  echo "book, its checks and the other tests: $$SECONDS s"; exit $$status

## pytest: every test of tests/ (the book's own checks skip: they need `make test-book`), in two pytests side by side
pytest: $(STAMP)
	$(MAKE) -j2 --output-sync=target pytest-batch pytest-rest

# The modules that run `g2c autograde` (`-m batch`: the shared class of about 70 sandboxed submissions, the course flow,
# the second assignment, Dask)
# and the other tests (mostly one process at a time: kernels, nbgrader's commands); each lists its slowest tests.
pytest-batch: $(STAMP)
	$(PY) -m pytest -q -m batch --durations=10; status=$$?; echo "graded class and grading runs: $$SECONDS s"; exit $$status

pytest-rest: $(STAMP)
	$(PY) -m pytest -q -m "not batch" --durations=20

## unit: the inner loop: every test but the slow ones (sandboxed grading, real kernels), in about a minute
# On every core (pytest-xdist); worksteal: a few modules' fixtures train runs for seconds, and an idle worker takes
# tests from a busy one.
unit: $(STAMP)
	$(PY) -m pytest -q -m "not slow" -n auto --dist worksteal

## lint: ruff over every Python file and notebook source, and the layer contracts (rules in pyproject.toml)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

## bench: time AdamW.step and clip_grad_norm_ against torch in one process
bench: $(STAMP)
	$(PY) tests/benchmarks/bench_optim.py
	$(PY) tests/benchmarks/bench_runs.py
	$(PY) tests/benchmarks/bench_widgets.py

## bench-grading: g2c autograde --jobs 2 against stock sequential nbgrader autograde on the same submissions
bench-grading: $(STAMP)
	$(PY) tests/benchmarks/bench_grading.py $(or $(N),8)

## notebook: open your exercise notebook (student/<assignment>/) in Jupyter, instructor tools hidden; e.g. ARGS="--port 8890 --no-browser"
# ASSIGNMENT names one when the course has several; ARGS go to `g2c notebook` (`g2c notebook --help`).
notebook: $(STAMP)
	$(BIN)/g2c notebook $(ASSIGNMENT) $(ARGS)

## formgrader: the course's Jupyter server for hand grading (formgrader's pages under a Content-Security-Policy), on 127.0.0.1
formgrader: $(STAMP)
	$(BIN)/g2c formgrader

## reset-notebook: archive your notebook under a timestamped name and start from a fresh copy
reset-notebook: $(STAMP)
	$(BIN)/g2c reset-notebook $(ASSIGNMENT)

## submit: submit your workspace (student/<assignment>/, as saved) through the course's nbgrader exchange
submit: $(STAMP)
	$(BIN)/g2c submit $(ASSIGNMENT)

## feedback: fetch the feedback released for your submissions into student/<assignment>/feedback/
feedback: $(STAMP)
	$(BIN)/g2c feedback $(ASSIGNMENT)

## test-book: build the book (-W), then check it in headless chromium (offline, axe-core WCAG 2.1 AA, keyboard) and for published solutions
BOOK_CHECKS = G2C_TEST_BOOK=1 $(PY) -m pytest -q tests/test_book_browser.py tests/test_book_solutions.py tests/test_book_content.py \
	tests/test_book_labels.py tests/test_book_glossary.py tests/test_book_legibility.py tests/test_book_tryit.py
test-book: book /usr/bin/chromium
	$(BOOK_CHECKS)

# The browser tests drive Debian's chromium (playwright cannot download its own here).
/usr/bin/chromium:
	apt-get update -qq && apt-get install -y -qq chromium >/dev/null

# MathJax, require.js and the widget manager from the npm registry, served by the book itself.
_build/vendor/.fetched: book/_vendor/fetch.sh $(wildcard book/_vendor/widgets-*.js)
	bash book/_vendor/fetch.sh _build/vendor

# The execution cache keys on the chapters' cells only: drop it when the code they run changes.
_build/.figures-code: book/_figures.py $(wildcard g2c/training/*.py g2c/data/*.py g2c/nn/*.py g2c/widgets/*.py)
	rm -rf _build/.jupyter_cache && mkdir -p _build && touch $@

clean:
	rm -rf _build

## release: regenerate every assignment's source notebook (from its folder of data and g2c) and its student kit in release/ (nbgrader)
release: $(STAMP)
	$(PY) -m g2c.grading.notebook_build --release

## check-release: regenerate, then fail if source_notebooks/ or release/ differ from what is committed
check-release: release
	git diff --exit-code --stat -- release source_notebooks
	test -z "$$(git status --porcelain --untracked-files=all -- release source_notebooks)"
