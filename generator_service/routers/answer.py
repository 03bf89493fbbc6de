"""POST /v1/answer, /v1/answer/batch and /v1/score: retrieve relation paths, then generate or score an answer.

The documents d are the retriever's paths (a one-step path is one fact), each read as its facts'
sentences, with the retriever's prior p(d|x); the generator computes p(y|x) = sum_d p(d|x) p(y|x,d)
over them. The answer set comes from the retriever (each entity's probability of being an answer);
when the retriever finds the graph has no answer, the reply says so instead of a guess.
"""

from __future__ import annotations

import math
import time

from fastapi import APIRouter

from generator_service.batching import Outcome
from generator_service.dependencies import (
    Generator,
    RequestId,
    State,
    check_batch,
    check_k,
    check_options,
    check_text,
)
from generator_service.rag import FactShare, RagRequest, RagResult, decoding_rows
from generator_service.schemas import (
    NO_PATH_NOTE,
    AnswerItem,
    AnswerRequest,
    AnswerResponse,
    BatchAnswerRequest,
    BatchAnswerResponse,
    GenerationOptions,
    ScoredFact,
    ScoredPath,
    ScoreRequest,
    ScoreResponse,
    Timings,
)
from generator_service.state import GeneratorState, ScoreJob
from shared.facts import Evidence, candidate_names
from shared.retriever_api import PathOptions, PathOut, PathSearchResponse

router = APIRouter(prefix="/v1", tags=["answer"])


@router.post("/answer", response_model=AnswerResponse)
async def answer(body: AnswerRequest, state: State, generator: Generator, request_id: RequestId) -> AnswerResponse:
    """Retrieve k relation paths for the question and generate the answer from them (RAG-Token or RAG-Sequence),
    with every answer of a list question and "not in the graph" when the graph has none."""
    start = time.perf_counter()
    check_text("question", body.question, state.settings.max_question_chars)
    k, max_new_tokens = check_options(state.settings, body)
    async with state.answers.arriving(rows=decoding_rows(k, body.num_beams)):
        found = await state.searches.search(body.question, PathOptions(k=k, hops=body.hops), request_id)
    [response] = await _answer_all(state, generator.name, body, [found], max_new_tokens, start)
    return response


@router.post("/answer/batch", response_model=BatchAnswerResponse)
async def answer_batch(
    body: BatchAnswerRequest, state: State, generator: Generator, request_id: RequestId
) -> BatchAnswerResponse:
    """Many questions with the same options: one retriever call (with concurrent searches), then all
    questions are queued together."""
    start = time.perf_counter()
    check_batch(state.settings, body.questions)
    k, max_new_tokens = check_options(state.settings, body)
    async with state.answers.arriving(len(body.questions), rows=decoding_rows(k, body.num_beams)):
        found = await state.searches.search_many(body.questions, PathOptions(k=k, hops=body.hops), request_id)
    return BatchAnswerResponse(results=await _answer_all(state, generator.name, body, found, max_new_tokens, start))


@router.post("/score", response_model=ScoreResponse)
async def score(body: ScoreRequest, state: State, generator: Generator, request_id: RequestId) -> ScoreResponse:
    """The probability of a given answer, marginal over the retrieved paths, and each path's posterior share."""
    start = time.perf_counter()
    check_text("question", body.question, state.settings.max_question_chars)
    check_text("answer", body.answer, state.settings.max_answer_chars)
    k = check_k(state.settings, body.k)
    async with state.scores.arriving(rows=decoding_rows(k)):
        found = await state.searches.search(body.question, PathOptions(k=k, hops=body.hops), request_id)
    retrieve_ms = _ms_since(start)
    common = dict(question=body.question, answer=body.answer, model=generator.name, linked=found.linked)
    if not found.paths:
        return ScoreResponse(
            **common,
            log_prob=None,
            prob=None,
            paths=[],
            facts=[],
            note=found.note or NO_PATH_NOTE,
            timings=_timings(retrieve_ms, None, start),
        )
    job = ScoreJob(body.question, [p.text for p in found.paths], _log_priors(found.paths), body.answer)
    [outcome] = await state.scores.run([job], state.settings.answer_timeout_s)
    result = outcome.result
    paths = _scored_paths(found.paths, result.facts)
    return ScoreResponse(
        **common,
        log_prob=result.log_prob,
        prob=math.exp(result.log_prob),
        paths=paths,
        facts=_scored_facts(paths),
        timings=_timings(retrieve_ms, outcome, start),
    )


async def _answer_all(
    state: GeneratorState,
    model: str,
    options: GenerationOptions,
    found: list[PathSearchResponse],
    max_new_tokens: int,
    start: float,
) -> list[AnswerResponse]:
    """Queue the questions the graph can answer (all at once) and answer each; the others get the retriever's note."""
    retrieve_ms = _ms_since(start)
    requests = {i: rag_request(r, options, max_new_tokens) for i, r in enumerate(found) if answerable(r)}
    outcomes = await state.answers.run(list(requests.values()), state.settings.answer_timeout_s)
    by_question = dict(zip(requests, outcomes, strict=True))
    return [_answer_response(r, options, model, by_question.get(i), retrieve_ms, start) for i, r in enumerate(found)]


def answerable(found: PathSearchResponse) -> bool:
    return bool(found.paths) and not found.abstain


def rag_request(found: PathSearchResponse, options: GenerationOptions, max_new_tokens: int) -> RagRequest:
    """The paths as documents; constrained to the ends of those with weight (`shared.facts.candidate_names`)."""
    allowed = allowed_answers(found) if options.constrain else None
    return RagRequest(
        question=found.query,
        facts=[p.text for p in found.paths],
        log_priors=_log_priors(found.paths),
        mode=options.mode,
        max_new_tokens=max_new_tokens,
        num_beams=options.num_beams,
        allowed_answers=allowed,
    )


def allowed_answers(found: PathSearchResponse) -> list[str]:
    """The names a constrained answer may be (`shared.facts.candidate_names`): the ends of the paths with weight,
    the question's own entities left out, those of the retriever's answer set when any is among them."""
    linked = {name for entity in found.linked for name in entity.names}
    documents = [Evidence(p.text, (p.steps[-1].entity,), p.prior) for p in found.paths]
    return candidate_names(documents, linked, answer_set={a.name for a in found.answers})


def _answer_response(
    found: PathSearchResponse,
    options: GenerationOptions,
    model: str,
    outcome: Outcome[RagResult] | None,
    retrieve_ms: float,
    start: float,
) -> AnswerResponse:
    common = dict(
        question=found.query,
        mode=options.mode,
        model=model,
        linked=found.linked,
        timings=_timings(retrieve_ms, outcome, start),
    )
    if outcome is None:
        return AnswerResponse(
            **common,
            answer=None,
            log_prob=None,
            prob=None,
            complete=None,
            answers=[],
            paths=[],
            facts=[],
            note=found.note or NO_PATH_NOTE,
        )
    result = outcome.result
    paths = _scored_paths(found.paths, result.facts)
    answers = sorted(found.answers, key=lambda a: (-a.prob, a.name != result.answer))  # stable: the retriever's order
    return AnswerResponse(
        **common,
        answer=result.answer,
        log_prob=result.log_prob,
        prob=math.exp(result.log_prob),
        complete=result.complete,
        answers=[AnswerItem(**a.model_dump()) for a in answers],
        paths=paths,
        facts=_scored_facts(paths),
    )


def _log_priors(paths: list[PathOut]) -> list[float]:
    """log p(d|x) of the retriever's priors (a prior that underflowed to 0 is log 0 = -inf)."""
    return [math.log(p.prior) if p.prior > 0 else -math.inf for p in paths]


def _scored_paths(paths: list[PathOut], shares: list[FactShare]) -> list[ScoredPath]:
    """The retrieved paths in the retriever's order, with the generator's likelihood and posterior of each."""
    return [
        ScoredPath(
            **paths[s.index].model_dump(), likelihood=math.exp(s.log_likelihood), posterior=math.exp(s.log_posterior)
        )
        for s in sorted(shares, key=lambda s: s.index)
    ]


def _scored_facts(paths: list[ScoredPath]) -> list[ScoredFact]:
    """The facts the paths walk, in order of first use: prior and posterior summed over the paths that walk a
    fact, the likelihood and score of the first (best) of them. For one-step paths, each path's own figures."""
    facts: dict[str, ScoredFact] = {}
    for path in paths:
        for fact in path.facts:
            if seen := facts.get(fact.id):
                seen.prior += path.prior
                seen.posterior += path.posterior
            else:
                facts[fact.id] = ScoredFact(
                    id=fact.id,
                    subject=fact.subject,
                    relation=fact.relation,
                    object=fact.object,
                    text=fact.text,
                    score=path.score,
                    prior=path.prior,
                    likelihood=path.likelihood,
                    posterior=path.posterior,
                )
    return list(facts.values())


def _timings(retrieve_ms: float, outcome: Outcome | None, start: float) -> Timings:
    return Timings(
        retrieve_ms=retrieve_ms,
        queue_ms=outcome.queue_ms if outcome else 0.0,
        generate_ms=outcome.run_ms if outcome else 0.0,
        total_ms=_ms_since(start),
    )


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000
