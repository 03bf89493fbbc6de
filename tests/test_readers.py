import types

import pytest
from rdflib import URIRef

from retriever_service.readers import ReaderError, ReadReport, detect_format, read_triples, term_name
from shared.facts import Triple, fact_id, fact_sentence, humanize
from tests.conftest import FIXTURES


def read(name, fmt=None):
    report = ReadReport()
    return list(read_triples(FIXTURES / name, fmt, report)), report


def test_pipe_lines_skip_malformed_with_file_and_line():
    triples, report = read("movies.txt")
    assert Triple("Forrest Gump", "directed_by", "Robert Zemeckis") in triples
    assert len(triples) == 11
    assert [(e.line, e.path.endswith("movies.txt")) for e in report.errors] == [(6, True), (11, True)]
    assert report.skipped == 2


def test_tsv_and_jsonl():
    tsv, tsv_report = read("capitals.tsv")
    assert tsv == [Triple("Paris", "capital of", "France"), Triple("Berlin", "capital of", "Germany")]
    assert [e.line for e in tsv_report.errors] == [3]
    jsonl, jsonl_report = read("people.jsonl")
    assert Triple("Alan Turing", "born in", "London") in jsonl and len(jsonl) == 3
    assert [e.line for e in jsonl_report.errors] == [4, 5]


def test_ntriples_readable_names_labels_and_bad_line():
    triples, report = read("dbpedia.nt")
    assert Triple("Tom Hanks", "birth place", "Concord") in triples  # rdfs:label wins over the URI
    assert Triple("Tom Hanks", "birth year", "1956") in triples
    assert Triple("Forrest Gump", "starring", "Tom Hanks") in triples
    assert not any(t.relation in ("label", "name") for t in triples)  # labels name entities, not facts
    assert [e.line for e in report.errors] == [5]


def test_turtle_uses_labels():
    triples, report = read("geo.ttl")
    assert set(triples) == {
        Triple("United Kingdom", "capital", "London"),
        Triple("United Kingdom", "official language", "English"),
    }
    assert report.skipped == 0


def test_line_formats_stream(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("".join(f"e{i}|r|o{i}\n" for i in range(10_000)), encoding="utf-8")
    stream = read_triples(path)
    assert isinstance(stream, types.GeneratorType)
    assert next(stream) == Triple("e0", "r", "o0")


def test_names_with_unicode_line_separators_stay_whole(tmp_path):
    path = tmp_path / "odd.txt"
    path.write_text("A\u2028B|r|C\nD|r|E\n", encoding="utf-8")
    assert list(read_triples(path)) == [Triple("A\u2028B", "r", "C"), Triple("D", "r", "E")]


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(ReaderError):
        detect_format(tmp_path / "kb.xml")
    with pytest.raises(ReaderError):
        list(read_triples(tmp_path / "missing.txt"))


def test_humanize_and_sentences():
    assert humanize("birthPlace") == "birth place"
    assert humanize("Tom_Hanks") == "Tom Hanks"
    assert humanize("McDonald") == "McDonald"
    assert fact_sentence("Forrest Gump", "directed_by", "Robert Zemeckis") == "Forrest Gump directed by Robert Zemeckis"
    assert term_name(URIRef("http://dbpedia.org/ontology/populationTotal")) == "population total"
    assert term_name(URIRef("http://example.org/onto#hasPart")) == "has part"


def test_fact_ids_are_deterministic_and_distinct():
    a = fact_id("France", "capital", "Paris")
    assert a == Triple("France", "capital", "Paris").id
    assert a != fact_id("Paris", "capital", "France")
    assert a != fact_id("France", "capital", "Paris ")


def test_answer_candidates_leave_out_the_question_entity():
    from shared.facts import answer_candidates

    facts = [
        {"subject": "Big", "object": "Tom Hanks", "prior": 0.7},
        {"subject": "Big", "object": "1988", "prior": 0.3},
    ]
    assert answer_candidates(facts, {"Big"}) == ["Tom Hanks", "1988"]
    assert answer_candidates(facts, set()) == ["Tom Hanks", "Big", "1988"]
    assert answer_candidates([{"subject": "A", "object": "A", "prior": 1.0}], {"A"}) == ["A"]


def test_answer_candidates_leave_out_facts_without_weight():
    from shared.facts import answer_candidates

    facts = [
        {"subject": "The Final Cut", "relation": "directed_by", "object": "Omar Naim", "prior": 0.98},
        {"subject": "The Social Network", "relation": "has_tags", "object": "director", "prior": 1e-12},
    ]
    assert answer_candidates(facts, {"Omar Naim", "director"}) == ["The Final Cut"]
    assert answer_candidates(facts, set(), min_prior=0.0) == [
        "Omar Naim",
        "The Final Cut",
        "director",
        "The Social Network",
    ]
    below = [{**f, "prior": 1e-9} for f in facts]  # nothing has weight: the best fact's names all the same
    assert answer_candidates(below, {"Omar Naim"}) == ["The Final Cut"]
