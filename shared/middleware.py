"""ASGI middleware both services use: request ids, a body-size limit, request metrics, and a bound on
the requests in flight."""

from __future__ import annotations

import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import error_response
from shared.logging_config import request_id as current_request_id
from shared.metrics import Metrics

log = logging.getLogger("kgrag.access")
REQUEST_ID_HEADER = "x-request-id"
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class _BodyTooLarge(Exception):
    pass


class ServiceMiddleware:
    """Gives every request an id (kept from `X-Request-ID` when the client sends one), echoes it in
    the response and sets it for the log lines of the request, refuses bodies over `max_body_bytes`
    with 413, and records count and latency."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = (headers.get(b"x-request-id", b"").decode("latin-1")[:128]) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = current_request_id.set(request_id)
        start, status = time.perf_counter(), 500
        declared = headers.get(b"content-length")
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                raise _BodyTooLarge
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((REQUEST_ID_HEADER.encode(), request_id.encode()))
            await send(message)

        try:
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                raise _BodyTooLarge
            await self.app(scope, limited_receive, send_with_id)
        except _BodyTooLarge:
            response = error_response(
                request_id, 413, "body_too_large", f"request body over the limit of {self.max_body_bytes} bytes"
            )
            await response(scope, receive, send_with_id)
        finally:
            self._record(scope, status, time.perf_counter() - start, request_id)
            current_request_id.reset(token)

    def _record(self, scope: Scope, status: int, elapsed: float, request_id: str) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        self.metrics.requests.labels(method, path, str(status)).inc()
        self.metrics.latency.labels(method, path).observe(elapsed)
        log.info("%s %s %s %.1fms", method, scope.get("path"), status, elapsed * 1000, extra={"request_id": request_id})


class ConcurrencyLimitMiddleware:
    """At most `max_in_flight` requests at a time; one more is refused at once with 429 and
    Retry-After, so an overloaded service sheds load instead of queueing without bound.
    Health, readiness and metrics are not counted and never refused."""

    def __init__(self, app: ASGIApp, max_in_flight: int) -> None:
        self.app, self.max_in_flight = app, max_in_flight
        self.in_flight = 0  # changed only on the event loop: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            response = error_response(
                scope.get("state", {}).get("request_id"),
                429,
                "too_many_requests",
                f"{self.max_in_flight} requests in flight, the limit; retry later",
                headers={"Retry-After": "1"},
            )
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
