"""Operations: /healthz (alive), /readyz (model loaded and retriever ready), /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse

from generator_service.dependencies import RequestId, State
from generator_service.retriever_client import RetrieverUnavailable
from shared.errors import error_response, failure_of

router = APIRouter(tags=["ops"])


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: State, request_id: RequestId):
    if state.generator is None:
        reason = f"model failed to load: {state.load_error}" if state.load_error else "model loading"
        return error_response(request_id, 503, "not_ready", reason, headers={"Retry-After": "5"})
    try:
        await state.retriever.check_ready(request_id)
    except RetrieverUnavailable as exc:
        failure = failure_of(exc)  # RetrieverUnavailable has one (FAILURES)
        return error_response(request_id, 503, "not_ready", str(exc), headers=failure.headers if failure else None)
    return {"status": "ready", "model": state.generator.name, "queued": state.answers.pending + state.scores.pending}


@router.get("/metrics", response_class=PlainTextResponse)  # the Prometheus text format
def metrics(state: State) -> Response:
    http = state.metrics.http
    return Response(http.render(), media_type=http.content_type)
