"""The retriever's HTTP schemas, shared by the retriever (server) and the generator (client)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from shared.openapi import NON_BLANK, NON_BLANK_ITEMS, Count, Hops


class SearchRequest(BaseModel):
    query: str = Field(
        ...,
        min_length=1,
        json_schema_extra=NON_BLANK,
        description="the question; a [bracketed] entity is taken as a hint",
    )
    k: Count | None = Field(None, description="how many facts (default: the service's default_k)")
    link: StrictBool = Field(
        True, description="restrict to facts touching linked entities; false is plain dense search"
    )


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

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [{"required": [name], "properties": {name: {"minItems": 1}}} for name in ("ids", "triples")]
        }
    )
    ids: list[str] = Field(default_factory=list, json_schema_extra={"items": {"type": "string", "format": "uuid"}})
    triples: list[TripleIn] = Field(default_factory=list)


class DeleteResponse(BaseModel):
    deleted: int
    count: int


class PathOptions(BaseModel):
    """What bounds a path search; each defaults to the service's setting and may not exceed its limit."""

    k: Count | None = Field(None, description="paths returned as documents (default: settings default_k)")
    hops: Hops | None = Field(None, description="longest relation chain, 1 to 3 (default and limit: settings max_hops)")
    beam: Count | None = Field(None, description="chains grounded per linked entity, the most likely first")
    facts_per_step: Count | None = Field(None, description="facts fetched per chain step, the most similar first")
    paths_per_chain: Count | None = Field(None, description="partial paths kept per chain after each step")
    max_answers: Count | None = Field(None, description="answers returned at most")


class PathSearchRequest(PathOptions):
    query: str = Field(
        ...,
        min_length=1,
        json_schema_extra=NON_BLANK,
        description="the question; a [bracketed] entity is taken as a hint",
    )


class BatchPathSearchRequest(PathOptions):
    queries: list[str] = Field(..., min_length=1, json_schema_extra=NON_BLANK_ITEMS)


class PathStep(BaseModel):
    relation: str = Field(..., description="the KG relation followed")
    inverse: bool = Field(..., description="true: the fact reads (entity, relation, previous entity)")
    entity: str = Field(..., description="where the step arrives")


class PathRef(BaseModel):
    """A path from the linked topic entity: each step follows a relation to an entity."""

    id: str = Field(..., description="its facts' ids joined by '+'")
    topic: str = Field(..., description="the KG entity it starts from")
    chain: str = Field(..., description="its relation chain, e.g. 'starred_actors^-1/directed_by'")
    steps: list[PathStep]


class PathFactOut(BaseModel):
    id: str
    subject: str
    relation: str
    object: str
    text: str
    cosine: float = Field(..., description="cosine similarity of the fact to the query")


class PathOut(PathRef):
    facts: list[PathFactOut] = Field(..., description="the facts it walks, in order")
    text: str = Field(..., description="what the generator reads: the facts' sentences in order")
    cosine: float = Field(..., description="mean cosine of its facts to the query")
    score: float = Field(..., description="the mean cosine plus the chain prior's term")
    prior: float = Field(..., description="p(d|x) = softmax(score / tau) over the paths returned")


class ChainOut(BaseModel):
    chain: str
    words: str = Field(..., description="the chain for people: 'starred actors (reversed) -> directed by'")
    mention: str = Field(..., description="the linked mention it starts from")
    log_prob: float = Field(..., description="log p(chain | question read about the mention), the chain prior")
    prob: float = Field(..., description="p(chain|x) among the grounded chains")
    paths: int = Field(..., description="paths grounding it")


class AnswerOut(BaseModel):
    name: str
    prob: float = Field(..., description="P(name is an answer | x): the probability of the chains that reach it")
    paths: list[PathRef] = Field(..., description="the best paths that reach it")


class PathCuts(BaseModel):
    chains_not_grounded: int = Field(..., description="candidate chains beyond the beam")
    steps_at_fact_limit: int = Field(..., description="chain steps that returned facts_per_step facts (more may exist)")
    chains_at_path_limit: int = Field(..., description="chains whose partial paths were cut to paths_per_chain")
    answers_cut: int = Field(..., description="answers beyond max_answers")


class PathSearchResponse(BaseModel):
    query: str
    k: int
    hops: int
    tau: float
    linked: list[LinkedEntityOut]
    paths: list[PathOut] = Field(..., description="the documents: the k best paths, best first")
    chains: list[ChainOut] = Field(..., description="grounded chains, most probable first")
    answers: list[AnswerOut] = Field(
        ...,
        description="the answer set: every entity whose probability passes "
        "answer_threshold (at least the best one), best first; empty when abstaining",
    )
    support: float = Field(..., description="the chain prior's mass on the grounded chains of the best mention")
    answer_threshold: float
    abstain_threshold: float
    abstain: bool = Field(..., description="true: the graph has no answer (see reason and note)")
    reason: str | None = Field(None, description="why it abstains: no_entity, no_path or low_support")
    note: str | None = Field(None, description="the reason in words")
    best_chain: str | None = Field(
        None,
        description='the most likely chain of the best mention, grounded or not; "<none>" when the prior reads the '
        "question as asking for a relation the graph lacks",
    )
    cuts: PathCuts


class BatchPathSearchResponse(BaseModel):
    results: list[PathSearchResponse]
