import json

import pytest

from retriever_service import ingest_cli
from retriever_service.demo_kg import demo_triples, write_demo_kg
from shared.facts import Triple
from tests.conftest import FIXTURES


@pytest.fixture(autouse=True)
def shared_encoder(monkeypatch, encoder):
    monkeypatch.setattr(ingest_cli.Encoder, "load", classmethod(lambda cls, **kw: encoder))


def run(capsys, *argv):
    assert ingest_cli.main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_load_twice_stores_each_fact_once_and_reports_bad_lines(tmp_path, capsys):
    first = run(capsys, "--data-dir", str(tmp_path), "load", str(FIXTURES / "movies.txt"), str(FIXTURES / "people.jsonl"))
    assert first["added"] == 14 and first["facts"] == 14 and first["skipped_lines"] == 4
    assert any("movies.txt:6" in e for e in first["errors"])
    second = run(capsys, "--data-dir", str(tmp_path), "load", str(FIXTURES / "movies.txt"))
    assert second["added"] == 0 and second["existing"] == 11 and second["facts"] == 14


def test_delete_by_triple_and_id(tmp_path, capsys):
    run(capsys, "--data-dir", str(tmp_path), "load", str(FIXTURES / "movies.txt"))
    fid = Triple("Up", "directed_by", "Pete Docter").id
    out = run(capsys, "--data-dir", str(tmp_path), "delete", "--triple", "Big|directed_by|Penny Marshall", "--id", fid)
    assert out == {"deleted": 2, "facts": 9}


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert ingest_cli.main(["--data-dir", str(tmp_path), "load", str(tmp_path / "nope.nt")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_demo_kg_covers_the_countries(tmp_path):
    triples = list(demo_triples())
    countries = {t.subject for t in triples}
    assert 240 <= len(countries) <= 260
    assert Triple("France", "capital", "Paris") in triples
    assert Triple("France", "borders", "Germany") in triples
    assert Triple("France", "currency", "Euro") in triples
    assert Triple("France", "official language", "French") in triples
    assert {t.relation for t in triples} >= {"capital", "region", "subregion", "borders", "currency",
                                              "official language", "population", "area", "demonym"}
    assert write_demo_kg(tmp_path / "demo.jsonl") == len(triples)
