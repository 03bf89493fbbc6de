"""The OpenAPI documents state what the endpoints enforce (the fuzz tests check the responses)."""

import re

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter, ValidationError

from generator_service.app import create_app as create_generator_app
from generator_service.settings import GeneratorSettings
from retriever_service.app import create_app as create_retriever_app
from retriever_service.settings import RetrieverSettings
from shared.openapi import NON_BLANK_PATTERN, Count


def test_non_blank_pattern_is_what_strip_keeps():
    pattern = re.compile(NON_BLANK_PATTERN)
    assert all((pattern.fullmatch(chr(c)) is None) == chr(c).isspace() for c in range(0x3100))
    assert pattern.fullmatch("\ufeff")  # ECMA's \s has it, str.strip() keeps it


def test_counts_are_json_integers_from_one():
    adapter = TypeAdapter(Count)
    assert adapter.validate_json("5") == 5 and adapter.validate_json("5.0") == 5
    for value in ('"5"', "true", "5.5", "0"):
        with pytest.raises(ValidationError):
            adapter.validate_json(value)


def test_limits_from_settings_are_in_the_documents():
    retriever = create_retriever_app(RetrieverSettings(qdrant_url=":memory:", max_k=7, max_batch=3)).openapi()
    schemas = retriever["components"]["schemas"]
    assert {"type": "integer", "minimum": 1, "maximum": 7} in schemas["SearchRequest"]["properties"]["k"]["anyOf"]
    queries = schemas["BatchSearchRequest"]["properties"]["queries"]
    assert queries["maxItems"] == 3 and queries["items"] == {
        "type": "string",
        "pattern": NON_BLANK_PATTERN,
        "maxLength": 1000,
    }
    search = retriever["paths"]["/v1/search"]["post"]["responses"]
    assert search["422"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert "Retry-After" in search["429"]["headers"] and "Retry-After" in search["503"]["headers"]
    generator = create_generator_app(GeneratorSettings(max_beams=3, max_batch=5)).openapi()
    batch = generator["components"]["schemas"]["BatchAnswerRequest"]["properties"]
    assert batch["num_beams"]["maximum"] == 3 and batch["questions"]["maxItems"] == 5
    for request in ("AnswerRequest", "BatchAnswerRequest"):  # constrained decoding unless asked otherwise
        assert generator["components"]["schemas"][request]["properties"]["constrain"]["default"] is True
    metrics = generator["paths"]["/metrics"]["get"]["responses"]["200"]
    assert metrics["content"] == {"text/plain": {"schema": {"type": "string"}}}


def test_what_the_fuzzer_found(encoder):
    """A body that is not UTF-8 got FastAPI's {"detail": ...} (Starlette's HTTPException was not
    handled); "5" and true were taken for k; a whitespace in a fact that str.strip() removes but the
    documented pattern allowed."""
    settings = RetrieverSettings(qdrant_url=":memory:")
    with TestClient(create_retriever_app(settings, encoder=encoder)) as client:
        r = client.post("/v1/search", content=b'{"query": "\xff"}', headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
        for k, status in (("5", 422), (True, 422), (5.0, 200)):
            assert client.post("/v1/search", json={"query": "capital of France", "k": k}).status_code == status
        fact = {"subject": "France", "relation": "\x1c", "object": "Paris"}
        assert client.post("/v1/facts", json={"facts": [fact]}).status_code == 422
    assert re.fullmatch(NON_BLANK_PATTERN, "\x1c") is None
