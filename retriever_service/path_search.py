"""Path search: relation chains from the question's linked entities, grounded in the store hop by hop.

For each linked mention m the chain prior reads the question with m masked and gives
log p(c | x, m) over relation chains c of 1 to 3 steps (`chains.py`). The best `beam` chains of
each mention are grounded in the KG one step at a time: every chain prefix of a step is one
filtered store query (its frontier entities on the step's side, its relation), all of the step's
queries in one batch call, each returning at most `facts_per_step` facts, the most similar to the
question first. Partial paths are joined on their last entity and kept simple (no entity twice),
at most `paths_per_chain` per chain, the best first. A path that ends at an intermediate NODE is
walked through by one more step ("joined through"). What a cap cut is counted in `Cuts`.

Scores, as for facts (`retrieval.py`): a path's score is the mean cosine of its facts to the
question plus `weight * log p(c | x, m)`, plus `naming_weight` times the share of the chain's steps
whose relation the question names (`chains.named_share`: "which countries border X" names one step
of borders/borders), less `mention_penalty` per rank of m below the linker's first mention (a title
word such as "Together" in "who wrote films together with X"); the k best paths are the documents,
with the prior p(d|x) = softmax(score / tau) over them. A chain's probability is the softmax of its best path's
score over the grounded chains, and an entity's probability of being an answer is the sum of the
probabilities of the chains that reach it: P(y in Y | x) = sum_c p(c|x) [y in ends(c)].
`support` is the share of the chain prior's mass (as fitted, at temperature 1) on the chains whose relations
the best mention's grounded chains take, among the chains a thing of its kind can start (`_support`): low
when the question asks for a relation the graph lacks, or one no path from its topic entity takes.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from retriever_service.chains import MAX_HOPS, NONE_KEY, Chain, Step, chain_key, content_words, named_share, parse_chain
from retriever_service.encoder import Encoder
from retriever_service.entity_linking import EntityIndex, LinkedEntity, mask_mention
from retriever_service.relation_prior import RelationPrior
from retriever_service.retrieval import softmax_prior, strip_brackets
from retriever_service.store import FactFilter, FactStore, StoredHit
from shared.facts import ENTITY, NODE, TEXT, kind_of


@dataclass(frozen=True)
class PathLimits:
    """Bounds of one search; every one keeps time and memory bounded on hub entities."""

    max_hops: int = MAX_HOPS  # longest chain
    beam: int = 4  # chains grounded per linked mention, the most likely first
    facts_per_step: int = 500  # facts fetched per chain step
    paths_per_chain: int = 2000  # partial paths kept per chain after each step
    max_answers: int = 500  # entities returned with their probability of being an answer


@dataclass(frozen=True, slots=True)
class PathFact:
    id: str
    subject: str
    relation: str
    object: str
    text: str
    cosine: float
    subject_kind: str = ENTITY
    object_kind: str = ENTITY

    @classmethod
    def of(cls, hit: StoredHit) -> PathFact:
        p = hit.payload
        return cls(
            hit.id,
            p["subject"],
            p["relation"],
            p["object"],
            p["text"],
            hit.score,
            kind_of(p, "subject"),
            kind_of(p, "object"),
        )


@dataclass(frozen=True, slots=True)
class Path:
    """A grounded chain: from `entities[0]` (the topic) through each fact to `entities[-1]` (its end)."""

    mention: int  # index of the linked mention it starts from
    chain: Chain
    facts: tuple[PathFact, ...]
    entities: tuple[str, ...]
    end_kind: str = ENTITY

    @property
    def cosine(self) -> float:
        return sum(f.cosine for f in self.facts) / len(self.facts)

    @property
    def text(self) -> str:
        """What the generator reads: the facts' sentences in path order."""
        return ". ".join(f.text for f in self.facts)

    @property
    def id(self) -> str:
        return "+".join(f.id for f in self.facts)

    def steps(self) -> list[tuple[Step, str]]:
        """(step, the entity it arrives at) for each fact, a node's joined-through step included."""
        return [
            (Step(f.relation, f.subject == after), after)
            for f, after in zip(self.facts, self.entities[1:], strict=True)
        ]

    def extend(self, fact: PathFact, step: Step) -> Path | None:
        """This path one fact further along `step`, or None when the fact does not start at its end or would
        revisit an entity."""
        start, arrival, kind = (
            (fact.object, fact.subject, fact.subject_kind)
            if step.inverse
            else (fact.subject, fact.object, fact.object_kind)
        )
        if start != self.entities[-1] or arrival in self.entities or self.end_kind == TEXT:
            return None
        return Path(self.mention, self.chain, (*self.facts, fact), (*self.entities, arrival), kind)


@dataclass
class ScoredPath:
    path: Path
    score: float
    prior: float = 0.0


class PriorChain(NamedTuple):
    """One of the chain prior's keys, parsed: the chain, the relations it takes, its first step as the entity
    index keys steps ((relation, inverse): `EntityIndex.steps_from`)."""

    chain: Chain
    relations: frozenset[str]
    start: tuple[str, bool]

    @classmethod
    def of(cls, key: str) -> PriorChain:
        chain = parse_chain(key)
        return cls(chain, _relations(chain), (chain[0].relation, chain[0].inverse))


@dataclass
class ChainResult:
    mention: int
    chain: Chain
    log_prob: float  # log p(c | x, m) from the chain prior
    paths: list[Path]  # complete, best first
    named: float = 0.0  # the share of its steps the question names (`chains.named_share`)
    best_score: float = -math.inf
    prob: float = 0.0  # p(c|x) among the grounded chains

    @property
    def key(self) -> str:
        return chain_key(self.chain)


@dataclass
class AnswerSupport:
    name: str
    prob: float  # P(name is an answer | x)
    paths: list[ScoredPath]  # the best paths that reach it, best first


@dataclass
class Cuts:
    """What the limits left out of a search."""

    chains_not_grounded: int = 0  # candidate chains beyond the beam
    steps_at_fact_limit: int = 0  # chain steps whose query returned facts_per_step facts (more may exist)
    chains_at_path_limit: int = 0  # chains whose partial paths were cut to paths_per_chain
    answers_cut: int = 0  # answer entities beyond max_answers


@dataclass
class PathSearchResult:
    query: str
    linked: list[LinkedEntity]
    paths: list[ScoredPath]  # the k documents, best first
    chains: list[ChainResult]  # grounded chains, most probable first
    answers: list[AnswerSupport]  # best first
    support: float  # share of the prior's mass on the best mention's grounded chains (0 when nothing is linked)
    best_chain: str | None  # the best mention's most probable chain, grounded or not, or NONE_KEY (`_support`)
    cuts: Cuts = field(default_factory=Cuts)


class PathSearch:
    def __init__(
        self,
        encoder: Encoder,
        store: FactStore,
        entities: EntityIndex,
        prior: RelationPrior | None,
        tau: float,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        """`prior` may be set later (fitting tries several); a search needs one."""
        self.encoder, self.store, self.entities, self.prior, self.tau = encoder, store, entities, prior, tau
        self.observe = observe or (lambda stage, seconds: None)  # stage: "embed" or "search"
        self._parsed: tuple[list[str], dict[int, PriorChain]] | None = None

    @property
    def chain_prior(self) -> RelationPrior:
        """The prior, which a search needs (`prior` may be set after construction)."""
        if self.prior is None:
            raise RuntimeError("the path search has no chain prior")
        return self.prior

    @property
    def _chains(self) -> dict[int, PriorChain]:
        """The prior's chains by column (NONE_KEY left out), parsed once per list of keys."""
        keys = self.chain_prior.keys
        if self._parsed is None or self._parsed[0] is not keys:
            self._parsed = (keys, {i: PriorChain.of(k) for i, k in enumerate(keys) if k != NONE_KEY})
        return self._parsed[1]

    def search(self, queries: list[str], k: int, limits: PathLimits) -> list[PathSearchResult]:
        links = [self.entities.link(q) for q in queries]
        start = time.perf_counter()
        masked = [mask_mention(q, m) for q, linked in zip(queries, links, strict=True) for m in linked]
        vectors = self.encoder.encode([strip_brackets(q) for q in queries] + masked)  # (Q + M, H)
        readings = np.split(
            self.chain_prior.log_probs(vectors[len(queries) :]),  # (sum M, R)
            np.cumsum([len(linked) for linked in links])[:-1],
        )
        self.observe("embed", time.perf_counter() - start)
        cuts = [Cuts() for _ in queries]
        candidates = [
            self._candidates(r, linked, content_words(q), limits, cut)
            for q, r, linked, cut in zip(queries, readings, links, cuts, strict=True)
        ]
        start = time.perf_counter()
        grounded = self._ground(vectors[: len(queries)], links, candidates, limits, cuts)
        self.observe("search", time.perf_counter() - start)
        return [
            self._result(q, linked, chains, reading, k, limits, cut)
            for q, linked, (chains, cut), reading in zip(queries, links, grounded, readings, strict=True)
        ]

    def _candidates(
        self, reading: np.ndarray, linked: list[LinkedEntity], words: list[str], limits: PathLimits, cuts: Cuts
    ) -> list[ChainResult]:
        """The beam: each mention's best chains of at most max_hops steps that can start from it (its first step
        leaves one of its names), by their term in the score (`_chain_term`), from its reading (M, R) and the
        question's words; chains as good as the last one kept are kept too (an unfitted prior ties them all:
        cosine decides among them)."""
        columns = [(i, c) for i, c in self._chains.items() if len(c.chain) <= limits.max_hops]
        out: list[ChainResult] = []
        for mention, row in enumerate(reading):
            starts = self.entities.steps_from(linked[mention].names)
            chains = [
                ChainResult(mention, c.chain, float(row[i]), [], named_share(c.chain, words))
                for i, c in columns
                if c.start in starts
            ]
            chains.sort(key=lambda c: -self._chain_term(c))
            last = self._chain_term(chains[min(limits.beam, len(chains)) - 1]) if chains else 0.0
            best = [c for n, c in enumerate(chains) if n < limits.beam or self._chain_term(c) >= last]
            out.extend(best)
            cuts.chains_not_grounded += len(chains) - len(best)
        return out

    def _ground(
        self,
        vectors: np.ndarray,
        links: list[list[LinkedEntity]],
        candidates: list[list[ChainResult]],
        limits: PathLimits,
        cuts: list[Cuts],
    ) -> list[tuple[list[ChainResult], Cuts]]:
        """Every candidate's complete paths, one batched store call per step (shared prefixes queried once)."""
        partial: dict[tuple[int, int, Chain], list[Path]] = {  # (query, mention, prefix) -> partial paths
            (q, c.mention, ()): [Path(c.mention, (), (), (name,)) for name in links[q][c.mention].names]
            for q, chains in enumerate(candidates)
            for c in chains
        }
        for depth in range(limits.max_hops):
            wanted = {
                (q, c.mention, c.chain[: depth + 1])
                for q, chains in enumerate(candidates)
                for c in chains
                if len(c.chain) > depth
            }
            partial.update(self._step(vectors, partial, sorted(wanted, key=_prefix_order), limits, cuts))
        self._join_through_nodes(vectors, candidates, partial, limits, cuts)
        for q, chains in enumerate(candidates):
            for c in chains:
                c.paths = [p for p in partial.get((q, c.mention, c.chain), []) if p.end_kind == ENTITY]
        return [([c for c in chains if c.paths], cut) for chains, cut in zip(candidates, cuts, strict=True)]

    def _step(
        self,
        vectors: np.ndarray,
        partial: dict,
        wanted: list[tuple[int, int, Chain]],
        limits: PathLimits,
        cuts: list[Cuts],
    ) -> dict[tuple[int, int, Chain], list[Path]]:
        """The partial paths of each wanted prefix, one fact longer than its parent prefix's."""
        parents = [partial.get((q, m, prefix[:-1]), []) for q, m, prefix in wanted]
        filters = [
            FactFilter(
                tuple(sorted({p.entities[-1] for p in paths if p.end_kind != TEXT})),
                side="object" if prefix[-1].inverse else "subject",
                relation=prefix[-1].relation,
            )
            for (_, _, prefix), paths in zip(wanted, parents, strict=True)
        ]
        asked = [i for i, f in enumerate(filters) if f.names]
        hits = (
            self.store.search(
                vectors[[wanted[i][0] for i in asked]], limits.facts_per_step, [filters[i] for i in asked]
            )
            if asked
            else []
        )
        found = dict(zip(asked, hits, strict=True))
        out = {}
        for i, (q, m, prefix) in enumerate(wanted):
            facts = [PathFact.of(h) for h in found.get(i, [])]
            cuts[q].steps_at_fact_limit += len(facts) >= limits.facts_per_step
            out[(q, m, prefix)] = self._joined(parents[i], facts, prefix, limits, cuts[q])
        return out

    @staticmethod
    def _joined(paths: list[Path], facts: list[PathFact], prefix: Chain, limits: PathLimits, cuts: Cuts) -> list[Path]:
        """Each path extended by each fact that starts at its end, best mean cosine first, cut to paths_per_chain."""
        step = prefix[-1]
        by_start: dict[str, list[PathFact]] = defaultdict(list)
        for fact in facts:
            by_start[fact.object if step.inverse else fact.subject].append(fact)
        longer = [
            extended
            for path in paths
            for fact in by_start.get(path.entities[-1], ())
            if (extended := Path(path.mention, prefix, path.facts, path.entities, path.end_kind).extend(fact, step))
        ]
        longer.sort(key=lambda p: -p.cosine)
        if len(longer) > limits.paths_per_chain:
            cuts.chains_at_path_limit += 1
            longer = longer[: limits.paths_per_chain]
        return longer

    def _join_through_nodes(self, vectors, candidates, partial, limits, cuts) -> None:
        """Paths that end at an intermediate NODE are extended by one more fact of that node (any relation)."""
        wanted = [
            (q, c.mention, c.chain)
            for q, chains in enumerate(candidates)
            for c in chains
            if any(p.end_kind == NODE for p in partial.get((q, c.mention, c.chain), []))
        ]
        for q, m, chain in wanted:
            paths = partial[(q, m, chain)]
            nodes = tuple(sorted({p.entities[-1] for p in paths if p.end_kind == NODE}))
            [hits] = self.store.search(vectors[[q]], limits.facts_per_step, [FactFilter(nodes, side="subject")])
            through = [
                extended
                for p in paths
                if p.end_kind == NODE
                for h in hits
                if (extended := p.extend(fact := PathFact.of(h), Step(fact.relation)))
            ]
            partial[(q, m, chain)] = sorted([p for p in paths if p.end_kind != NODE] + through, key=lambda p: -p.cosine)

    def _result(
        self,
        query: str,
        linked: list[LinkedEntity],
        chains: list[ChainResult],
        reading: np.ndarray,
        k: int,
        limits: PathLimits,
        cuts: Cuts,
    ) -> PathSearchResult:
        scored = [ScoredPath(p, p.cosine + self._chain_term(c)) for c in chains for p in c.paths]
        for c in chains:
            c.best_score = max(p.cosine for p in c.paths) + self._chain_term(c)
        for c, prob in zip(chains, softmax_prior([c.best_score for c in chains], self.tau), strict=True):
            c.prob = prob
        chains.sort(key=lambda c: -c.prob)
        scored.sort(key=lambda s: -s.score)
        documents = scored[:k]
        for doc, prior in zip(documents, softmax_prior([d.score for d in documents], self.tau), strict=True):
            doc.prior = prior
        answers = _answers(chains, scored, limits, cuts)
        _, best_chain, support = self._support(chains, reading, linked)
        return PathSearchResult(query, linked, documents, chains, answers, support, best_chain, cuts)

    def _chain_term(self, chain: ChainResult) -> float:
        """What a chain adds to its paths' mean cosine: weight * log p(c | x, m), plus naming_weight times the share
        of its steps the question names, less the penalty of m's rank."""
        prior = self.chain_prior
        return prior.weight * chain.log_prob + prior.naming_weight * chain.named - prior.mention_penalty * chain.mention

    def _support(
        self, chains: list[ChainResult], reading: np.ndarray, linked: list[LinkedEntity]
    ) -> tuple[int | None, str | None, float]:
        """(best mention, its most likely reading, the share of the prior's mass on the chains the graph has for it).

        The reading is the prior's most likely chain, grounded or not, or NONE_KEY when the prior puts more
        mass there than on any chain (it reads the question as asking for a relation the graph lacks).

        A chain counts when a grounded chain of the mention takes every relation it takes, in either direction:
        the prior's mass on the wrong direction of a relation the topic has ("which ISO code is assigned to
        Kenya" read as ISO code^-1), on one step of a grounded chain ("which city is the capital of the country
        that uses the yen" read as capital) or on its steps in another order is still about what the graph holds
        near the topic; the mass on relations no grounded chain takes, and on NONE_KEY, is not.

        The share is of the mass on the counted chains, on those a thing of the topic's kind can start
        (`EntityIndex.steps_of_kind`) and on NONE_KEY: the prior reads the question alone, and on "which
        countries use the euro" spread most of its mass over chains that start from languages, time zones,
        cities and codes, which no currency starts. The mass is that of the regression as fitted (temperature
        1): the temperature that suits the scores flattens the distribution, and left a quarter of the mass on
        some grounded chain for any question about a film."""
        if not len(reading):
            return None, None, 0.0
        mention = chains[0].mention if chains else 0
        fitted = reading[mention] * self.chain_prior.temperature  # log-probs at temperature 1, up to a constant
        fitted = fitted - np.logaddexp.reduce(fitted)
        best = max(self._chains, key=lambda i: fitted[i])
        held = {_relations(c.chain) for c in chains if c.mention == mention}
        kind = self.entities.steps_of_kind(linked[mention].names)
        mass = held_mass = 0.0
        for i, c in self._chains.items():
            holds = any(c.relations <= h for h in held)
            if holds or c.start in kind:
                p = math.exp(fitted[i])
                mass += p
                held_mass += p if holds else 0.0
        none = self.chain_prior.column(NONE_KEY)
        mass += math.exp(fitted[none]) if none is not None else 0.0
        if none is not None and fitted[none] > fitted[best]:
            best = none
        return mention, self.chain_prior.keys[best], held_mass / mass if mass else 0.0


def _answers(
    chains: list[ChainResult], scored: list[ScoredPath], limits: PathLimits, cuts: Cuts
) -> list[AnswerSupport]:
    """P(y in Y | x) = sum over the grounded chains that reach y of p(c|x); each answer's best paths."""
    prob: dict[str, float] = defaultdict(float)
    for c in chains:
        for end in {p.entities[-1] for p in c.paths}:
            prob[end] += c.prob
    witnesses: dict[str, list[ScoredPath]] = defaultdict(list)
    for s in scored:  # best first
        if len(witnesses[s.path.entities[-1]]) < 2:
            witnesses[s.path.entities[-1]].append(s)
    ranked = sorted(prob, key=lambda name: (-prob[name], -witnesses[name][0].score, name))
    cuts.answers_cut = max(0, len(ranked) - limits.max_answers)
    return [AnswerSupport(name, prob[name], witnesses[name]) for name in ranked[: limits.max_answers]]


def _relations(chain: Chain) -> frozenset[str]:
    return frozenset(step.relation for step in chain)


def _prefix_order(item: tuple[int, int, Chain]) -> tuple:
    q, m, prefix = item
    return q, m, chain_key(prefix)
