"""Both services as real processes on loopback, over HTTP, with the real models (slow).

The demo KG is loaded by the ingest CLI, the retriever and generator are started by the native
launcher's `ServiceProcess`, and the retriever is killed and restarted under the generator.
"""

import subprocess
import sys
import time

import httpx
import pytest

from shared.launcher import ServiceProcess

pytestmark = pytest.mark.slow
QUESTION = {"question": "What is the capital of France?", "k": 5}


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    data = tmp_path_factory.mktemp("demo")
    logs = tmp_path_factory.mktemp("logs")
    subprocess.run(
        [sys.executable, "-m", "retriever_service.ingest_cli", "--data-dir", str(data), "demo"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    retriever = ServiceProcess(
        "retriever_service", 18501, {"KGRAG_RETRIEVER_DATA_DIR": str(data)}, logs / "retriever.log"
    ).start()
    retriever.wait_ready()
    generator = ServiceProcess(
        "generator_service",
        18500,
        {"KGRAG_GENERATOR_RETRIEVER_URL": retriever.url, "KGRAG_GENERATOR_RETRIEVER_READ_TIMEOUT_S": "5"},
        logs / "generator.log",
    ).start()
    generator.wait_ready(timeout_s=300)
    yield retriever, generator
    generator.stop()
    retriever.stop()


def test_capital_of_france_over_http(services):
    _, generator = services
    r = httpx.post(f"{generator.url}/v1/answer", json=QUESTION, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answer"] == "Paris"
    top = max(body["facts"], key=lambda f: f["posterior"])
    assert top["text"] == "France capital Paris" and top["posterior"] > 0.5
    assert [a["name"] for a in body["answers"]] == ["Paris"]
    assert r.headers["x-request-id"]


GERMANY_NEIGHBOURS = {
    "Austria",
    "Belgium",
    "Czech Republic",
    "Denmark",
    "France",
    "Luxembourg",
    "Netherlands",
    "Poland",
    "Switzerland",
}


def test_chain_list_and_not_in_the_graph_questions_over_http(services):
    """The quickstart's multi-hop questions on the demo KG, whose chain prior was fitted on its own questions."""
    _, generator = services

    def ask(question: str) -> dict:
        r = httpx.post(f"{generator.url}/v1/answer", json={"question": question}, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    chain = ask("What is the capital of the country whose currency is the yen?")
    assert chain["answer"] == "Tokyo" and chain["answers"][0]["name"] == "Tokyo"
    top = max(chain["paths"], key=lambda p: p["posterior"])
    assert [s["entity"] for s in top["steps"]] == ["Japan", "Tokyo"] and top["chain"] == "currency^-1/capital"
    neighbours = ask("Which countries border Germany?")
    assert {a["name"] for a in neighbours["answers"]} == GERMANY_NEIGHBOURS and neighbours[
        "answer"
    ] in GERMANY_NEIGHBOURS
    absent = ask("Who is the president of France?")
    assert absent["answer"] is None and absent["answers"] == [] and "France" in absent["note"]


def test_retriever_killed_then_restarted(services):
    retriever, generator = services
    retriever.stop(sig=9)
    start = time.monotonic()
    r = httpx.post(f"{generator.url}/v1/answer", json=QUESTION, timeout=30)
    assert r.status_code == 503 and r.json()["error"]["code"] == "retriever_unavailable"
    assert time.monotonic() - start < 5
    assert httpx.get(f"{generator.url}/readyz", timeout=10).status_code == 503
    retriever.start().wait_ready()
    restarted = time.monotonic()
    while time.monotonic() - restarted < 10:
        r = httpx.post(f"{generator.url}/v1/answer", json=QUESTION, timeout=60)
        if r.status_code == 200:
            break
        time.sleep(0.5)
    assert r.status_code == 200 and r.json()["answer"] == "Paris"
    assert httpx.get(f"{generator.url}/readyz", timeout=10).status_code == 200
