"""Path search on a small film graph: chains grounded in the store hop by hop, the answer set against a walk
of the graph, simple paths, fan-out caps, intermediate nodes, abstention, and the same results on each store
backend. The chain prior is made by hand (zero weights, a bias per chain), so the chain a test asks about is
the prior's first choice whatever the question says."""

import math

import numpy as np
import pytest

from retriever_service.chains import NONE_KEY, chain_words, parse_chain
from retriever_service.entity_linking import ALIAS_RELATIONS, EntityIndex
from retriever_service.ingest import ingest_triples
from retriever_service.kg_graph import KGGraph
from retriever_service.path_replies import to_reply
from retriever_service.path_search import PathLimits, PathSearch
from retriever_service.readers import read_triples
from retriever_service.relation_prior import RelationPrior
from retriever_service.store import open_store
from shared.facts import NODE, Triple
from tests.conftest import FIXTURES

KEYS = [
    "directed_by",
    "directed_by^-1",
    "starred_actors",
    "starred_actors^-1",
    "release_year",
    "release_year^-1",
    "starred_actors^-1/directed_by",
    "starred_actors/starred_actors^-1",
    "directed_by/directed_by^-1/starred_actors",
    "person function",
    NONE_KEY,
]


def prior_for(chain: str, dim: int, share: float = 0.9) -> RelationPrior:
    """A prior that gives `chain` probability `share` for every question, the rest spread evenly."""
    rest = (1 - share) / (len(KEYS) - 1)
    bias = np.log([share if key == chain else rest for key in KEYS]).astype(np.float32)
    return RelationPrior(KEYS, np.zeros((len(KEYS), dim), np.float32), bias, temperature=1.0, weight=0.3)


def triples() -> list[Triple]:
    films = list(read_triples(FIXTURES / "films.txt"))
    node = "Melinda Gates, person function 1"
    return films + [
        Triple("Melinda Gates", "person function", node, object_kind=NODE),
        Triple(node, "title", "Co-chair", subject_kind=NODE),
        Triple(node, "organisation", "Gates Foundation", subject_kind=NODE),
    ]


@pytest.fixture(scope="module", params=["edge", "memory"])
def world(request, tmp_path_factory, encoder):
    """(PathSearch over a loaded store, the graph in memory); the search's prior is set by each test."""
    url = ":memory:" if request.param == "memory" else None
    store = open_store(url=url, api_key=None, path=tmp_path_factory.mktemp("paths"), collection="f", dim=encoder.dim)
    entities = EntityIndex()
    ingest_triples(triples(), encoder=encoder, store=store, entities=entities)
    store.optimize()
    graph = KGGraph.of((t.payload() for t in triples()), ALIAS_RELATIONS)
    yield PathSearch(encoder, store, entities, None, tau=0.05), graph
    store.close()


def answer_set(result, threshold: float = 0.5) -> set[str]:
    return {a.name for a in result.answers if a.prob >= threshold}


def search(world, question: str, chain: str, **limits):
    path_search, _ = world
    path_search.prior = prior_for(chain, path_search.encoder.dim)
    [result] = path_search.search([question], 5, PathLimits(**limits))
    return result


def test_a_two_step_chain_reaches_what_a_walk_of_the_graph_reaches(world):
    result = search(world, "who directed the films Robert De Niro starred in", "starred_actors^-1/directed_by")
    _, graph = world
    walked = graph.walk({"Robert De Niro"}, parse_chain("starred_actors^-1/directed_by"))
    assert answer_set(result) == walked == {"Michael Mann", "Martin Scorsese"}
    top = result.chains[0]
    assert top.key == "starred_actors^-1/directed_by" and top.prob > 0.99
    assert math.isclose(sum(p.prior for p in result.paths), 1.0, rel_tol=1e-6)
    for scored in [p for p in result.paths if p.prior > 1e-6]:  # De Niro's four films, then a weightless fifth
        path = scored.path
        assert path.entities[0] == "Robert De Niro" and len(path.facts) == 2
        assert path.facts[0].object == "Robert De Niro" and path.facts[0].subject == path.facts[1].subject
        assert path.text == f"{path.facts[0].text}. {path.facts[1].text}"
    scores = [p.score for p in result.paths]
    assert scores == sorted(scores, reverse=True)
    assert [a.prob for a in result.answers[:2]] == pytest.approx([top.prob] * 2)


def test_paths_are_simple_so_a_film_is_not_its_own_neighbour(world):
    result = search(world, "which films share an actor with Heat", "starred_actors/starred_actors^-1")
    assert answer_set(result) == {"The Godfather", "Taxi Driver", "Goodfellas", "Casino"}
    assert all(len(set(p.path.entities)) == len(p.path.entities) for p in result.paths)


def test_three_steps(world):
    result = search(
        world, "who acted in the films by the director of Heat", "directed_by/directed_by^-1/starred_actors"
    )
    _, graph = world
    assert (
        answer_set(result)
        == graph.walk({"Heat"}, parse_chain("directed_by/directed_by^-1/starred_actors"))
        == {"Tom Cruise", "Jamie Foxx", "Will Smith"}
    )
    assert all(len(p.path.facts) == 3 for p in result.paths if p.prior > 1e-6)


def test_fan_out_is_capped_and_the_cut_is_counted(world):
    full = search(world, "which films came out in 1995", "release_year^-1", beam=1)
    assert len(answer_set(full)) == 10 and full.cuts.steps_at_fact_limit == 0
    capped = search(world, "which films came out in 1995", "release_year^-1", beam=1, facts_per_step=4)
    assert len(answer_set(capped)) == 4 and capped.cuts.steps_at_fact_limit == 1
    assert answer_set(capped) < answer_set(full)
    few = search(world, "which films came out in 1995", "release_year^-1", beam=1, paths_per_chain=3, max_answers=2)
    assert few.cuts.chains_at_path_limit == 1 and len(few.answers) == 2 and few.cuts.answers_cut == 1


def test_an_intermediate_node_is_walked_through_and_never_an_answer(world):
    result = search(world, "what is the person function of Melinda Gates", "person function")
    assert answer_set(result) == {"Co-chair", "Gates Foundation"}
    assert all(len(p.path.facts) == 2 and p.path.entities[1].endswith("person function 1") for p in result.paths)


def test_a_relation_no_path_from_the_topic_takes_leaves_support_low(world):
    """Chris Noonan directed Babe, which names no actor: acting is a step people take (Mel Gibson both
    directs and acts), not one he takes."""
    grounded = search(world, "who directed Heat", "directed_by")
    lacking = search(world, "which films did Chris Noonan act in", "starred_actors^-1")
    assert grounded.support > 0.9 > 0.2 > lacking.support
    assert lacking.best_chain == "starred_actors^-1"


def test_mass_on_chains_no_entity_of_the_topics_kind_starts_is_left_out_of_support(world):
    """A year starts no `directed_by^-1` step: the prior's mass there, whatever the question, is not a reading
    of a question about 1995, and support is the share of the rest on what the graph holds about it."""
    result = search(world, "which films came out in 1995", "directed_by^-1")
    assert result.best_chain == "directed_by^-1"
    # left: release_year^-1 (grounded), release_year (its relation, either way) and NONE_KEY, equally likely
    assert result.support == pytest.approx(2 / 3, abs=1e-3)


def test_a_relation_a_grounded_chain_takes_in_any_direction_is_support(world):
    """The prior's mass on one step of a grounded chain (an actor's films' directors), or on the wrong direction
    of a relation the topic has, is about what the graph holds near the topic."""
    part = search(world, "who directed Robert De Niro", "directed_by")
    assert "starred_actors^-1/directed_by" in {c.key for c in part.chains}
    flipped = search(world, "who directed Heat", "directed_by^-1")  # Heat is no one's director
    assert "directed_by^-1" not in {c.key for c in flipped.chains}
    assert part.support > 0.9 and flipped.support > 0.9


def verdict(result, abstain_threshold: float = 0.5) -> tuple[str | None, str | None]:
    reply = to_reply(result, 5, 3, 0.05, 0.5, abstain_threshold)
    return reply.reason, reply.note


def test_a_question_read_as_about_a_relation_the_graph_lacks_says_so_and_names_the_closest_chain(world):
    """Most of the prior's mass on NONE_KEY: the reading is "<none>", and the note does not claim that the
    graph lacks a path for some chain it holds (it said "no path from Mongolia for borders (reversed)" above
    the very path)."""
    result = search(world, "who is the producer of Heat", NONE_KEY)
    assert result.best_chain == NONE_KEY and result.support < 0.5
    reason, note = verdict(result)
    closest = chain_words(result.chains[0].chain)
    assert reason == "low_support" and note.startswith("the question most likely asks for something the graph")
    assert "about Heat" in note and note.endswith(f"the closest it has: {closest}")


def test_a_chain_the_topic_lacks_is_named_as_missing_beside_the_closest_it_has(world):
    result = search(world, "which films did Chris Noonan act in", "starred_actors^-1")
    reason, note = verdict(result)
    assert reason == "low_support" and "no path from Chris Noonan" in note and "(starred actors (reversed))" in note
    assert note.endswith(f"the closest it has: {chain_words(result.chains[0].chain)}")


def test_a_grounded_reading_under_the_threshold_is_called_weak_not_missing(world):
    result = search(world, "who directed Heat", "directed_by")
    assert verdict(result) == (None, None)
    reason, note = verdict(result, abstain_threshold=1.01)
    assert reason == "low_support" and note.startswith("the question reads only weakly as asking for directed by")
    assert "which Heat has" in note


def test_an_unfitted_prior_cuts_no_chain_from_the_beam(world):
    """Every chain equally likely: the beam keeps all of them and cosine decides (an unfitted KG)."""
    path_search, _ = world
    path_search.prior = RelationPrior.uniform(path_search.entities.relations, path_search.encoder.dim)
    [result] = path_search.search(["which year was Heat released"], 5, PathLimits(beam=1))
    assert result.paths[0].path.text == "Heat release year 1995" and result.cuts.chains_not_grounded == 0
    assert {c.key for c in result.chains} == {"directed_by", "starred_actors", "release_year"}


def test_nothing_linked_means_no_paths(world):
    result = search(world, "who directed Zorblax", "directed_by")
    assert result.linked == [] and result.paths == [] and result.answers == [] and result.support == 0.0


def test_both_backends_give_the_same_paths(world, tmp_path, encoder):
    other = open_store(
        url=None if world[0].store.backend != "qdrant-edge" else ":memory:",
        api_key=None,
        path=tmp_path,
        collection="f",
        dim=encoder.dim,
    )
    entities = EntityIndex()
    ingest_triples(triples(), encoder=encoder, store=other, entities=entities)
    twin = PathSearch(encoder, other, entities, None, tau=0.05)
    for question, chain in [
        ("who directed the films Robert De Niro starred in", "starred_actors^-1/directed_by"),
        ("who acted in the films by the director of Heat", "directed_by/directed_by^-1/starred_actors"),
    ]:
        mine = search(world, question, chain)
        twin.prior = world[0].prior
        [theirs] = twin.search([question], 5, PathLimits())
        assert [p.path.id for p in mine.paths] == [p.path.id for p in theirs.paths]
        np.testing.assert_allclose([p.score for p in mine.paths], [p.score for p in theirs.paths], atol=1e-5)
        assert [(a.name, round(a.prob, 6)) for a in mine.answers] == [
            (a.name, round(a.prob, 6)) for a in theirs.answers
        ]
    other.close()


@pytest.fixture(scope="module")
def paths_api(tmp_path_factory, encoder):
    """The retriever app over the film graph (qdrant-client in memory), no fitted prior."""
    from fastapi.testclient import TestClient

    from retriever_service.app import create_app
    from retriever_service.settings import RetrieverSettings

    settings = RetrieverSettings(qdrant_url=":memory:", data_dir=tmp_path_factory.mktemp("api"), max_path_beam=8)
    with TestClient(create_app(settings, encoder=encoder)) as client:
        facts = [
            {"subject": t.subject, "relation": t.relation, "object": t.object}
            for t in read_triples(FIXTURES / "films.txt")
        ]
        assert client.post("/v1/facts", json={"facts": facts}).status_code == 200
        yield client


def test_paths_endpoint_replies_with_documents_answers_and_verdict(paths_api):
    r = paths_api.post("/v1/paths", json={"query": "When was Heat released?", "k": 3, "hops": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["paths"][0]["text"] == "Heat release year 1995" and body["paths"][0]["steps"] == [
        {"relation": "release_year", "inverse": False, "entity": "1995"}
    ]
    assert body["answers"][0]["name"] == "1995" and body["answers"][0]["paths"][0]["topic"] == "Heat"
    assert body["abstain"] is False and body["hops"] == 1 and math.isclose(sum(p["prior"] for p in body["paths"]), 1)
    unknown = paths_api.post("/v1/paths", json={"query": "Who directed Zorblax?"}).json()
    assert unknown["abstain"] and unknown["reason"] == "no_entity" and unknown["answers"] == [] and unknown["note"]
    batch = paths_api.post(
        "/v1/paths/batch", json={"queries": ["When was Heat released?", "Who directed Zorblax?"], "k": 3, "hops": 1}
    ).json()["results"]
    assert [[p["id"] for p in b["paths"]] for b in batch] == [[p["id"] for p in body["paths"]], []]
    assert [p["prior"] for p in batch[0]["paths"]] == pytest.approx([p["prior"] for p in body["paths"]], rel=1e-4)


@pytest.mark.parametrize(
    "options, code",
    [
        ({"hops": 4}, "invalid_request"),
        ({"hops": 0}, "invalid_request"),
        ({"beam": 9}, "beam_out_of_range"),
        ({"facts_per_step": 5001}, "facts_per_step_out_of_range"),
        ({"paths_per_chain": 20001}, "paths_per_chain_out_of_range"),
        ({"max_answers": 1001}, "max_answers_out_of_range"),
        ({"k": 101}, "k_out_of_range"),
        ({"hops": "2"}, "invalid_request"),
    ],
)
def test_out_of_range_hops_and_caps_are_422(paths_api, options, code):
    r = paths_api.post("/v1/paths", json={"query": "When was Heat released?", **options})
    assert r.status_code == 422 and r.json()["error"]["code"] == code, r.text
