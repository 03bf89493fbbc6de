"""One JSON shape for every error of both services, and one table of what each failure is answered with:

    {"error": {"code": "...", "message": "...", "details": [...]}, "request_id": "..."}

The services' own code raises typed errors that know nothing of HTTP (the generation queue is full,
the retriever is down, the fact store failed, ...). `FAILURES` maps each of them to the status, code
and Retry-After of its answer, applied at the edge by the middleware `install_error_handlers` adds.
The checks of a request's input at the edge raise `ServiceError`, which carries its status and code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException  # FastAPI's own is a subclass; Starlette's reaches here too
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
ERROR_STATUSES = {
    400: ("the body cannot be read (not UTF-8)", {}),
    401: ("missing or wrong API key", {}),
    413: ("request body over the size limit", {}),
    422: ("invalid request: the body, or a limit the settings impose", {}),
    429: ("overloaded: too many requests in flight, or the generation queue is full", _RETRY_AFTER),
    500: ("unexpected error; see the service log", {}),
    502: ("the upstream service refused this service's credentials", {}),
    503: ("a dependency is unavailable, the service is not ready, or it is shutting down", _RETRY_AFTER),
    504: ("no answer within the configured time", {}),
}


@dataclass(frozen=True)
class Failure:
    """How a failure is answered: its status, a stable code, Retry-After, and the message (`{exc}`: the
    exception's own text)."""

    status: int
    code: str
    retry_after: str | None = None
    message: str = "{exc}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": self.retry_after} if self.retry_after else {}

    def response(self, request_id: str | None, exc: BaseException) -> JSONResponse:
        return error_response(request_id, self.status, self.code, self.message.format(exc=exc), headers=self.headers)


class _Refusal(Protocol):
    """What an upstream refusal carries (generator_service.retriever_client.RetrieverRejected)."""

    status: int
    code: str
    retry_after: str | None


def _passed_on(exc: BaseException) -> Failure:
    """An upstream service's refusal of a request (its status, code and Retry-After), passed on to the
    client: the client's request was at fault."""
    refusal = cast(_Refusal, exc)  # FAILURES maps only RetrieverRejected here (shared/ imports neither service)
    return Failure(refusal.status, refusal.code, refusal.retry_after)


# Exception classes by module and name, so that shared/ imports neither service; a subclass is answered
# as its nearest listed base. tests/test_errors.py checks that every key names an exception class.
FAILURES: dict[str, Failure | Callable[[BaseException], Failure]] = {
    "generator_service.batching.QueueFull": Failure(429, "queue_full", retry_after="1"),
    "generator_service.batching.ShuttingDown": Failure(503, "shutting_down", retry_after="1"),
    "generator_service.batching.GenerationTimeout": Failure(504, "generation_timeout"),
    "generator_service.retriever_client.RetrieverUnavailable": Failure(503, "retriever_unavailable", retry_after="1"),
    "generator_service.retriever_client.RetrieverAuthFailed": Failure(502, "retriever_auth_failed"),
    "generator_service.retriever_client.RetrieverRejected": _passed_on,
    "retriever_service.store.StoreError": Failure(
        503, "store_unavailable", retry_after="1", message="the fact store is unavailable: {exc}"
    ),
}


def failure_of(exc: BaseException) -> Failure | None:
    """The answer to a typed failure (FAILURES), None for any other exception."""
    for cls in type(exc).__mro__:
        entry = FAILURES.get(f"{cls.__module__}.{cls.__qualname__}")
        if entry is not None:
            return entry if isinstance(entry, Failure) else entry(exc)
    return None


class ErrorBody(BaseModel):
    code: str = Field(..., description="stable, machine-readable")
    message: str
    details: list[dict] = Field(..., description="per-field problems of an invalid request")


class ErrorResponse(BaseModel):
    error: ErrorBody
    request_id: str | None


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses` for the error statuses a service can return, all with the shape above."""
    return {
        status: {"model": ErrorResponse, "description": ERROR_STATUSES[status][0], "headers": ERROR_STATUSES[status][1]}
        for status in statuses
    }


class ServiceError(Exception):
    """An error raised at the edge (a route or its dependencies: bad input, no model yet), with its HTTP
    status, a stable code and a message for the client."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def error_response(
    request_id: str | None,
    status: int,
    code: str,
    message: str,
    details: list | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or []}, "request_id": request_id}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_details(exc: RequestValidationError) -> list[dict]:
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]


class _FailureMiddleware:
    """Answers a typed failure that escapes a route as FAILURES says; any other exception goes on up."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            failure = None if started or scope["type"] != "http" else failure_of(exc)
            if failure is None:
                raise
            await failure.response(scope.get("state", {}).get("request_id"), exc)(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Every error in the shared shape. Call it before adding other middleware: the failures' middleware
    must be the innermost, so that the others (request id, access log, metrics) see its answers."""
    app.add_middleware(_FailureMiddleware)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return error_response(request_id_of(request), exc.status, exc.code, exc.message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        summary = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details[:5])
        return error_response(request_id_of(request), 422, "invalid_request", summary or "invalid request", details)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        code = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        return error_response(
            request_id_of(request), exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception(
            "unhandled error on %s %s", request.method, request.url.path, extra={"request_id": request_id_of(request)}
        )
        return error_response(request_id_of(request), 500, "internal_error", "internal error; see the service log")
