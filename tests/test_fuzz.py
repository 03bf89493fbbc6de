"""Schemathesis against both apps' OpenAPI specs, in-process (ASGI): valid and invalid requests
generated from the schemas; no 5xx, every status documented, every response body and content
type as its schema says. The retriever stores in memory with the real MiniLM; the generator runs
the tiny random Llama and reaches its own retriever app through httpx.ASGITransport.

The default suite runs a few cases per operation and mode; `-m slow` runs many more. Each test
asserts that every operation had cases checked in each of its modes (a schema that yields no
operation, or a strategy that yields no case, fails), and prints the number of cases checked.
"""

from collections import Counter

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi

from generator_service.app import create_app as create_generator_app
from generator_service.rag import RagGenerator
from generator_service.settings import GeneratorSettings
from retriever_service.app import create_app as create_retriever_app
from retriever_service.settings import RetrieverSettings
from tiny_lm import tiny_lm

FACTS = [
    {"subject": "France", "relation": "capital", "object": "Paris"},
    {"subject": "Germany", "relation": "capital", "object": "Berlin"},
    {"subject": "France", "relation": "borders", "object": "Spain"},
]
HEALTH_OPERATIONS = ("GET /healthz", "GET /readyz", "GET /metrics")
RETRIEVER_OPERATIONS = {
    "POST /v1/search",
    "POST /v1/search/batch",
    "POST /v1/facts",
    "DELETE /v1/facts",
    "GET /v1/stats",
    *HEALTH_OPERATIONS,
}
GENERATOR_OPERATIONS = {"POST /v1/answer", "POST /v1/answer/batch", "POST /v1/score", *HEALTH_OPERATIONS}
COMMON = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
FAST = settings(max_examples=6, **COMMON)
THOROUGH = settings(max_examples=60, **COMMON)  # keeps `make test-slow` under 10 minutes
# schemathesis' default statuses for rejected invalid data, and 413: a list over its maxItems can be
# over the body-size limit too, which the middleware checks first
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5xx"]
            }
        }
    }
)


def _retriever_app(tmp_path_factory, encoder):
    settings_ = RetrieverSettings(qdrant_url=":memory:", data_dir=tmp_path_factory.mktemp("fuzz"), max_k=10)
    return create_retriever_app(settings_, encoder=encoder)


@pytest.fixture(scope="module")
def retriever_api(tmp_path_factory, encoder):
    app = _retriever_app(tmp_path_factory, encoder)
    with asgi.get_client(app) as client:  # starts the lifespan schemathesis will use
        assert client.post("/v1/facts", json={"facts": FACTS}).status_code == 200
    yield schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
def generator_api(tmp_path_factory, encoder):
    """Small limits keep each generated request cheap; the limits themselves are fuzzed all the same."""
    with TestClient(_retriever_app(tmp_path_factory, encoder)) as retriever:
        assert retriever.post("/v1/facts", json={"facts": FACTS}).status_code == 200
        limits = GeneratorSettings(
            torch_threads=1,
            batch_wait_ms=0,
            max_k=4,
            default_k=2,
            max_new_tokens=4,
            default_max_new_tokens=2,
            max_beams=2,
            max_batch=3,
            answer_timeout_s=30,
        )
        app = create_generator_app(
            limits, RagGenerator(tiny_lm()), retriever_transport=httpx.ASGITransport(app=retriever.app)
        )
        yield schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
        asgi.shutdown_lifespans()


def _fuzz(schema, budget: settings) -> Counter:
    """Every operation with valid data, and those that take input with invalid data too; returns the
    cases checked per (operation, mode), after asserting that every one of those pairs had some."""
    planned, checked = set(), Counter()
    for operation in (result.ok() for result in schema.get_all_operations()):
        takes_input = bool(operation.body) or next(operation.iter_parameters(), None) is not None
        for mode in GenerationMode if takes_input else [GenerationMode.POSITIVE]:
            planned.add((operation.label, mode.value))
            _check_cases(budget, operation.as_strategy(generation_mode=mode), (operation.label, mode.value), checked)
    assert planned and set(checked) == planned, f"no case checked for {sorted(planned - set(checked))}"
    return checked


def _check_cases(budget: settings, strategy, key: tuple[str, str], checked: Counter) -> None:
    """Call and validate each case the strategy draws, within the budget; count under key those that passed."""

    @budget
    @given(case=strategy)
    def check(case) -> None:
        case.call_and_validate()
        checked[key] += 1  # counted once its response passed every check

    check()


def _report(capsys, service: str, checked: Counter, operations: set[str]) -> None:
    """Print the cases checked per operation; the service's known operations must be among them."""
    per_operation = Counter()
    for (label, _), count in checked.items():
        per_operation[label] += count
    assert operations <= set(per_operation), sorted(operations - set(per_operation))
    with capsys.disabled():
        print(
            f"\nschemathesis, {service}: {sum(checked.values())} cases over {len(per_operation)} operations "
            f"{dict(per_operation)}"
        )


def test_retriever_api(retriever_api, capsys):
    _report(capsys, "retriever", _fuzz(retriever_api, FAST), RETRIEVER_OPERATIONS)


def test_generator_api(generator_api, capsys):
    _report(capsys, "generator", _fuzz(generator_api, FAST), GENERATOR_OPERATIONS)


@pytest.mark.slow
def test_retriever_api_thorough(retriever_api, capsys):
    _report(capsys, "retriever", _fuzz(retriever_api, THOROUGH), RETRIEVER_OPERATIONS)


@pytest.mark.slow
def test_generator_api_thorough(generator_api, capsys):
    _report(capsys, "generator", _fuzz(generator_api, THOROUGH), GENERATOR_OPERATIONS)
