"""Relation chains: what a multi-hop question asks for, as steps from its topic entity.

A step follows one relation from the entity reached so far, forward (the entity is the fact's
subject; the step arrives at its object) or inverse (the entity is the object; it arrives at the
subject). A chain is 1 to 3 steps; its key is the steps' keys joined by "/", a step's key the
relation, with "^-1" when inverse:

    "directed_by"                        who directed X
    "starred_actors^-1/directed_by"      who directed the films X acted in

A one-step key is the relation prior's key of a fact seen from its linked entity
(`relation_prior.relation_key`), so a 1-hop question is the one-step case of the same keys.
"""

from __future__ import annotations

from typing import NamedTuple

from shared.facts import relation_label
from shared.names import fold_tokens

INVERSE = "^-1"
SEPARATOR = "/"
MAX_HOPS = 3
STEM = 4  # letters two words must share at their start to name the same thing ("border", "borders")
_FUNCTION_WORDS = frozenset("a an the of in on at to by for with has have is are was from and or".split())
NONE_KEY = "<none>"  # the prior's key for a question about something the graph has no relation for


class Step(NamedTuple):  # a tuple: hashed and compared in C, as the offline walks do millions of times
    relation: str
    inverse: bool = False

    @property
    def key(self) -> str:
        return self.relation + (INVERSE if self.inverse else "")

    @classmethod
    def parse(cls, key: str) -> Step:
        if key.endswith(INVERSE):
            return cls(key[: -len(INVERSE)], True)
        return cls(key, False)


Chain = tuple[Step, ...]


def chain_key(chain: Chain) -> str:
    return SEPARATOR.join(step.key for step in chain)


def parse_chain(key: str) -> Chain:
    """The steps of a key; ValueError for an empty key or one of more than MAX_HOPS steps."""
    parts = key.split(SEPARATOR) if key else []
    if not 1 <= len(parts) <= MAX_HOPS or not all(parts):
        raise ValueError(f"a chain key has 1 to {MAX_HOPS} non-empty steps joined by {SEPARATOR!r}: {key!r}")
    return tuple(Step.parse(part) for part in parts)


def is_chain_key(key: str) -> bool:
    return key != NONE_KEY


def chain_words(chain: Chain) -> str:
    """A chain for people: 'starred actors (reversed) -> directed by'."""
    return " -> ".join(relation_label(s.relation) + (" (reversed)" if s.inverse else "") for s in chain)


def content_words(text: str) -> list[str]:
    """The folded words of a text that can name a relation ("has genre" -> ["genre"])."""
    return [w for w in fold_tokens(text) if w not in _FUNCTION_WORDS]


def named_share(chain: Chain, question_words: list[str]) -> float:
    """The share of the chain's steps whose relation the question names: a question word shares its first STEM
    letters with a word of the relation's label, each question word naming one step at most ("which countries
    border X" names one step of borders/borders, and no step of borders/population but the first)."""
    free = list(question_words)
    named = 0
    for step in chain:
        stems = {w[:STEM] for w in content_words(relation_label(step.relation))}
        hit = next((w for w in free if w[:STEM] in stems), None)
        if hit is not None:
            free.remove(hit)
            named += 1
    return named / len(chain)
