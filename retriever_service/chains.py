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

INVERSE = "^-1"
SEPARATOR = "/"
MAX_HOPS = 3
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
