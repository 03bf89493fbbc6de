"""The pure RDF term rules (rdf_terms.py) and the rules settings (rdf_rules.py)."""

import re

import pytest

from retriever_service.rdf_rules import DEFAULT_NODE_PATTERN, Role, RulesError, dbpedia_rules, load_rules
from retriever_service.rdf_terms import (
    XSD,
    class_name,
    curie,
    expand,
    language_ok,
    language_rank,
    looks_like_identifier,
    node_name,
    render_literal,
    resource_name,
    split_passages,
    url_name,
)

DBD = "http://dbpedia.org/datatype/"
NODES = re.compile(DEFAULT_NODE_PATTERN)


@pytest.mark.parametrize(
    ("lexical", "datatype", "expected"),
    [
        ("1955-10-28", XSD + "date", "28 October 1955"),
        ("1955-10-28Z", XSD + "date", "28 October 1955"),
        ("1975-04-04T00:00:00Z", XSD + "dateTime", "4 April 1975"),
        ("2001-11-15T14:30:00", XSD + "dateTime", "15 November 2001 14:30"),
        ("1955-02-30", XSD + "date", "1955-02-30"),  # not a date: the text as given
        ("1955", XSD + "gYear", "1955"),
        ("-0044", XSD + "gYear", "44 BC"),
        ("1975-04", XSD + "gYearMonth", "April 1975"),
        ("--10-28", XSD + "gMonthDay", "28 October"),
        ("+00221000", XSD + "nonNegativeInteger", "221000"),
        ("4.2e-07", XSD + "double", "4.2e-07"),
        ("6.4191E11", XSD + "double", "641910000000"),
        ("3494.0", XSD + "double", "3494"),
        ("187.40", XSD + "float", "187.4"),
        ("NaN", XSD + "double", "NaN"),
        ("12.50", XSD + "decimal", "12.5"),
        ("1", XSD + "boolean", "true"),
        ("1.9827E11", DBD + "usDollar", "198270000000 US dollars"),
        ("5", DBD + "fooBar", "5 foo bar"),
        ("12 apples", DBD + "usDollar", "12 apples"),
        ("x  y\n z", "http://example.org/type", "x y z"),
        ("  Co-chair\n", None, "Co-chair"),
    ],
)
def test_literals_are_rendered_as_a_reader_expects(lexical, datatype, expected):
    assert render_literal(lexical, datatype) == expected


def test_resource_names():
    assert resource_name("http://dbpedia.org/resource/Bill_Gates") == "Bill Gates"
    assert resource_name("http://dbpedia.org/resource/AC/DC") == "AC/DC"  # a slash inside a DBpedia name
    assert resource_name("http://dbpedia.org/resource/Caf%C3%A9_de_Flore") == "Café de Flore"
    assert resource_name("http://dbpedia.org/resource/Category:American_billionaires") == "American billionaires"
    assert resource_name("http://dbpedia.org/resource/EBay") == "EBay"
    assert resource_name("http://example.org/people/eBay") == "eBay"  # no camelCase split for entities
    assert resource_name("http://fr.dbpedia.org/resource/Microsoft") == "Microsoft"
    assert class_name("http://dbpedia.org/ontology/SoccerPlayer") == "Soccer player"
    assert class_name("http://dbpedia.org/ontology/Company") == "Company"
    assert url_name("https://www.microsoft.com/") == "www.microsoft.com"


def test_intermediate_nodes_get_readable_names():
    assert (
        node_name("http://dbpedia.org/resource/Melinda_Gates__PersonFunction__1", NODES)
        == "Melinda Gates, person function 1"
    )
    assert (
        node_name("http://dbpedia.org/resource/Bill_Gates__CareerStation__12", NODES) == "Bill Gates, career station 12"
    )
    assert node_name("http://dbpedia.org/resource/Apple_Inc.__3", NODES) == "Apple Inc., node 3"
    assert node_name("http://dbpedia.org/resource/Bill_Gates", NODES) is None
    assert node_name("http://dbpedia.org/resource/Snake__case", NODES) is None


def test_languages_and_identifiers():
    assert language_ok("en-GB", ("en",)) and language_ok(None, ("en",))
    assert not language_ok("fr", ("en",)) and not language_ok(None, ("en",), untagged=False)
    assert [language_rank(tag, ("en", "de")) for tag in ("en", "de", None, "fr")] == [0, 1, 2, 3]
    assert all(looks_like_identifier(x) for x in ("Q2283", "m.04sv4", "12345", "d41d8cd98f00b204e9800998ecf8427e"))
    assert not any(looks_like_identifier(x) for x in ("Microsoft", "Bill Gates", "R2-D2"))


def test_passages_keep_sentences_whole_within_the_limit():
    text = "First sentence here. Second one is a bit longer than that. Third! " + "word " * 80
    passages = split_passages(text, 60)
    assert passages[0] == "First sentence here. Second one is a bit longer than that."  # 58 characters
    assert passages[1].startswith("Third! word word")
    assert all(len(p) <= 60 for p in passages)
    assert " ".join(passages).split() == text.split()  # nothing lost, nothing added


def test_curies_expand_and_shorten():
    assert curie("http://dbpedia.org/ontology/birthPlace") == "dbo:birthPlace"
    assert expand("dbo:birthPlace") == "http://dbpedia.org/ontology/birthPlace"
    assert expand("http://example.org/x") == "http://example.org/x"
    assert curie("http://example.org/x") == "http://example.org/x"


def test_predicate_roles_of_the_dbpedia_rules():
    rules = dbpedia_rules()
    role = lambda name: rules.role(expand(name))  # noqa: E731
    assert role("rdfs:label") is Role.NAME and role("foaf:name") is Role.NAME
    assert role("skos:altLabel") is Role.ALIAS and role("owl:sameAs") is Role.SAME_AS
    assert role("dbo:wikiPageRedirects") is Role.REDIRECT  # listed: not caught by the dbo:wikiPage* pattern
    assert role("dbo:abstract") is Role.TEXT and role("rdf:type") is Role.TYPE
    assert all(
        role(p) is Role.DROP
        for p in (
            "dbp:image",
            "dbp:imageCaption",
            "dbp:caption",
            "dbp:align",
            "dbp:div",
            "dbp:v",
            "dbp:wikt",
            "dbp:width",
            "foaf:depiction",
            "dbo:thumbnail",
            "dbo:wikiPageWikiLink",
            "dbo:wikiPageID",
            "prov:wasDerivedFrom",
        )
    )
    assert role("dbo:birthPlace") is Role.FACT and role("dbp:birthPlace") is Role.FACT
    assert rules.relation(expand("dct:subject")) == "category"
    assert rules.relation(expand("dbo:birthPlace")) == "birth place"


def test_rules_file_adds_removes_renames(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(
        'languages = ["en", "de"]\nlong_text = "drop"\n'
        '[add]\ndrop_predicates = ["ex:secret*"]\n[remove]\ndrop_predicates = ["dbp:caption*"]\n'
        '[rename]\n"dbo:birthPlace" = "born in"\n[prefixes]\nex = "http://example.org/"\n'
    )
    rules = load_rules(path)
    assert rules.languages == ("en", "de") and rules.long_text == "drop"
    assert rules.role("http://example.org/secretCode") is Role.DROP
    assert rules.role(expand("dbp:caption")) is Role.FACT and rules.role(expand("dbp:image")) is Role.DROP
    assert rules.relation(expand("dbo:birthPlace")) == "born in"
    assert rules.fingerprint() != dbpedia_rules().fingerprint()
    assert load_rules(None, languages=["de"]).languages == ("de",)
    assert load_rules(None).fingerprint() == dbpedia_rules().fingerprint()


@pytest.mark.parametrize(
    "text",
    [
        'long_txt = "drop"',
        'long_text = "summaries"',
        'base = "wikidata"',
        '[add]\nlong_text = ["x"]',
        'prefer = [["dbo"]]',
        "not toml =",
    ],
)
def test_bad_rules_are_clear_errors(tmp_path, text):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(RulesError):
        load_rules(path)


def test_plain_base_has_no_predicate_rules(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text('base = "none"\n')
    rules = load_rules(path)
    assert rules.role(expand("dbp:image")) is Role.FACT and rules.role(expand("rdfs:label")) is Role.NAME
    assert rules.prefer == ()
