"""The generator's HTTP schemas. Limits that depend on settings (k, max_new_tokens, num_beams,
question length, batch size) are checked by the endpoints, with the configured values in the message."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, StrictBool

from shared.openapi import NON_BLANK, NON_BLANK_ITEMS, Count, Hops
from shared.retriever_api import LinkedEntityOut, PathOut, PathRef

Mode = Literal["token", "sequence"]
NO_PATH_NOTE = "the retriever found no path for this question, so no answer was generated"
_NO_FACT = (
    "null when the graph has no answer (then `note` says why and `answers`, `paths` and `facts` are "
    "empty): an answer without evidence would be the bare model's guess, which this service does not give"
)


class GenerationOptions(BaseModel):
    k: Count | None = Field(
        None,
        description="paths to retrieve as documents (default and limit: settings default_k, "
        "max_k); a one-step path is one fact",
    )
    hops: Hops | None = Field(None, description="longest relation chain followed, 1 to 3 (default: the retriever's)")
    mode: Mode = Field("token", description="RAG-Token (facts mixed at each token) or RAG-Sequence (per answer)")
    max_new_tokens: Count | None = Field(None, description="answer length limit (default: settings)")
    num_beams: Count = Field(1, description="beam width; 1 is greedy (limit: settings max_beams)")
    constrain: StrictBool = Field(
        True,
        description=(
            "true (the default): the answer is one of the entities of the retrieved facts (the question's own entity "
            "and the names of weightless facts left out), and probabilities are over those entities (each fact's "
            "next-token distribution renormalised over the tokens they allow); false: free generation, "
            "probabilities over any text"
        ),
    )


class AnswerRequest(GenerationOptions):
    question: str = Field(
        ..., json_schema_extra=NON_BLANK, description="the question; a [bracketed] entity is a hint for entity linking"
    )


class BatchAnswerRequest(GenerationOptions):
    questions: list[str] = Field(
        ...,
        min_length=1,
        json_schema_extra=NON_BLANK_ITEMS,
        description="answered together (limit: settings max_batch)",
    )


class ScoreRequest(BaseModel):
    question: str = Field(..., json_schema_extra=NON_BLANK)
    answer: str = Field(..., json_schema_extra=NON_BLANK, description="the answer to score")
    k: Count | None = Field(None, description="paths to retrieve (default and limit: settings default_k, max_k)")
    hops: Hops | None = Field(None, description="longest relation chain followed, 1 to 3 (default: the retriever's)")


class ScoredFact(BaseModel):
    id: str
    subject: str
    relation: str
    object: str
    text: str
    score: float = Field(..., description="the retriever's ranking score")
    prior: float = Field(..., description="p(d|x), the retriever's prior over the retrieved facts")
    likelihood: float = Field(
        ...,
        description="p(y|x,d): the answer's probability given the path of this fact "
        "(the best such path when several documents walk it)",
    )
    posterior: float = Field(
        ...,
        description="p(d|x,y): the share of the answer of the paths that walk this fact; "
        "sums to 1 over the facts of one-step paths",
    )


class ScoredPath(PathOut):
    """A document the answer was computed from: the retriever's path with the generator's shares."""

    likelihood: float = Field(..., description="p(y|x,d): the answer's probability given this path alone")
    posterior: float = Field(..., description="p(d|x,y): the path's share of the answer; sums to 1 over paths")


class AnswerItem(BaseModel):
    name: str
    prob: float = Field(
        ..., description="P(name is an answer | question): the probability of the relation chains that reach it"
    )
    paths: list[PathRef] = Field(..., description="the best paths that reach it")


class Timings(BaseModel):
    retrieve_ms: float = Field(..., description="the retriever call (one call for a whole batch)")
    queue_ms: float = Field(..., description="waiting for the model")
    generate_ms: float = Field(..., description="the model's time for the batch this question ran in")
    total_ms: float


class AnswerResponse(BaseModel):
    question: str
    answer: str | None = Field(..., description=f"the generated answer; {_NO_FACT}")
    log_prob: float | None = Field(..., description=f"log p(answer|question), marginal over the facts; {_NO_FACT}")
    prob: float | None = Field(..., description="exp(log_prob)")
    complete: bool | None = Field(
        ...,
        description="false when the answer was cut at max_new_tokens (log_prob "
        "is then that of the cut answer as a prefix); null with no answer",
    )
    mode: Mode
    model: str
    answers: list[AnswerItem] = Field(
        ...,
        description="every answer of the question (a list question has several): "
        "each entity whose probability passes the retriever's answer threshold, best "
        "first, with `answer` first among equals; empty when there is no answer",
    )
    paths: list[ScoredPath] = Field(..., description="the documents: the retrieved paths, in the retriever's order")
    facts: list[ScoredFact] = Field(..., description="the facts the paths walk, in order of first use")
    linked: list[LinkedEntityOut] = Field(..., description="entities the retriever found in the question")
    timings: Timings
    note: str | None = Field(None, description='why there is no answer, when there is none ("not in the graph")')


class BatchAnswerResponse(BaseModel):
    results: list[AnswerResponse] = Field(..., description="in the order of the questions")


class ScoreResponse(BaseModel):
    question: str
    answer: str
    log_prob: float | None = Field(..., description=f"log p(answer|question), marginal over the facts; {_NO_FACT}")
    prob: float | None = Field(..., description="exp(log_prob)")
    model: str
    paths: list[ScoredPath] = Field(..., description="the retrieved paths with their posterior given the answer")
    facts: list[ScoredFact] = Field(..., description="the facts the paths walk, with their posterior given the answer")
    linked: list[LinkedEntityOut]
    timings: Timings
    note: str | None = None
