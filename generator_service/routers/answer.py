"""POST /v1/answer, /v1/answer/batch and /v1/score: retrieve facts, then generate or score an answer."""

from __future__ import annotations

import math
import time

from fastapi import APIRouter

from generator_service.batching import Outcome
from generator_service.dependencies import (
    Generator, RequestId, State, check_batch, check_k, check_options, check_text,
)
from generator_service.rag import FactShare, RagRequest, RagResult, decoding_rows
from generator_service.schemas import (
    NO_FACT_NOTE, AnswerRequest, AnswerResponse, BatchAnswerRequest, BatchAnswerResponse, GenerationOptions,
    ScoredFact, ScoreRequest, ScoreResponse, Timings,
)
from generator_service.state import GeneratorState, ScoreJob
from shared.facts import answer_candidates
from shared.retriever_api import FactOut, SearchResponse

router = APIRouter(prefix="/v1", tags=["answer"])


@router.post("/answer", response_model=AnswerResponse)
async def answer(body: AnswerRequest, state: State, generator: Generator, request_id: RequestId) -> AnswerResponse:
    """Retrieve k facts for the question and generate the answer from them (RAG-Token or RAG-Sequence)."""
    start = time.perf_counter()
    check_text("question", body.question, state.settings.max_question_chars)
    k, max_new_tokens = check_options(state.settings, body)
    async with state.answers.arriving(rows=decoding_rows(k, body.num_beams)):
        found = await state.searches.search(body.question, k, request_id)
    [response] = await _answer_all(state, generator.name, body, [found], max_new_tokens, start)
    return response


@router.post("/answer/batch", response_model=BatchAnswerResponse)
async def answer_batch(body: BatchAnswerRequest, state: State, generator: Generator,
                       request_id: RequestId) -> BatchAnswerResponse:
    """Many questions with the same options: one retriever call (with concurrent searches), then all
    questions are queued together."""
    start = time.perf_counter()
    check_batch(state.settings, body.questions)
    k, max_new_tokens = check_options(state.settings, body)
    async with state.answers.arriving(len(body.questions), rows=decoding_rows(k, body.num_beams)):
        found = await state.searches.search_many(body.questions, k, request_id)
    return BatchAnswerResponse(results=await _answer_all(state, generator.name, body, found, max_new_tokens, start))


@router.post("/score", response_model=ScoreResponse)
async def score(body: ScoreRequest, state: State, generator: Generator, request_id: RequestId) -> ScoreResponse:
    """The probability of a given answer, marginal over the retrieved facts, and each fact's posterior share."""
    start = time.perf_counter()
    check_text("question", body.question, state.settings.max_question_chars)
    check_text("answer", body.answer, state.settings.max_answer_chars)
    k = check_k(state.settings, body.k)
    async with state.scores.arriving(rows=decoding_rows(k)):
        found = await state.searches.search(body.question, k, request_id)
    retrieve_ms = _ms_since(start)
    common = dict(question=body.question, answer=body.answer, model=generator.name, linked=found.linked)
    if not found.facts:
        return ScoreResponse(**common, log_prob=None, prob=None, facts=[], note=NO_FACT_NOTE,
                             timings=_timings(retrieve_ms, None, start))
    job = ScoreJob(body.question, [f.text for f in found.facts], _log_priors(found.facts), body.answer)
    [outcome] = await state.scores.run([job], state.settings.answer_timeout_s)
    result = outcome.result
    return ScoreResponse(**common, log_prob=result.log_prob, prob=math.exp(result.log_prob),
                         facts=_scored_facts(found.facts, result.facts), timings=_timings(retrieve_ms, outcome, start))


async def _answer_all(state: GeneratorState, model: str, options: GenerationOptions, found: list[SearchResponse],
                      max_new_tokens: int, start: float) -> list[AnswerResponse]:
    """Queue the questions that have facts (all at once) and answer each; those without facts get a note."""
    retrieve_ms = _ms_since(start)
    requests = {i: _rag_request(r, options, max_new_tokens) for i, r in enumerate(found) if r.facts}
    outcomes = await state.answers.run(list(requests.values()), state.settings.answer_timeout_s)
    by_question = dict(zip(requests, outcomes, strict=True))
    return [_answer_response(r, options, model, by_question.get(i), retrieve_ms, start) for i, r in enumerate(found)]


def _rag_request(found: SearchResponse, options: GenerationOptions, max_new_tokens: int) -> RagRequest:
    allowed = None
    if options.constrain:
        linked = {name for entity in found.linked for name in entity.names}
        allowed = answer_candidates([f.model_dump() for f in found.facts], linked)
    return RagRequest(
        question=found.query, facts=[f.text for f in found.facts], log_priors=_log_priors(found.facts),
        mode=options.mode, max_new_tokens=max_new_tokens, num_beams=options.num_beams, allowed_answers=allowed,
    )


def _answer_response(found: SearchResponse, options: GenerationOptions, model: str,
                     outcome: Outcome[RagResult] | None, retrieve_ms: float, start: float) -> AnswerResponse:
    common = dict(question=found.query, mode=options.mode, model=model, linked=found.linked,
                  timings=_timings(retrieve_ms, outcome, start))
    if outcome is None:
        return AnswerResponse(**common, answer=None, log_prob=None, prob=None, complete=None, facts=[],
                              note=NO_FACT_NOTE)
    result = outcome.result
    return AnswerResponse(**common, answer=result.answer, log_prob=result.log_prob, prob=math.exp(result.log_prob),
                          complete=result.complete, facts=_scored_facts(found.facts, result.facts))


def _log_priors(facts: list[FactOut]) -> list[float]:
    """log p(d|x) of the retriever's priors (a prior that underflowed to 0 is log 0 = -inf)."""
    return [math.log(f.prior) if f.prior > 0 else -math.inf for f in facts]


def _scored_facts(facts: list[FactOut], shares: list[FactShare]) -> list[ScoredFact]:
    """The retrieved facts in the retriever's order: the retriever's prior, and the likelihood and posterior."""
    return [_scored_fact(facts[share.index], share) for share in sorted(shares, key=lambda share: share.index)]


def _scored_fact(fact: FactOut, share: FactShare) -> ScoredFact:
    return ScoredFact(
        **fact.model_dump(include={"id", "subject", "relation", "object", "text", "score", "prior"}),
        likelihood=math.exp(share.log_likelihood), posterior=math.exp(share.log_posterior),
    )


def _timings(retrieve_ms: float, outcome: Outcome | None, start: float) -> Timings:
    return Timings(retrieve_ms=retrieve_ms, queue_ms=outcome.queue_ms if outcome else 0.0,
                   generate_ms=outcome.run_ms if outcome else 0.0, total_ms=_ms_since(start))


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000
