"""One JSON shape for every error of both services:

    {"error": {"code": "...", "message": "...", "details": [...]}, "request_id": "..."}
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException  # FastAPI's own is a subclass; Starlette's reaches here too

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


class ErrorBody(BaseModel):
    code: str = Field(..., description="stable, machine-readable")
    message: str
    details: list[dict] = Field(..., description="per-field problems of an invalid request")


class ErrorResponse(BaseModel):
    error: ErrorBody
    request_id: str | None


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses` for the error statuses a service can return, all with the shape above."""
    return {status: {"model": ErrorResponse, "description": ERROR_STATUSES[status][0],
                     "headers": ERROR_STATUSES[status][1]} for status in statuses}


class ServiceError(Exception):
    """An error with an HTTP status, a stable code and a message for the client."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def error_response(request_id: str | None, status: int, code: str, message: str,
                   details: list | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or []}, "request_id": request_id}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_details(exc: RequestValidationError) -> list[dict]:
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]


def install_error_handlers(app: FastAPI) -> None:
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
        code = {400: "bad_request", 401: "unauthorized", 404: "not_found",
                405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(request_id_of(request), exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path,
                      extra={"request_id": request_id_of(request)})
        return error_response(request_id_of(request), 500, "internal_error", "internal error; see the service log")
