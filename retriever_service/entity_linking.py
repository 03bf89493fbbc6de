"""Entity linking: find the knowledge-graph entities a question mentions.

Every subject and object name (and every alias) is folded to its word tokens
(`shared.names.fold_tokens`); a question is scanned for token n-grams that are names, longest
first. A `[bracketed]` span is taken as a hint when it names an entity, but linking works
without brackets. Mentions made only of common words ('the', 'what', 'her') are kept only when
nothing better was found, since titles such as 'Her' or 'Up' would otherwise match everywhere,
unless they are three words or more ('The To Do List'). A name that lost an overlap to a longer
one without lying inside it comes after the winners ('America 3000' after 'In America').
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from shared.facts import ENTITY, kind_of
from shared.names import fold, fold_tokens

# Relations whose object is another name for the subject rather than a fact about it.
ALIAS_RELATIONS = frozenset({"also known as", "alias", "alternative name", "label", "name", "alt label"})
_BRACKETED = re.compile(r"\[([^\[\]]+)\]")
_COMMON_WORDS = frozenset(
    """a an the of in on at to for by with from and or is are was were be been do does did what who whom
    which when where why how whose that this these those it its he she her his him they them their i me my
    we us our you your name names list tell give about as there has have had can could would should will
    some any all one ones same also other than then so if not no yes many much more most""".split()
)
MAX_MENTION_TOKENS = 16
LONG_MENTION = 3  # a mention of this many words is a name even when each word is common ("The To Do List")
MASK = "X"  # stands for the linked entity in the text the relation prior reads


@dataclass(frozen=True, slots=True)
class LinkedEntity:
    mention: str  # the folded words of the question that matched
    names: tuple[str, ...]  # the entity names stored in the KG that fold to those words
    hinted: bool = False  # found inside [brackets]


class EntityIndex:
    """Folded name -> the KG names behind it, reference-counted by the facts that use them."""

    def __init__(self) -> None:
        self._names: dict[str, Counter[str]] = {}
        self._relations: Counter[str] = Counter()  # relation -> facts of it (alias relations not counted)
        self._steps: dict[str, Counter[tuple[str, bool]]] = {}  # name -> (relation, inverse) -> facts leaving it so
        self._version = 0  # updates done: what is derived from the index records the version it read
        self._together: tuple[int, dict[tuple[str, bool], set[tuple[str, bool]]]] | None = None  # step -> steps with it
        self._longest = 1

    def __len__(self) -> int:
        return len(self._names)

    def steps_from(self, names: tuple[str, ...]) -> set[tuple[str, bool]]:
        """The (relation, inverse) steps that leave any of the names: where a relation chain can start."""
        return {step for name in names for step in self._steps.get(name, ())}

    def steps_of_kind(self, names: tuple[str, ...]) -> set[tuple[str, bool]]:
        """The steps that leave some entity sharing a step with the names: where a chain can start from a thing
        of their kind. From the euro (`currency^-1`) no currency takes `official language^-1`; from an actor
        without films as a director, other actors do take `directed_by^-1`."""
        if self._together is None or self._together[0] != self._version:
            version = self._version
            snapshot = list(self._steps.values())  # one C call: an ingest running beside it cannot change it midway
            together: dict[tuple[str, bool], set[tuple[str, bool]]] = {}
            for signature in {frozenset(steps) for steps in snapshot if steps}:  # distinct step sets
                for step in signature:
                    together.setdefault(step, set()).update(signature)
            self._together = (version, together)
        return {kin for step in self.steps_from(names) for kin in self._together[1].get(step, ())}

    @property
    def relations(self) -> list[str]:
        """The relations of the stored facts, sorted (aliases are names, not relations)."""
        return sorted(self._relations)

    def _change(self, key: str, name: str, delta: int) -> None:
        if not key:
            return
        counts = self._names.setdefault(key, Counter())
        counts[name] += delta
        if counts[name] <= 0:
            del counts[name]
            if not counts:
                del self._names[key]
        elif delta > 0:
            self._longest = max(self._longest, min(MAX_MENTION_TOKENS, key.count(" ") + 1))

    def update(self, facts: list[dict], delta: int = 1) -> None:
        """Add (`delta=1`) or remove (`delta=-1`) the names of facts {subject, relation, object}; ends that are
        not entities (intermediate nodes, long texts: `shared.facts`) are never names."""
        try:
            for fact in facts:
                self._update_one(fact, delta)
        finally:  # after the change: what was read during it is read again
            self._version += 1

    def _update_one(self, fact: dict, delta: int) -> None:
        subject, obj, relation = fact["subject"], fact["object"], fact.get("relation", "")
        if relation.lower() not in ALIAS_RELATIONS:
            _count(self._relations, relation, delta)
            _count(self._steps.setdefault(subject, Counter()), (relation, False), delta)
            _count(self._steps.setdefault(obj, Counter()), (relation, True), delta)
        if kind_of(fact, "subject") == ENTITY:
            self._change(fold(subject), subject, delta)
            if relation.lower() in ALIAS_RELATIONS:
                self._change(fold(obj), subject, delta)
                return
        if kind_of(fact, "object") == ENTITY and relation.lower() not in ALIAS_RELATIONS:
            self._change(fold(obj), obj, delta)

    def lookup(self, text: str) -> tuple[str, ...]:
        return tuple(sorted(self._names.get(fold(text), ())))

    def link(self, question: str) -> list[LinkedEntity]:
        """Entities mentioned in the question, best first: a bracket hint, else the longest mentions."""
        hinted = [
            LinkedEntity(fold(span), _as_written(names, fold(span), span), hinted=True)
            for span in _BRACKETED.findall(question)
            if (names := self.lookup(span))
        ]
        if hinted:
            return hinted
        tokens = fold_tokens(question)
        chosen, overlapping = self._longest_spans(tokens)  # each longest first

        def specific(span: tuple[int, int]) -> bool:
            words = tokens[span[0] : span[1]]
            return len(words) >= LONG_MENTION or not set(words) <= _COMMON_WORDS

        spans = ([s for s in chosen if specific(s)] or chosen) + [s for s in overlapping if specific(s)]
        keys = dict.fromkeys(" ".join(tokens[i:j]) for i, j in spans)
        return [LinkedEntity(key, _as_written(tuple(sorted(self._names[key])), key, question)) for key in keys]

    def _longest_spans(self, tokens: list[str]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Non-overlapping (start, end) token spans that are names, longer spans winning overlaps;
        then the spans that lost an overlap without lying inside the winner ("america 3000" against
        "in america" in "who stars in america 3000"), as second choices. Both lists are longest
        first, then by position."""
        found = []
        for i in range(len(tokens)):
            for j in range(min(len(tokens), i + self._longest), i, -1):
                if " ".join(tokens[i:j]) in self._names:
                    found.append((i, j))
                    break
        found.sort(key=lambda s: (-(s[1] - s[0]), s[0]))
        taken: set[int] = set()
        chosen, lost = [], []
        for i, j in found:
            if taken.isdisjoint(range(i, j)):
                chosen.append((i, j))
                taken.update(range(i, j))
            else:
                lost.append((i, j))
        return chosen, [(i, j) for i, j in lost if not any(a <= i and j <= b for a, b in chosen)]


def _as_written(names: tuple[str, ...], key: str, text: str) -> tuple[str, ...]:
    """The names behind a key, less those spelled to it that the text does not write as they are (case aside)
    when it writes another: "UTC+09:00" and "UTC-09:00" fold to one key, and a question about the first is not
    about the second. Names the key reaches as an alias stay."""
    folded = text.casefold()
    written = {name for name in names if fold(name) == key and name.casefold() in folded}
    return tuple(name for name in names if name in written or fold(name) != key) if written else names


def _count(counts: Counter, key, delta: int) -> None:
    """counts[key] += delta, the key dropped at zero."""
    counts[key] += delta
    if counts[key] <= 0:
        del counts[key]


def mask_mention(question: str, mention: LinkedEntity | None) -> str:
    """The question's folded words with one linked mention replaced by MASK ("who directed X"),
    so that the entity's name, which dominates a sentence vector, does not decide the relation."""
    tokens = fold_tokens(question)
    if mention is not None:
        words = mention.mention.split()
        for i in range(len(tokens) - len(words) + 1):
            if tokens[i : i + len(words)] == words:
                return " ".join([*tokens[:i], MASK, *tokens[i + len(words) :]])
    return " ".join(tokens)
