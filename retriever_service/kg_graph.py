"""The KG held in memory as adjacency sets, for the offline work that walks it many times: labelling
training questions with the chains that answer them and writing questions from chains.

Serving never uses it: the path search walks the Qdrant store hop by hop (`path_search.py`).
Entities are names as stored; only ENTITY ends are answers, NODE ends are walked through.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator

from retriever_service.chains import Chain, Step
from shared.facts import ENTITY, NODE, kind_of


class KGGraph:
    def __init__(self) -> None:
        self._next: dict[tuple[str, Step], set[str]] = defaultdict(set)  # (entity, step) -> entities reached
        self._steps: dict[str, set[Step]] = defaultdict(set)  # entity -> the steps that leave it
        self.kinds: dict[str, str] = {}  # entity -> its kind when not ENTITY
        self.facts = 0

    @classmethod
    def of(cls, payloads: Iterable[dict], alias_relations: frozenset[str] = frozenset()) -> KGGraph:
        """From stored fact payloads {subject, relation, object, ...}; alias relations are names, not edges."""
        graph = cls()
        for payload in payloads:
            if payload["relation"].lower() in alias_relations:
                continue
            graph.add(payload)
        return graph

    def add(self, payload: dict) -> None:
        subject, relation, obj = payload["subject"], payload["relation"], payload["object"]
        for end, name in (("subject", subject), ("object", obj)):
            if (kind := kind_of(payload, end)) != ENTITY:
                self.kinds[name] = kind
        forward, inverse = Step(relation), Step(relation, True)
        self._next[(subject, forward)].add(obj)
        self._next[(obj, inverse)].add(subject)
        self._steps[subject].add(forward)
        self._steps[obj].add(inverse)
        self.facts += 1

    def entities(self) -> set[str]:
        return set(self._steps)

    def relations(self) -> set[str]:
        return {step.relation for steps in self._steps.values() for step in steps}

    def symmetric_relations(self) -> set[str]:
        """The relations most of whose edges also run the other way (borders, spouse), in one pass."""
        edges: Counter[str] = Counter()
        back: Counter[str] = Counter()
        for (e, step), reached in self._next.items():
            if not step.inverse:
                edges[step.relation] += len(reached)
                back[step.relation] += sum(e in self._next.get((t, step), ()) for t in reached)
        return {r for r, n in edges.items() if back[r] >= n / 2}

    def step_ends(self) -> dict[Step, set[str]]:
        """Every step's ends: the answer entities it arrives at from anywhere (a relation's objects, its
        inverse's subjects)."""
        ends: dict[Step, set[str]] = defaultdict(set)
        for (_, step), reached in self._next.items():
            ends[step].update(e for e in reached if self.is_answer(e))
        return {step: names for step, names in ends.items() if names}

    def steps_from(self, entities: Iterable[str]) -> set[Step]:
        return set().union(*(self._steps.get(e, ()) for e in entities))

    def follow(self, entities: Iterable[str], step: Step) -> set[str]:
        return set().union(*(self._next.get((e, step), ()) for e in entities))

    def is_answer(self, entity: str) -> bool:
        return entity not in self.kinds

    def walk(self, start: Iterable[str], chain: Chain, max_frontier: int | None = None) -> set[str] | None:
        """The answers a chain reaches from the start entities: each step's entities, minus every entity
        reached before (the start included), so "films that share an actor with X" leaves X out; a
        NODE end is walked through by any one more step. None when a frontier passes max_frontier."""
        seen = set(start)
        frontier = set(seen)
        for step in chain:
            frontier = self.follow(frontier, step) - seen
            if max_frontier is not None and len(frontier) > max_frontier:
                return None
            seen |= frontier
        return self.answers(frontier, seen)

    def answers(self, reached: set[str], seen: set[str]) -> set[str]:
        """The answers among the entities a walk reached: NODE ends walked through by one more step (to
        entities not seen before), TEXT ends dropped."""
        nodes = {e for e in reached if self.kinds.get(e) == NODE}
        if nodes:
            through = {e for n in nodes for s in self._steps[n] for e in self.follow([n], s)} - seen
            reached = (reached - nodes) | through
        return {e for e in reached if self.is_answer(e)}

    def chains_from(self, starts: set[str], max_hops: int, max_frontier: int) -> Iterator[tuple[Chain, set[str]]]:
        """Every chain that leaves the start entities, up to max_hops steps, with its answers (as `walk` gives
        them); depth first, each prefix's frontier computed once for all the chains it begins. A step that
        reaches more than max_frontier entities is not followed (hubs: a year, a language)."""
        stack: list[tuple[Chain, set[str], set[str]]] = [((), set(starts), set(starts))]  # chain, frontier, seen
        while stack:
            chain, frontier, seen = stack.pop()
            if len(chain) == max_hops:
                continue
            for step in sorted(self.steps_from(frontier)):
                reached = self.follow(frontier, step) - seen
                if not reached or len(reached) > max_frontier:
                    continue
                extended, seen_now = (*chain, step), seen | reached
                if answers := self.answers(reached, seen_now):
                    yield extended, answers
                stack.append((extended, reached, seen_now))
