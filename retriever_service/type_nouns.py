"""A common noun for the entities a chain step arrives at ("country", "city", "film"), read from the
entities' names with the encoder, for questions written from a KG (`question_generation.py`).

Generated questions that say "the one whose currency is Naira" teach the chain prior nothing about
"which country uses the naira?": people name the kind of thing they ask for, and the noun is what
tells a one-step question from a two-step one ("the capital of the country that uses the yen").
A KG rarely says what kind of thing an entity is, but its names do: the centroid of a sample of the
names a step reaches ("Nigeria", "Japan", "Peru") lies nearest to "country" among common nouns.

The nearest noun must be near enough (MIN_SIMILARITY), and a step is named when it reaches
MIN_ENDS entities or more that are not kinds themselves (the classes rdf:type points to). A
forward step whose noun is also its reverse's, of a relation that is not symmetric, names nothing
apart (genre names sit as near "movie" as films do): it keeps "one", as does a step with no noun
near enough.
"""

from __future__ import annotations

import random

import numpy as np

from retriever_service.chains import Step
from retriever_service.encoder import Encoder
from retriever_service.kg_graph import KGGraph

# Kinds of things people ask about, in no KG's particular words.
TYPE_NOUNS = (
    "person",
    "man",
    "woman",
    "actor",
    "actress",
    "director",
    "writer",
    "author",
    "singer",
    "musician",
    "artist",
    "painter",
    "politician",
    "leader",
    "player",
    "athlete",
    "scientist",
    "company",
    "organization",
    "business",
    "brand",
    "band",
    "team",
    "club",
    "school",
    "university",
    "country",
    "nation",
    "state",
    "province",
    "city",
    "town",
    "village",
    "place",
    "region",
    "continent",
    "island",
    "mountain",
    "river",
    "lake",
    "sea",
    "building",
    "language",
    "currency",
    "film",
    "movie",
    "series",
    "book",
    "novel",
    "song",
    "album",
    "genre",
    "year",
    "date",
    "number",
    "code",
    "word",
    "event",
    "war",
    "award",
    "category",
    "religion",
    "party",
    "product",
    "animal",
    "plant",
    "species",
    "food",
    "game",
    "sport",
    "website",
    "domain",
    "timezone",
    "nationality",
    "occupation",
    "instrument",
    "vehicle",
    "airport",
    "museum",
)
MIN_SIMILARITY = 0.6  # of the noun to the centroid of the step's ends
MIN_ENDS = 5  # a step reaching fewer entities is not named: one or two names are not a kind
KINDS_SHARE = 0.25  # a step whose ends are this share of TYPE_NOUNS or more ends in kinds (rdf:type)
SAMPLE = 40  # names per step
_KIND_NAMES = frozenset(TYPE_NOUNS)  # looked up once per end of every step


def step_type_nouns(graph: KGGraph, encoder: Encoder, seed: int = 0) -> dict[Step, str]:
    """The noun of each step's ends, for the steps that have one (module docstring)."""
    rng = random.Random(seed)
    ends = graph.step_ends()
    steps = sorted(step for step, names in ends.items() if len(names) >= MIN_ENDS and not _kinds(names))
    nouns = encoder.encode(list(TYPE_NOUNS))  # (N, H)
    found = {}
    for step in steps:
        near = nouns @ _centroid(encoder, _sample(ends[step], rng))  # (N,)
        if near.max() >= MIN_SIMILARITY:
            found[step] = TYPE_NOUNS[int(np.argmax(near))]
    symmetric = graph.symmetric_relations()
    return {
        step: noun
        for step, noun in found.items()
        if step.inverse or step.relation in symmetric or found.get(_reverse(step)) != noun
    }


def _reverse(step: Step) -> Step:
    return Step(step.relation, not step.inverse)


def _kinds(names: set[str]) -> bool:
    """Whether the names are kinds themselves (City, Company, Person: the objects of rdf:type)."""
    return sum(name.lower() in _KIND_NAMES for name in names) >= KINDS_SHARE * len(names)


def _sample(entities: set[str], rng: random.Random) -> list[str]:
    """At most SAMPLE of the names, drawn from them in sorted order, sorted (the same sample every run)."""
    ordered = sorted(entities)
    return ordered if len(ordered) <= SAMPLE else sorted(rng.sample(ordered, SAMPLE))


def _centroid(encoder: Encoder, names: list[str]) -> np.ndarray:
    mean = encoder.encode(names).mean(axis=0)  # (H,)
    return mean / np.linalg.norm(mean)


def plural(noun: str) -> str:
    """'country' -> 'countries', 'city' -> 'cities', 'film' -> 'films', 'species' -> 'species'."""
    if noun.endswith("ies"):  # species, series, or a plural already
        return noun
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    return noun + "s"
