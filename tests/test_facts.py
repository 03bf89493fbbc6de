"""shared.facts: a triple's payload and kinds, and the names a constrained answer may be."""

import pytest

from shared.facts import ENTITY, NODE, TEXT, Evidence, Triple, candidate_names, kind_of


def test_kinds_are_stored_only_when_not_entities_and_do_not_change_the_id():
    plain, node = Triple("A", "r", "B"), Triple("A", "r", "B", object_kind=NODE)
    assert "object_kind" not in plain.payload() and node.payload()["object_kind"] == NODE
    assert (
        plain.id == node.id
        and kind_of(node.payload(), "object") == NODE
        and kind_of(node.payload(), "subject") == ENTITY
    )
    with pytest.raises(ValueError):
        Triple("A", "r", "B", subject_kind="place")
    assert kind_of(Triple("A", "abstract", "long text", object_kind=TEXT).payload(), "object") == TEXT


def test_candidate_names_keep_the_answer_set_among_the_documents():
    documents = [
        Evidence(
            "Dead Husbands written by Warren Taylor. Dead Husbands directed by Paul Shapiro", ("Paul Shapiro",), 0.9
        ),
        Evidence("Dead Husbands written by Warren Taylor", ("Dead Husbands",), 2e-5),
        Evidence("Dead Husbands release year 1998", ("1998",), 1e-9),
    ]
    assert candidate_names(documents, {"Warren Taylor"}) == ["Paul Shapiro", "Dead Husbands"]  # 1998: no weight
    assert candidate_names(documents, {"Warren Taylor"}, answer_set={"Paul Shapiro"}) == ["Paul Shapiro"]
    # an answer set none of whose names a document offers leaves the documents' names
    assert candidate_names(documents, set(), answer_set={"Someone Else"}) == ["Paul Shapiro", "Dead Husbands"]
    # the question's own entity only when nothing else is left
    assert candidate_names([Evidence("A r A", ("A",), 1.0)], {"A"}) == ["A"]
