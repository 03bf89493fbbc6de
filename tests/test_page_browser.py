"""The page at `/` in headless Chromium against both services as real processes (slow).

Debian's Chromium (/usr/bin/chromium, `apt-get install chromium`) driven by Playwright for Python;
no browser is downloaded. The demo KG is loaded and the services started as in test_end_to_end.py.
The quickstart question goes through the real services; error replies and the multi-hop reply shape
(answer sets, relation paths) are served to the page by Playwright's request routing, since they
depend on the service's state or on fields not every model returns.

A screenshot of the answered quickstart question is saved to the path in KGRAG_PAGE_SCREENSHOT
when it is set (`KGRAG_PAGE_SCREENSHOT=docs/page.png` refreshes the README's picture).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.launcher import ServiceProcess

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QUESTION = "What is the capital of France?"
FIRST_ANSWER_MS = 180_000  # the first answer includes the model's warm-up on a slow CPU

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: `apt-get install chromium` (make test-slow tries)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    data = tmp_path_factory.mktemp("demo")
    logs = tmp_path_factory.mktemp("logs")
    subprocess.run(
        [sys.executable, "-m", "retriever_service.ingest_cli", "--data-dir", str(data), "demo"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    retriever = ServiceProcess(
        "retriever_service", 18521, {"KGRAG_RETRIEVER_DATA_DIR": str(data)}, logs / "retriever.log"
    ).start()
    generator = ServiceProcess(
        "generator_service", 18520, {"KGRAG_GENERATOR_RETRIEVER_URL": retriever.url}, logs / "generator.log"
    )
    try:
        retriever.wait_ready()
        generator.start().wait_ready(timeout_s=300)
        yield generator
    finally:
        generator.stop()
        retriever.stop()


@pytest.fixture(scope="module")
def browser():
    """Playwright's launch gives the browser a fresh temporary profile (user data dir) of its own."""
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, generator):
    context = browser.new_context(viewport={"width": 1100, "height": 900}, base_url=generator.url)
    page = context.new_page()
    page.goto("/")
    yield page
    context.close()


def ask(page, question: str) -> None:
    page.fill("#question", question)
    page.click("#submit")


def bar_share(bar) -> float:
    """The drawn share of a bar: its fill's width over its track's."""
    return bar.evaluate(
        "b => b.querySelector('.fill').getBoundingClientRect().width"
        " / b.querySelector('.track').getBoundingClientRect().width"
    )


def fulfill_with(page, status: int, body: dict, headers: dict | None = None) -> None:
    page.route(
        "**/v1/answer",
        lambda route: route.fulfill(
            status=status, body=json.dumps(body), headers={"content-type": "application/json", **(headers or {})}
        ),
    )


def test_quickstart_question_shows_paris_and_its_fact(page):
    with page.expect_response("**/v1/answer", timeout=FIRST_ANSWER_MS) as response:
        ask(page, QUESTION)
    reply = response.value.json()
    assert response.value.status == 200, reply
    expect = sync_api.expect
    expect(page.locator(".answer .name").first).to_have_text("Paris")
    answer_prob = reply["answers"][0]["prob"] if reply.get("answers") else reply["prob"]
    assert bar_share(page.locator(".answer .bar").first) == pytest.approx(answer_prob, abs=0.01)
    documents = reply.get("paths") or reply["facts"]  # the page shows relation paths when the reply has them
    top = max(documents, key=lambda doc: doc["posterior"])
    assert top["text"] == "France capital Paris" and top["posterior"] > 0.5
    row = page.locator("#evidence tr.top")
    expect(row.locator(".doc .text")).to_have_text(top["text"])
    posterior = row.locator("td.posterior .bar")
    expect(posterior.locator(".num")).to_have_text(f"{top['posterior']:.4f}")
    assert bar_share(posterior) == pytest.approx(top["posterior"], abs=0.01)
    expect(page.locator("#evidence tbody tr")).to_have_count(len(documents))
    expect(page.locator("#linked")).to_contain_text("France")
    expect(page.locator("#meta")).to_contain_text(reply["model"])
    expect(page.locator("#error")).to_be_hidden()
    if os.environ.get("KGRAG_PAGE_SCREENSHOT"):
        page.screenshot(path=os.environ["KGRAG_PAGE_SCREENSHOT"], full_page=True)


@pytest.mark.parametrize("question, code", [(" ", "empty_question"), ("why " * 300, "question_too_long")])
def test_a_bad_question_shows_the_services_message(page, question, code):
    ask(page, question)
    error = page.locator("#error")
    sync_api.expect(error).to_be_visible()
    sync_api.expect(error).to_contain_text(f"422 {code}")
    sync_api.expect(page.locator("#result")).to_be_hidden()


@pytest.mark.parametrize(
    "status, code, hint", [(429, "overloaded", "busy"), (503, "retriever_unavailable", "not ready")]
)
def test_refusals_are_shown_as_messages(page, status, code, hint):
    fulfill_with(
        page,
        status,
        {"error": {"code": code, "message": "try later", "details": []}, "request_id": "r1"},
        {"retry-after": "3"},
    )
    ask(page, QUESTION)
    error = page.locator("#error")
    sync_api.expect(error).to_contain_text(f"{status} {code}: try later.")
    sync_api.expect(error).to_contain_text(hint)
    sync_api.expect(error).to_contain_text("Try again in 3 s")
    assert page.locator("#submit").is_enabled()


def test_an_unreachable_service_is_a_message(page):
    page.route("**/v1/answer", lambda route: route.abort())
    ask(page, QUESTION)
    sync_api.expect(page.locator("#error")).to_contain_text("Cannot reach the service")


def path(topic, *steps, **shares):
    """A relation path of the reply: steps are (relation, entity) or (relation, entity, inverse)."""
    steps = [{"relation": s[0], "entity": s[1], "inverse": len(s) > 2 and s[2]} for s in steps]
    chain = " ".join(f"{s['relation']}{'^-1' if s['inverse'] else ''}" for s in steps)
    text = topic + "".join(f" {s['relation']} {s['entity']}" for s in steps)
    return {"id": text, "topic": topic, "chain": chain, "text": text, "steps": steps, **shares}


def multi_hop_reply() -> dict:
    """The reply shape of a list question answered over relation paths: `answers` and `paths`."""
    to_gump = path("Robert Zemeckis", ("directed_by", "Forrest Gump", True), ("starred_actors", "Tom Hanks"))
    to_cast = path("Robert Zemeckis", ("directed_by", "Cast Away", True), ("starred_actors", "Helen Hunt"))
    return {
        "question": "who acted in the films Robert Zemeckis directed",
        "answer": "Tom Hanks",
        "log_prob": -0.1,
        "prob": 0.9,
        "complete": True,
        "mode": "token",
        "model": "test",
        "facts": [],
        "answers": [
            {"name": "Tom Hanks", "prob": 0.9, "paths": [to_gump]},
            {"name": "Helen Hunt", "prob": 0.6, "paths": [to_cast]},
        ],
        "paths": [
            {**to_gump, "score": 0.8, "prior": 0.7, "likelihood": 0.9, "posterior": 0.8},
            {**to_cast, "score": 0.7, "prior": 0.3, "likelihood": 0.5, "posterior": 0.2},
        ],
        "linked": [{"mention": "robert zemeckis", "names": ["Robert Zemeckis"], "hinted": False}],
        "timings": {"retrieve_ms": 1.0, "queue_ms": 0.0, "generate_ms": 2.0, "total_ms": 3.0},
        "note": None,
    }


def test_answer_sets_and_paths_are_drawn(page):
    fulfill_with(page, 200, multi_hop_reply())
    ask(page, "who acted in the films Robert Zemeckis directed")
    expect = sync_api.expect
    expect(page.locator(".answer .name")).to_have_text(["Tom Hanks", "Helen Hunt"])
    expect(page.locator("#evidence-title")).to_have_text("Evidence: paths")
    expect(page.locator("#evidence tr.top .doc .text")).to_have_text(
        "Robert Zemeckis directed_by Forrest Gump starred_actors Tom Hanks"
    )
    drawing = page.locator(".answer").first.locator("svg.path")
    expect(drawing.locator(".node text")).to_have_text(["Robert Zemeckis", "Forrest Gump", "Tom Hanks"])
    expect(drawing.locator(".edge")).to_have_count(2)
    inverse, forward = drawing.locator(".edge.inverse"), drawing.locator(".edge:not(.inverse)")
    expect(inverse).to_have_attribute("data-relation", "directed_by")
    # an arrow's tip is its polygon's first point: at the line's start when inverse, at its end otherwise
    for edge, end in ((inverse, "x1"), (forward, "x2")):
        tip = float(edge.locator("polygon").get_attribute("points").split(",")[0])
        assert tip == float(edge.locator("line").get_attribute(end))
    expect(page.locator("#evidence svg.path")).to_have_count(2)


def test_not_in_the_graph_shows_the_note(page):
    reply = {
        **multi_hop_reply(),
        "answer": None,
        "prob": None,
        "log_prob": None,
        "complete": None,
        "answers": [],
        "paths": [],
        "note": "not in the graph: no path from Robert Zemeckis answers it",
    }
    fulfill_with(page, 200, reply)
    ask(page, "who composed the films Robert Zemeckis directed")
    sync_api.expect(page.locator("#note")).to_have_text(reply["note"])
    sync_api.expect(page.locator(".answer")).to_have_count(0)
    sync_api.expect(page.locator("#evidence-section")).to_be_hidden()
