"""The retriever's HTTP schemas, shared by the retriever (server) and the generator (client)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from shared.openapi import NON_BLANK, NON_BLANK_ITEMS, Count


class SearchRequest(BaseModel):
    query: str = Field(..., min_length=1, json_schema_extra=NON_BLANK,
                       description="the question; a [bracketed] entity is taken as a hint")
    k: Count | None = Field(None, description="how many facts (default: the service's default_k)")
    link: StrictBool = Field(True, description="restrict to facts touching linked entities; false is plain dense search")


class BatchSearchRequest(BaseModel):
    queries: list[str] = Field(..., min_length=1, json_schema_extra=NON_BLANK_ITEMS)
    k: Count | None = None
    link: StrictBool = True


class LinkedEntityOut(BaseModel):
    mention: str
    names: list[str]
    hinted: bool


class FactOut(BaseModel):
    id: str
    subject: str
    relation: str
    object: str
    text: str
    cosine: float = Field(..., description="cosine similarity of the fact to the query")
    score: float = Field(..., description="ranking score: the cosine plus the relation prior's term, if fitted")
    prior: float = Field(..., description="p(d|x) = softmax(score / tau) over the facts returned")


class SearchResponse(BaseModel):
    query: str
    k: int
    tau: float
    linked: list[LinkedEntityOut]
    facts: list[FactOut]


class BatchSearchResponse(BaseModel):
    results: list[SearchResponse]


class TripleIn(BaseModel):
    subject: str = Field(..., min_length=1, max_length=2000, json_schema_extra=NON_BLANK)
    relation: str = Field(..., min_length=1, max_length=500, json_schema_extra=NON_BLANK)
    object: str = Field(..., min_length=1, max_length=2000, json_schema_extra=NON_BLANK)


class IngestRequest(BaseModel):
    facts: list[TripleIn] = Field(..., min_length=1)


class IngestResponse(BaseModel):
    received: int
    added: int
    existing: int
    count: int = Field(..., description="facts stored after this request")


class DeleteRequest(BaseModel):
    """At least one id or triple (the endpoint checks it; the schema says so with `anyOf`)."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": [name], "properties": {name: {"minItems": 1}}} for name in ("ids", "triples")]})
    ids: list[str] = Field(default_factory=list, json_schema_extra={"items": {"type": "string", "format": "uuid"}})
    triples: list[TripleIn] = Field(default_factory=list)


class DeleteResponse(BaseModel):
    deleted: int
    count: int
