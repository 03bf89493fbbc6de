"""A path search's result as the retriever's reply (`shared.retriever_api.PathSearchResponse`): the
request's bounds, the thresholds, the answer set and the abstention verdict. The service's endpoints and
the offline users (distillation, benchmarks) build replies here, so they see what the service answers."""

from __future__ import annotations

from retriever_service.chains import NONE_KEY, chain_key, chain_words, parse_chain
from retriever_service.path_search import Path, PathLimits, PathSearch, PathSearchResult, ScoredPath
from retriever_service.relation_prior import RelationPrior
from retriever_service.settings import RetrieverSettings
from shared.errors import ServiceError
from shared.retriever_api import (
    AnswerOut,
    ChainOut,
    LinkedEntityOut,
    PathCuts,
    PathFactOut,
    PathOptions,
    PathOut,
    PathRef,
    PathSearchResponse,
    PathStep,
)

DEFAULT_ANSWER_THRESHOLD = 0.5


def search_replies(
    search: PathSearch, settings: RetrieverSettings, queries: list[str], options: PathOptions
) -> list[PathSearchResponse]:
    """Path search for the queries, as the service replies (k and bounds from the options, else the settings)."""
    k, limits = options.k or settings.default_k, path_limits(settings, options)
    answer_t, abstain_t = thresholds(settings, search.chain_prior)
    return [
        to_reply(r, k, limits.max_hops, settings.tau, answer_t, abstain_t) for r in search.search(queries, k, limits)
    ]


def path_limits(settings: RetrieverSettings, options: PathOptions) -> PathLimits:
    """The request's bounds, each defaulting to its setting; 422 past a limit."""
    values = {}
    for name, default, limit in (
        ("hops", "max_hops", "max_hops"),
        ("beam", "path_beam", "max_path_beam"),
        ("facts_per_step", "facts_per_step", "max_facts_per_step"),
        ("paths_per_chain", "paths_per_chain", "max_paths_per_chain"),
        ("max_answers", "answers", "max_answers"),
    ):
        value, most = getattr(options, name) or getattr(settings, default), getattr(settings, limit)
        if value > most:
            raise ServiceError(422, f"{name}_out_of_range", f"{name} must be between 1 and {most}, got {value}")
        values[name] = value
    return PathLimits(
        max_hops=values["hops"],
        beam=values["beam"],
        facts_per_step=values["facts_per_step"],
        paths_per_chain=values["paths_per_chain"],
        max_answers=values["max_answers"],
    )


def thresholds(settings: RetrieverSettings, prior: RelationPrior) -> tuple[float, float]:
    """(answer threshold, abstain threshold): the settings', else the fitted prior's, else the defaults."""
    answer = settings.answer_threshold if settings.answer_threshold is not None else prior.answer_threshold
    abstain = settings.abstain_threshold if settings.abstain_threshold is not None else prior.abstain_threshold
    return (DEFAULT_ANSWER_THRESHOLD if answer is None else answer), (0.0 if abstain is None else abstain)


def to_reply(
    r: PathSearchResult, k: int, hops: int, tau: float, answer_t: float, abstain_t: float
) -> PathSearchResponse:
    reason, note = _verdict(r, abstain_t)
    in_set = [] if reason else [a for i, a in enumerate(r.answers) if a.prob >= answer_t or i == 0]
    return PathSearchResponse(
        query=r.query,
        k=k,
        hops=hops,
        tau=tau,
        linked=[LinkedEntityOut(mention=e.mention, names=list(e.names), hinted=e.hinted) for e in r.linked],
        paths=[_path_out(p) for p in r.paths],
        chains=[
            ChainOut(
                chain=c.key,
                words=chain_words(c.chain),
                mention=r.linked[c.mention].mention,
                log_prob=c.log_prob,
                prob=c.prob,
                paths=len(c.paths),
            )
            for c in r.chains
        ],
        answers=[AnswerOut(name=a.name, prob=a.prob, paths=[_path_ref(p.path) for p in a.paths]) for a in in_set],
        support=r.support,
        answer_threshold=answer_t,
        abstain_threshold=abstain_t,
        abstain=reason is not None,
        reason=reason,
        note=note,
        best_chain=r.best_chain,
        cuts=PathCuts(**vars(r.cuts)),
    )


def _verdict(r: PathSearchResult, abstain_t: float) -> tuple[str | None, str | None]:
    """(reason, note) when the graph has no answer for the query, else (None, None). The note says what the
    prior read and, when a path from the topic was found, the closest chain the graph has for it."""
    if not r.linked:
        return "no_entity", "no entity of the question was found in the graph"
    about = r.linked[r.chains[0].mention if r.chains else 0].names[0]
    lacking = r.best_chain == NONE_KEY
    asked = chain_words(parse_chain(r.best_chain)) if r.best_chain and not lacking else "what the question asks"
    if not r.chains:
        return "no_path", f"the graph has no path from {about} for {asked}"
    if r.support >= abstain_t:
        return None, None
    support = f"support {r.support:.3f} < {abstain_t:.3f}"
    closest = chain_words(r.chains[0].chain)
    if lacking:
        return "low_support", (
            f"the question most likely asks for something the graph does not hold about {about} ({support}); "
            f"the closest it has: {closest}"
        )
    if any(c.key == r.best_chain and c.mention == r.chains[0].mention for c in r.chains):
        return "low_support", f"the question reads only weakly as asking for {asked}, which {about} has ({support})"
    return "low_support", (
        f"the graph has no path from {about} for what the question most likely asks ({asked}); {support}; "
        f"the closest it has: {closest}"
    )


def _path_ref(path: Path) -> PathRef:
    steps = [PathStep(relation=step.relation, inverse=step.inverse, entity=entity) for step, entity in path.steps()]
    return PathRef(id=path.id, topic=path.entities[0], chain=chain_key(path.chain), steps=steps)


def _path_out(scored: ScoredPath) -> PathOut:
    path = scored.path
    facts = [
        PathFactOut(id=f.id, subject=f.subject, relation=f.relation, object=f.object, text=f.text, cosine=f.cosine)
        for f in path.facts
    ]
    return PathOut(
        **_path_ref(path).model_dump(),
        facts=facts,
        text=path.text,
        cosine=path.cosine,
        score=scored.score,
        prior=scored.prior,
    )
