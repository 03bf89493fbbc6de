"""Other words for a KG's relations (`relation_words.py`): read from JSON or from an ontology's labels of its
predicates, and used by the questions generated for the chain prior."""

import json
import random

import pytest

from retriever_service.demo_kg import demo_triples
from retriever_service.entity_linking import ALIAS_RELATIONS
from retriever_service.kg_graph import KGGraph
from retriever_service.question_generation import absent_relations, chain_questions
from retriever_service.rdf_rules import load_rules
from retriever_service.rdf_terms import expand
from retriever_service.relation_words import RelationWords, RelationWordsError, read_relation_words, relation_words
from tests.conftest import FIXTURES

EXAMPLE_WORDS = FIXTURES.parents[1] / "examples" / "demo_relation_words.json"


def write(tmp_path, data, name="words.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_json_words_are_cleaned_and_each_kept_once_without_the_label(tmp_path):
    given = {"borders": ["neighbours", " Neighbours ", "borders", "bordering  countries"], "area": "size"}
    path = write(tmp_path, given)
    words = read_relation_words(path)
    assert words.of("borders") == ("borders", "neighbours", "bordering countries")
    assert words.of("area") == ("area", "size")
    assert words.of("capital") == ("capital",)  # a relation without words keeps its label alone
    assert words.strict


@pytest.mark.parametrize(
    ("data", "said"),
    [
        ("[1, 2]", "expected an object"),
        ('{"borders": [""]}', "non-empty strings"),
        ('{"borders": {"a": 1}}', "non-empty strings"),
        ('{"borders": ["' + "x" * 81 + '"]}', "over 80 characters"),
        ("{borders: neighbours}", "not JSON"),
    ],
)
def test_a_bad_json_file_is_a_clear_error(tmp_path, data, said):
    path = write(tmp_path, data)
    with pytest.raises(RelationWordsError, match=said) as caught:
        read_relation_words(path)
    assert str(path) in str(caught.value)


def test_a_missing_file_or_a_file_of_facts_is_a_clear_error(tmp_path):
    with pytest.raises(RelationWordsError, match="no such file"):
        read_relation_words(tmp_path / "missing.json")
    with pytest.raises(RelationWordsError, match="not pipe"):
        read_relation_words(FIXTURES / "movies.txt")


def test_words_for_a_relation_the_kg_lacks_are_an_error_from_json_and_left_out_from_an_ontology(tmp_path):
    words = read_relation_words(write(tmp_path, {"borders": ["neighbours"], "bordres": ["next to"]}))
    with pytest.raises(RelationWordsError, match=r"\['bordres'\]"):
        words.restricted(["borders", "capital"])
    ontology = read_relation_words(FIXTURES / "ontology.nt")
    assert not ontology.strict
    assert set(ontology.restricted(["birth place"]).extra) == {"birth place"}


def test_an_ontology_names_its_properties_in_the_configured_languages():
    words = read_relation_words(FIXTURES / "ontology.nt")
    # the German label and alias left out; the label equal to the relation's own and the empty alias too
    assert words.extra == {
        "birth place": ("place of birth", "birthplace"),
        "spouse": ("husband or wife",),
    }


def test_an_ontology_in_turtle_with_prefixes_is_read_whole(tmp_path):
    path = write(
        tmp_path,
        "@prefix dbo: <http://dbpedia.org/ontology/> .\n"
        "@prefix skos: <http://www.w3.org/2004/02/skos/core#> .\n"
        'dbo:foundedBy skos:altLabel "founder"@en, "Gründer"@de .\n',
        "ontology.ttl",
    )
    assert read_relation_words(path).extra == {"founded by": ("founder",)}


def graph() -> KGGraph:
    countries = ["A", "B", "C", "D", "E", "F"]
    payloads = [{"subject": c, "relation": "demonym", "object": f"{c}ian"} for c in countries]
    payloads += [{"subject": c, "relation": "area", "object": f"{i} km2"} for i, c in enumerate(countries)]
    return KGGraph.of(payloads)


def test_generated_questions_name_a_relation_by_its_label_and_each_of_its_words():
    words = relation_words([("demonym", "nationality"), ("demonym", "name for its people")])
    questions = chain_questions(graph(), max_hops=1, per_chain=25, max_answers=10, rng=random.Random(0), words=words)
    demonym = [q.text for q in questions if q.chain == "demonym"]
    for word in ("demonym", "nationality", "name for its people"):
        assert any(word in text for text in demonym), word
    area = [q.text for q in questions if q.chain == "area"]
    assert area and all("area" in text for text in area)  # a relation without words keeps its label


def test_a_relation_the_kg_lacks_is_no_negative_when_it_is_a_word_of_one_the_kg_has():
    assert "nationality" in absent_relations(graph())
    words = relation_words([("demonym", "nationality")])
    assert "nationality" not in absent_relations(graph(), words)
    assert "president" in absent_relations(graph(), words)


def test_words_round_trip_through_their_file(tmp_path):
    words = relation_words([("demonym", "nationality"), ("area", "size")])
    assert read_relation_words(words.save(tmp_path / "kept.json")) == words
    assert not RelationWords()


def test_the_demo_kgs_example_words_are_for_relations_its_graph_has():
    """examples/demo_relation_words.json, which `make bench-prior` fits with: every relation of the demo graph has
    words there (aliases are names, not relations of the graph), and none is unknown (strict)."""
    relations = {t.relation for t in demo_triples()} - set(ALIAS_RELATIONS)
    words = read_relation_words(EXAMPLE_WORDS)
    assert set(words.restricted(relations).extra) == relations


def test_an_ontology_is_read_under_the_rules_the_kg_was_loaded_with():
    """Other languages, and a rename: the words are keyed by the relation a load under the same rules gives."""
    german = read_relation_words(FIXTURES / "ontology.nt", load_rules(languages=["de"]))
    assert german.extra == {"birth place": ("Geburtsort",), "spouse": ("Ehepartner",)}
    renamed = load_rules(languages=["en"], rename=((expand("dbo:spouse"), "married to"),))
    assert read_relation_words(FIXTURES / "ontology.nt", renamed).of("married to") == (
        "married to",
        "spouse",
        "husband or wife",
    )


def test_relations_without_words_draw_nothing_so_a_kg_without_words_gets_the_same_questions():
    def questions(words):
        return chain_questions(graph(), max_hops=1, per_chain=25, max_answers=10, rng=random.Random(0), words=words)

    assert questions(RelationWords()) == questions(None)
    assert questions(relation_words([("demonym", "nationality")])) != questions(None)
