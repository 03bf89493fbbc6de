import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from retriever_service.app import create_app
from retriever_service.settings import RetrieverSettings
from shared.security import UnsafeSettings, check_deployment

KEY = "s3cret-key-0123456789"


@pytest.fixture
def client(tmp_path, encoder):
    settings = RetrieverSettings(qdrant_url=":memory:", data_dir=tmp_path, api_key=KEY)
    with TestClient(create_app(settings, encoder=encoder)) as c:
        yield c


def test_api_key_required_for_the_api(client):
    r = client.post("/v1/search", json={"query": "capital of France"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer" and r.json()["request_id"] == r.headers["x-request-id"]
    wrong = client.get("/v1/stats", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = client.get("/v1/stats", headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200


def test_health_readiness_and_metrics_stay_open(client):
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200, path


def test_unsafe_settings_refused_outside_development():
    with pytest.raises(UnsafeSettings, match="without an API key"):
        check_deployment("production", "0.0.0.0", None, {})
    with pytest.raises(UnsafeSettings, match="shorter"):
        check_deployment("production", "127.0.0.1", SecretStr("short"), {})
    with pytest.raises(UnsafeSettings, match="clear text"):
        check_deployment(
            "production", "127.0.0.1", SecretStr(KEY), {"Qdrant": ("http://qdrant.example:6333", SecretStr(KEY))}
        )
    check_deployment(
        "production", "0.0.0.0", SecretStr(KEY), {"Qdrant": ("https://qdrant.example:6333", SecretStr(KEY))}
    )
    check_deployment("development", "0.0.0.0", None, {})
    with pytest.raises(UnsafeSettings):
        create_app(RetrieverSettings(environment="production", host="0.0.0.0"))


def test_generator_passes_its_retriever_key(tmp_path, encoder):
    import httpx

    from generator_service.app import create_app as create_generator_app
    from generator_service.rag import RagGenerator
    from generator_service.settings import GeneratorSettings
    from tiny_lm import tiny_lm

    retriever = create_app(RetrieverSettings(qdrant_url=":memory:", data_dir=tmp_path, api_key=KEY), encoder=encoder)
    with TestClient(retriever) as r:
        fact = {"subject": "France", "relation": "capital", "object": "Paris"}
        assert (
            r.post("/v1/facts", json={"facts": [fact]}, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        )
        transport = httpx.ASGITransport(app=retriever)
        rag = RagGenerator(tiny_lm())
        for key, status in ((KEY, 200), ("wrong-key-0123456789", 502)):
            settings = GeneratorSettings(retriever_api_key=key, api_key=KEY, torch_threads=1)
            app = create_generator_app(settings, rag, retriever_transport=transport)
            with TestClient(app) as g:
                body = {"question": "What is the capital of France?", "max_new_tokens": 2}
                assert g.post("/v1/answer", json=body).status_code == 401
                got = g.post("/v1/answer", json=body, headers={"Authorization": f"Bearer {KEY}"})
                assert got.status_code == status, got.text


def test_env_example_lists_every_setting_with_its_default():
    import re
    from pathlib import Path

    from generator_service.settings import GeneratorSettings

    text = Path(__file__).parents[1].joinpath(".env.example").read_text()
    values = dict(re.findall(r"^(KGRAG_\w+)=(.*)$", text, re.M))  # the lines not commented out
    for cls, prefix in ((RetrieverSettings, "KGRAG_RETRIEVER_"), (GeneratorSettings, "KGRAG_GENERATOR_")):
        for name, field in cls.model_fields.items():
            key = f"{prefix}{name.upper()}"
            assert f"{key}=" in text, name
            assert key not in values or values[key] == str(field.default), key
