"""POST /v1/facts (ingest a small batch) and DELETE /v1/facts (by id or by triple)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from retriever_service.dependencies import State, store_errors
from retriever_service.ingest import delete_facts, ingest_triples
from shared.errors import ServiceError
from shared.facts import Triple
from shared.retriever_api import DeleteRequest, DeleteResponse, IngestRequest, IngestResponse

router = APIRouter(prefix="/v1", tags=["facts"])


def _check_size(state: State, n: int) -> None:
    if n > state.settings.max_facts_per_request:
        raise ServiceError(
            422, "too_many_facts", f"{n} facts in one request; the limit is {state.settings.max_facts_per_request}"
        )


def _triple(fact) -> Triple:
    parts = (fact.subject.strip(), fact.relation.strip(), fact.object.strip())
    if not all(parts):
        raise ServiceError(422, "malformed_fact", f"subject, relation and object must be non-blank: {parts}")
    return Triple(*parts)


@router.post("/facts", response_model=IngestResponse)
def add_facts(body: IngestRequest, state: State) -> IngestResponse:
    """Store facts (idempotent: a fact already stored is left as it is). Use the CLI for big files."""
    _check_size(state, len(body.facts))
    triples = [_triple(f) for f in body.facts]  # all validated before anything is written
    with store_errors(state):
        store = state.store()
        stats = ingest_triples(triples, encoder=state.encoder, store=store, entities=state.entities)
        count = store.count()
    state.facts_gauge.set(count)
    return IngestResponse(**stats.as_dict(), count=count)


def _valid_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise ServiceError(422, "malformed_id", f"not a fact id (a UUID): {value!r}") from exc


@router.delete("/facts", response_model=DeleteResponse)
def remove_facts(body: DeleteRequest, state: State) -> DeleteResponse:
    """Delete facts by id and/or by triple; ids that are not stored are ignored."""
    if not body.ids and not body.triples:
        raise ServiceError(422, "nothing_to_delete", "give `ids` and/or `triples`")
    _check_size(state, len(body.ids) + len(body.triples))
    ids = [_valid_id(i) for i in body.ids] + [_triple(t).id for t in body.triples]
    with store_errors(state):
        store = state.store()
        deleted = delete_facts(ids, store=store, entities=state.entities)
        count = store.count()
    state.facts_gauge.set(count)
    return DeleteResponse(deleted=deleted, count=count)
