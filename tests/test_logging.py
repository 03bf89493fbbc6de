"""Structured logs: one JSON object per line, the request id on every line logged during a request
(async endpoints, sync endpoints on Starlette's threads, the access line), uvicorn configured so
that its own access log does not repeat the middleware's."""

import json
import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import generator_service.__main__ as generator_main
import retriever_service.__main__ as retriever_main
from shared.logging_config import JsonFormatter, StderrHandler, configure_logging
from shared.metrics import Metrics
from shared.middleware import ServiceMiddleware

log = logging.getLogger("kgrag.test")


@pytest.fixture
def json_logs():
    root = logging.getLogger()
    level = root.level
    configure_logging("test")
    yield
    for handler in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(handler)
    root.setLevel(level)


def _lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/async")
    async def in_task() -> dict:
        log.info("async endpoint")
        return {}

    @app.get("/sync")
    def in_thread() -> dict:
        log.warning("sync endpoint")
        return {}

    app.add_middleware(ServiceMiddleware, metrics=Metrics("logtest"), max_body_bytes=1024)
    return app


def test_every_line_of_a_request_carries_its_id(json_logs, capsys):
    with TestClient(_app()) as client:
        capsys.readouterr()
        for path, rid in (("/async", "rid-async"), ("/sync", "rid-sync")):
            assert client.get(path, headers={"X-Request-ID": rid}).status_code == 200
        log.info("between requests")
    lines = [line for line in _lines(capsys) if line["logger"].startswith("kgrag")]  # not the test client's
    assert [(line["logger"], line.get("request_id")) for line in lines] == [
        ("kgrag.test", "rid-async"),
        ("kgrag.access", "rid-async"),
        ("kgrag.test", "rid-sync"),
        ("kgrag.access", "rid-sync"),
        ("kgrag.test", None),
    ]
    assert lines[1]["message"].startswith("GET /async 200 ") and lines[3]["message"].startswith("GET /sync 200 ")
    assert {k for line in lines for k in line} <= {"time", "level", "service", "logger", "message", "request_id"}
    assert all(line["service"] == "test" for line in lines) and lines[3]["level"] == "INFO"
    assert lines[0]["time"].endswith("+00:00")


def test_exceptions_and_uvicorn_lines_are_json(json_logs, capsys):
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    failed, uvicorn = _lines(capsys)
    assert failed["level"] == "ERROR" and "ValueError: boom" in failed["exception"]
    assert uvicorn == {**uvicorn, "logger": "uvicorn.error", "message": "Application startup complete."}


@pytest.mark.parametrize("module, service", [(retriever_main, "retriever"), (generator_main, "generator")])
def test_main_serves_with_json_logs_and_a_graceful_shutdown(module, service, monkeypatch, json_logs):
    calls = []
    monkeypatch.setattr(module.uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    module.main()
    [kwargs] = calls
    assert kwargs["log_config"] is None and kwargs["access_log"] is False
    assert kwargs["timeout_graceful_shutdown"] >= 5
    [handler] = [h for h in logging.getLogger().handlers if isinstance(h, StderrHandler)]
    assert isinstance(handler.formatter, JsonFormatter) and handler.formatter.service == service
