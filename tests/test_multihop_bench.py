"""The multi-hop benchmark's pure parts: MetaQA's chains, the two walks, the per-question figures, the samples,
the absent-relation questions and the merging of parts. Nothing here opens a store or a model."""

import json
import pathlib

import pytest

from bench.multihop_bench import (
    ABSENT_FILE,
    MOVIE_PHRASINGS,
    PERSON_PHRASINGS,
    absent_relation_questions,
    abstention_summary,
    answer_set_row,
    ceiling_row,
    fanout_entry,
    means,
    merge_part,
    right_chain,
    seeded_order,
    topic_kind,
    walk_any,
    widest,
)
from retriever_service.chains import chain_key
from retriever_service.kg_graph import KGGraph
from retriever_service.path_search import ChainResult, Cuts, Path, PathSearchResult
from retriever_service.question_generation import ABSENT_RELATIONS, LIST_FORMS, QUESTION_FORMS
from shared.qa_data import Question

FILMS = [
    ("Heat", "starred_actors", "Robert De Niro"),
    ("Heat", "starred_actors", "Al Pacino"),
    ("Heat", "directed_by", "Michael Mann"),
    ("Ronin", "starred_actors", "Robert De Niro"),
    ("Ronin", "directed_by", "John Frankenheimer"),
    ("Ronin", "in_language", "English"),
    ("Heat", "in_language", "English"),
    ("Scarface", "starred_actors", "Al Pacino"),
    ("Scarface", "in_language", "Spanish"),
]


@pytest.fixture
def graph() -> KGGraph:
    return KGGraph.of({"subject": s, "relation": r, "object": o} for s, r, o in FILMS)


@pytest.mark.parametrize(
    "qtype, key",
    [
        ("movie_to_director", "directed_by"),
        ("actor_to_movie", "starred_actors^-1"),
        ("tag_to_movie", "has_tags^-1"),
        ("movie_to_tags", "has_tags"),
        ("movie_to_actor_to_movie", "starred_actors/starred_actors^-1"),
        ("writer_to_movie_to_year", "written_by^-1/release_year"),
        ("movie_to_director_to_movie_to_language", "directed_by/directed_by^-1/in_language"),
    ],
)
def test_a_metaqa_type_is_its_relation_chain(qtype, key):
    assert chain_key(right_chain(qtype)) == key


@pytest.mark.parametrize("qtype", ["movie", "actor_to_director", "movie_to_planet"])
def test_a_type_that_is_no_metaqa_chain_is_refused(qtype):
    with pytest.raises((ValueError, KeyError)):
        right_chain(qtype)


def test_the_walk_without_the_simple_path_rule_may_pass_the_topic_again(graph):
    chain = right_chain("movie_to_actor_to_movie_to_language")  # Heat's actors' films' languages
    # Ronin and Scarface are the other films; without the rule Heat itself is walked through too.
    assert graph.walk({"Heat"}, chain) == {"English", "Spanish"}
    assert walk_any(graph, {"Heat"}, chain) == {"English", "Spanish"}
    only_film = right_chain("actor_to_movie_to_actor")  # De Niro's co-stars: Pacino (Heat)
    assert walk_any(graph, {"Robert De Niro"}, only_film) == {"Al Pacino"}  # the topic left out of the ends
    lone = right_chain("movie_to_director_to_movie_to_language")  # Heat's director made only Heat
    assert graph.walk({"Heat"}, lone) == set()
    assert walk_any(graph, {"Heat"}, lone) == {"English"}


def test_ceiling_row_reach_f1_and_the_expected_hit_of_one_pick():
    row = ceiling_row({"Al Pacino", "Robert De Niro", "Val Kilmer", "Jon Voight"}, {"al pacino", "robert de niro"})
    assert row["reach"] and row["f1"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert row["hits@1_pick_one"] == 0.5
    assert ceiling_row(set(), {"x"}) == {"reach": False, "f1": 0.0, "hits@1_pick_one": 0.0}


def test_answer_set_figures_fold_names_and_an_empty_set_scores_zero():
    row = answer_set_row(["Amélie", "Heat"], {"amelie", "ronin", "scarface"})
    assert row == {"precision": 0.5, "recall": pytest.approx(1 / 3), "f1": pytest.approx(0.4)}
    assert answer_set_row([], {"heat"}) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_means_average_numbers_and_booleans_and_skip_the_rest():
    rows = [{"f1": 1.0, "hit": True, "reason": "x"}, {"f1": 0.5, "hit": False, "reason": None}]
    assert means(rows) == {"f1": 0.75, "hit": 0.5}
    assert means([]) == {}


def test_abstention_summary_against_the_targets():
    summary = abstention_summary([False] * 99 + [True], [True] * 9 + [False])
    assert summary["answered"] == 0.99 and summary["abstained"] == 0.9
    assert summary["answered_met"] and summary["abstained_met"]
    empty = abstention_summary([False], [])
    assert empty["abstained"] is None and not empty["abstained_met"]


def test_a_fanout_entry_counts_the_cuts_and_the_grounded_paths():
    chain = right_chain("movie_to_actor")
    paths = [Path(0, chain, (), ("Heat", name)) for name in ("Al Pacino", "Robert De Niro")]
    result = PathSearchResult(
        "who acted in [Heat]",
        [],
        [],
        [ChainResult(0, chain, -0.1, paths)],
        [],
        1.0,
        "starred_actors",
        Cuts(steps_at_fact_limit=2, chains_at_path_limit=1),
    )
    key, entry = fanout_entry(Question("who acted in [Heat]", ("Al Pacino",)), result, 1)
    assert key == (2, 1, 2)
    assert entry == {
        "question": "who acted in Heat",
        "hops": 1,
        "steps_at_fact_limit": 2,
        "chains_at_path_limit": 1,
        "grounded_paths": 2,
    }


def test_widest_orders_by_the_key_then_the_question():
    candidates = [((0, 0, 5), {"question": "b"}), ((1, 0, 2), {"question": "c"}), ((0, 0, 5), {"question": "a"})]
    assert [e["question"] for e in widest(candidates, 2)] == ["c", "a"]


def test_samples_are_seeded_and_nested():
    questions = [Question(f"q{i}", ("a",)) for i in range(50)]
    small, large = seeded_order(questions, 3, 10), seeded_order(questions, 3, 30)
    assert small == large[:10] == seeded_order(questions, 3, 10)
    assert sorted(q.text for q in seeded_order(questions, 3, None)) == sorted(q.text for q in questions)


def test_topic_kind_from_the_type():
    assert topic_kind(Question("x", (), "movie_to_year")) == "movie"
    assert topic_kind(Question("x", (), "writer_to_movie_to_actor")) == "person"
    assert topic_kind(Question("x", (), "tag_to_movie")) is None


def test_absent_relation_questions_are_seeded_and_use_each_topic_once():
    topics = [(f"Film {i}", "movie") for i in range(200)] + [(f"Person {i}", "person") for i in range(100)]
    rows = absent_relation_questions(topics, seed=0)
    assert rows == absent_relation_questions(list(reversed(topics)), seed=0)
    assert len(rows) == 200 and all(r["answers"] == [] for r in rows)
    topic_of = {}
    for row in rows:
        [(phrasing, topic)] = [
            (p, t) for p in MOVIE_PHRASINGS + PERSON_PHRASINGS for t in [_filled(p, row["question"])] if t
        ]
        topic_of[row["question"]] = topic
        assert (topic.startswith("Film") and phrasing in MOVIE_PHRASINGS) or phrasing in PERSON_PHRASINGS
    assert len(set(topic_of.values())) == 200
    with pytest.raises(ValueError):
        absent_relation_questions(topics[:10], seed=0)


def _filled(phrasing: str, question: str) -> str | None:
    """The topic a phrasing was filled with to give the question, or None."""
    before, after = phrasing.split("{}")
    if question.startswith(before) and question.endswith(after) and len(question) > len(before) + len(after):
        return question[len(before) : len(question) - len(after)]
    return None


def test_absent_relation_phrasings_are_held_out_from_the_question_generator():
    """None is a negative the prior was fitted on: a generator form around 'the <absent relation> of X'."""
    generated = {form.format(np=f"the {r} of {{}}") for form in QUESTION_FORMS + LIST_FORMS for r in ABSENT_RELATIONS}
    starts = {form.split("{np}")[0] for form in QUESTION_FORMS + LIST_FORMS} - {""}
    for phrasing in MOVIE_PHRASINGS + PERSON_PHRASINGS:
        assert phrasing not in generated
        assert not any(phrasing.startswith(start + "the ") for start in starts), phrasing
        assert "'s" not in phrasing  # the generator's possessive form


def test_the_committed_absent_relation_file_has_200_unanswerable_questions():
    rows = [json.loads(line) for line in pathlib.Path(ABSENT_FILE).read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 200 and all(set(r) == {"question", "answers"} and r["answers"] == [] for r in rows)
    assert len({r["question"] for r in rows}) == 200


def test_a_part_replaces_its_own_entry_only():
    stored = {"retrieval": {"old": 1}, "answers": {"a": 2}, "commit": "x"}
    merged = merge_part(stored, "retrieval", {"new": 3})
    assert merged == {"retrieval": {"new": 3}, "answers": {"a": 2}, "commit": "x"}
    assert stored["retrieval"] == {"old": 1}
