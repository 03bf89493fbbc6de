"""The noun of a chain step's ends, read from the entities' names with the real encoder, and the questions
written with it."""

import random

import pytest

from retriever_service.chains import Step, parse_chain
from retriever_service.kg_graph import KGGraph
from retriever_service.question_generation import chain_questions, noun_phrase, phrase_question
from retriever_service.type_nouns import plural, step_type_nouns

CAPITALS = {
    "France": "Paris",
    "Japan": "Tokyo",
    "Kenya": "Nairobi",
    "Peru": "Lima",
    "Germany": "Berlin",
    "Egypt": "Cairo",
    "Canada": "Ottawa",
    "Norway": "Oslo",
}
CURRENCY = {
    "France": "Euro",
    "Germany": "Euro",
    "Japan": "Yen",
    "Kenya": "Kenyan Shilling",
    "Peru": "Sol",
    "Egypt": "Egyptian Pound",
    "Canada": "Canadian Dollar",
    "Norway": "Norwegian Krone",
}
GENRES = {
    "Heat": "Crime",
    "Alien": "Horror",
    "Up": "Animation",
    "Fargo": "Thriller",
    "Rocky": "Drama",
    "Airplane!": "Comedy",
    "Unforgiven": "Western",
    "Titanic": "Romance",
}


def countries() -> KGGraph:
    payloads = [{"subject": c, "relation": "capital", "object": city} for c, city in CAPITALS.items()]
    payloads += [{"subject": c, "relation": "currency", "object": money} for c, money in CURRENCY.items()]
    return KGGraph.of(payloads)


@pytest.fixture(scope="module")
def types(encoder):
    return step_type_nouns(countries(), encoder)


def test_each_step_is_named_by_the_kind_of_its_ends(types):
    assert types[Step("capital")] == "city"
    assert types[Step("capital", True)] == "country"
    assert types[Step("currency", True)] == "country"
    assert types[Step("currency")] == "currency"


def test_a_forward_step_named_like_the_entities_it_leaves_names_nothing(encoder):
    """Genre names sit as near "movie" as the films do: a noun that does not tell the ends from the start of a
    relation that is not symmetric is not used for its forward step."""
    graph = KGGraph.of([{"subject": f, "relation": "has genre", "object": g} for f, g in GENRES.items()])
    found = step_type_nouns(graph, encoder)
    assert found[Step("has genre", True)] in {"film", "movie"}
    assert found.get(Step("has genre")) != found[Step("has genre", True)]


def test_questions_name_the_kind_of_what_they_ask_for(types):
    questions = chain_questions(
        countries(), max_hops=2, per_chain=25, max_answers=10, rng=random.Random(0), min_topics=1, types=types
    )
    texts = [q.text for q in questions if q.chain in ("currency^-1", "currency^-1/capital")]
    assert any("country" in t for t in texts) and any("the one" in t for t in texts)  # the noun half the time
    many = {phrase_question("Euro", parse_chain("currency^-1"), 2, random.Random(seed), types) for seed in range(40)}
    assert any("countries" in t for t in many)  # a list question names them in the plural
    chain = parse_chain("currency^-1/capital")
    assert noun_phrase("Yen", chain, None, types) == "the capital of the country whose currency is Yen"
    assert noun_phrase("Yen", chain) == "the capital of the one whose currency is Yen"


@pytest.mark.parametrize(
    ("noun", "many"),
    [
        ("country", "countries"),
        ("city", "cities"),
        ("film", "films"),
        ("species", "species"),
        ("day", "days"),
        ("bus", "buses"),
    ],
)
def test_plural(noun, many):
    assert plural(noun) == many
