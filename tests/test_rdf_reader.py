"""RDF statements to triples under the DBpedia rules, on tests/fixtures/dbpedia_cases.nt (one small
description per case, tab-separated lines, comments, blank lines and one broken line)."""

import dataclasses

import pytest

from retriever_service.entity_linking import ALIAS_RELATIONS, EntityIndex
from retriever_service.rdf_mapping import ALIAS
from retriever_service.rdf_rules import dbpedia_rules
from retriever_service.readers import ReadReport, read_triples
from shared.facts import ENTITY, NODE, TEXT, Triple
from tests.conftest import FIXTURES

CASES = FIXTURES / "dbpedia_cases.nt"
ADA = "Ada Lovelace"


def read(path=CASES, **changes):
    report = ReadReport()
    return list(read_triples(path, rules=dbpedia_rules(**changes), report=report)), report


@pytest.fixture(scope="module")
def cases():
    return read()


def facts_of(triples, relation, subject=ADA):
    return [t.object for t in triples if t.subject == subject and t.relation == relation]


def test_empty_literals_are_skipped_and_counted(cases):
    triples, report = cases
    assert all(t.object.strip() for t in triples)
    assert facts_of(triples, "spouse") == ["William King-Noel, 1st Earl of Lovelace", "William King"]
    assert report.dropped["empty literal"] == 1


def test_only_configured_languages_are_kept(cases):
    triples, report = cases
    assert facts_of(triples, "occupation")[1:] == ["Mathematician"]  # "Mathématicienne"@fr left out
    assert not any("Mathematikerin" in t.object or "(de)" in t.object or "(fr)" in t.object for t in triples)
    assert report.dropped["other language"] == 5  # a label in de and fr, the de abstract, fr occupation, fr sameAs
    with_french, _ = read(languages=("en", "fr"))
    assert "Mathématicienne" in facts_of(with_french, "occupation")


def test_typed_literals_read_as_answers(cases):
    triples, _ = cases
    assert facts_of(triples, "birth date") == ["10 December 1815"]
    assert facts_of(triples, "birth year") == ["1815"]
    assert facts_of(triples, "mass") == ["4.2e-07"]
    assert facts_of(triples, "cost", "Analytical Engine") == ["17000 pounds sterling"]


def test_long_text_is_left_out_or_passages_of_kind_text(cases):
    dropped, dropped_report = cases  # the default: left out
    assert not any(t.object_kind == TEXT for t in dropped)
    assert dropped_report.dropped["long text"] == 3  # the English abstract, the comment, the tagline
    triples, report = read(long_text="passages")
    texts = [t for t in triples if t.object_kind == TEXT]
    assert {t.relation for t in texts} == {"abstract", "tagline"}  # the tagline is only long
    assert all(len(t.object) <= 300 for t in texts) and report.passages == len(texts) == 3
    assert not any(t.object_kind == ENTITY and len(t.object) > 200 for t in triples)
    assert not facts_of(triples, "comment")  # rdfs:comment repeats the abstract's first sentence
    assert report.dropped["sentence already kept for the subject"] == 1
    assert len(dropped) == len(triples) - len(texts)


def test_names_aliases_redirects_and_same_as(cases):
    triples, report = cases
    aliases = set(facts_of(triples, ALIAS))
    assert ALIAS in ALIAS_RELATIONS
    assert aliases == {"Augusta Ada King", "Countess of Lovelace", "Lovelace"}  # altLabel + sameAs, foaf:name, redirect
    assert not any(t.relation in ("label", "name", "same as", "wiki page redirects") for t in triples)
    assert report.dropped["sameAs to an identifier"] == 1  # wikidata:Q7259
    entities = EntityIndex()
    entities.update([t.payload() for t in triples])
    assert [e.names for e in entities.link("who was lovelace married to")] == [(ADA,)]


def test_a_label_after_its_use_names_the_entity(cases, tmp_path):
    triples, _ = cases
    assert facts_of(triples, "influenced by") == ["Charles Babbage"]  # ex:P7's label is at the end of the file
    streamed, _ = read(labels="stream")
    assert facts_of(streamed, "influenced by") == ["P7"]  # stream: only labels read before the use
    path = tmp_path / "late.nt"
    path.write_text(
        '<http://example.org/Q1> <http://example.org/p> "x" .\n'
        '<http://example.org/Q1> <http://www.w3.org/2000/01/rdf-schema#label> "Named Late"@en .\n'
    )
    for labels in ("prepass", "stream"):  # within the subject's own block both modes see it
        assert [t.subject for t in read(path, labels=labels)[0]] == ["Named Late"]


def test_intermediate_nodes_are_nodes(cases):
    triples, report = cases
    node = "Ada Lovelace, person function 1"
    assert Triple(ADA, "occupation", node, ENTITY, NODE) in triples
    assert Triple(node, "title", "Mathematician", NODE, ENTITY) in triples
    assert not any(t.subject == node and t.relation == "type" for t in triples)
    assert report.node_triples == 2 and report.dropped["type of an intermediate node"] == 1


def test_categories_types_and_predicate_rules(cases):
    triples, report = cases
    assert facts_of(triples, "category") == ["English women mathematicians"]
    assert facts_of(triples, "type") == ["Person"]  # wikidata:Q5 and owl:Thing left out
    assert facts_of(triples, "known for") == ["Analytical Engine"]  # dbp:knownFor's duplicate dropped
    assert report.dropped["dbp duplicate of dbo"] == 2  # birth date, known for
    assert report.dropped["predicate rule"] == 5  # image, caption, align, wikiPageID, wikiPageWikiLink
    assert not any(t.relation in ("image", "caption", "align", "wiki page id") for t in triples)
    plain, _ = read(drop_predicates=(), prefer=())
    assert {"image", "caption", "align"} <= {t.relation for t in plain}
    assert len(facts_of(plain, "known for")) == 1  # same relation words and value: the same fact


def test_tabs_comments_blank_lines_and_a_broken_line(cases):
    triples, report = cases
    assert facts_of(triples, "birth date") == ["10 December 1815"]  # a tab-separated line
    assert [(e.line, e.path.endswith("dbpedia_cases.nt")) for e in report.errors] == [(36, True)]
    assert report.skipped == 1
    assert (
        report.statements
        == sum(1 for line in CASES.read_text().splitlines() if line.strip() and not line.startswith("#")) - 1
    )


def test_reports_count_every_statement(cases):
    triples, report = cases
    made = report.triples + sum(report.dropped.values()) + report.names
    assert report.triples == len(triples)
    assert made >= report.statements - 3  # one statement may make several passages; a redirect none of its own


def test_rules_are_frozen_and_compare():
    assert dbpedia_rules() == dbpedia_rules()
    with pytest.raises(dataclasses.FrozenInstanceError):
        dbpedia_rules().languages = ("fr",)
