"""Triples, the fact sentences made from them, and their deterministic ids.

A fact is one triple (subject, relation, object) of the knowledge graph, read as a short
sentence. Its id is a UUIDv5 of the triple, so loading the same triple twice stores it once.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

# A fixed namespace: ids must stay stable across versions, or re-ingest would duplicate facts.
FACT_NAMESPACE = uuid.UUID("6f6b8a1e-3c1d-5b7a-9d2e-6b2a4c8e0f11")

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[_\s]+")


def humanize(name: str) -> str:
    """'birthPlace' -> 'birth place', 'directed_by' -> 'directed by', 'Tom_Hanks' -> 'Tom Hanks'.

    camelCase is split only when the name has no separator of its own and starts lowercase,
    so proper names such as 'McDonald' or 'iPhone_X' are left alone.
    """
    if "_" not in name and " " not in name and name[:1].islower():
        name = _CAMEL_BOUNDARY.sub(" ", name)
        return _SEPARATORS.sub(" ", name).strip().lower()
    return _SEPARATORS.sub(" ", name).strip()


# What a triple's end is. An entity (or a short literal: a name, a date, a number) can be linked and can
# be an answer. A node is an intermediate resource (DBpedia's `X__PersonFunction__1`): paths go through
# it, but it is never linked nor offered as an answer. A text is a long literal (an abstract): it can be
# read as context, but it is never linked nor an answer.
ENTITY, NODE, TEXT = "entity", "node", "text"
KINDS = (ENTITY, NODE, TEXT)


@dataclass(frozen=True, slots=True)
class Triple:
    subject: str
    relation: str
    object: str
    subject_kind: str = ENTITY
    object_kind: str = ENTITY

    def __post_init__(self) -> None:
        if self.subject_kind not in KINDS or self.object_kind not in KINDS:
            raise ValueError(f"a triple end's kind is one of {KINDS}: {self.subject_kind!r}, {self.object_kind!r}")

    @property
    def id(self) -> str:
        return fact_id(self.subject, self.relation, self.object)

    @property
    def text(self) -> str:
        return fact_sentence(self.subject, self.relation, self.object)

    def payload(self) -> dict[str, str]:
        """What the store keeps; a kind is written only when it is not ENTITY (stores from before kinds read the
        same)."""
        kinds = {
            f"{end}_kind": kind
            for end, kind in (("subject", self.subject_kind), ("object", self.object_kind))
            if kind != ENTITY
        }
        return {"subject": self.subject, "relation": self.relation, "object": self.object, "text": self.text, **kinds}


def kind_of(payload: dict, end: str) -> str:
    """The kind of a stored fact's end ("subject" or "object")."""
    return payload.get(f"{end}_kind", ENTITY)


def fact_id(subject: str, relation: str, obj: str) -> str:
    # \x1f (unit separator) cannot occur in a name read from any of our formats' fields.
    return str(uuid.uuid5(FACT_NAMESPACE, f"{subject}\x1f{relation}\x1f{obj}"))


def relation_label(relation: str) -> str:
    """The words of a relation: 'directed_by' -> 'directed by', 'birthPlace' -> 'birth place'."""
    return humanize(relation).lower()


def fact_sentence(subject: str, relation: str, obj: str) -> str:
    """The text that is embedded and shown: 'Forrest Gump directed by Robert Zemeckis'."""
    return f"{subject} {relation_label(relation)} {obj}"


MIN_CANDIDATE_PRIOR = 1e-6


@dataclass(frozen=True, slots=True)
class Evidence:
    """A document the generator reads: a fact or a relation path, as text, with the names it offers as answers
    (a fact: its object and subject; a path: its end) and its prior p(d|x)."""

    text: str
    answers: tuple[str, ...]
    prior: float


def candidate_names(
    documents: list[Evidence],
    linked: set[str],
    min_prior: float = MIN_CANDIDATE_PRIOR,
    answer_set: set[str] | None = None,
) -> list[str]:
    """The entity names an answer may be (constrained decoding): the answers the documents offer, best document
    first, from documents whose prior p(d|x) is at least min_prior, without the question's own linked entities
    unless nothing else is left (a KG question rarely answers with the entity it asks about). A document under
    min_prior carries no weight in the marginal, but its names would still be open to a reader's slip: a
    question's word that is also a tag ("which films did X direct": "film") brings in a `has_tags` fact of some
    other film. With the retriever's `answer_set`, the names in it, when any is there: a path of little weight
    still offers its end (an intermediate entity of a better path, the film in "Dead Husbands written by Warren
    Taylor. Dead Husbands directed by Paul Shapiro"), which a reader copying from the better path would give."""
    weighty = [d for d in documents if d.prior >= min_prior] or documents[:1]
    names = list(dict.fromkeys(name for d in weighty for name in d.answers))
    others = [name for name in names if name not in linked] or names
    return [name for name in others if name in answer_set] or others if answer_set else others


def answer_candidates(facts: list[dict], linked: set[str], min_prior: float = MIN_CANDIDATE_PRIOR) -> list[str]:
    """candidate_names of retrieved facts {subject, object, prior} (object first)."""
    documents = [Evidence("", (f["object"], f["subject"]), f["prior"]) for f in facts]
    return candidate_names(documents, linked, min_prior)
