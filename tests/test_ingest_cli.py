import bz2
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bench.ingest_bench import write_dump
from retriever_service import ingest_cli, prior_fitting
from retriever_service.chains import NONE_KEY
from retriever_service.demo_kg import demo_triples, write_demo_kg
from retriever_service.readers import read_triples
from retriever_service.relation_prior import RelationPrior
from retriever_service.relation_words import read_relation_words
from retriever_service.settings import RetrieverSettings
from retriever_service.state import RetrieverState
from shared.facts import NODE, Triple, kind_of
from shared.metrics import Metrics
from tests.conftest import FIXTURES


@pytest.fixture(autouse=True)
def shared_encoder(monkeypatch, encoder):
    monkeypatch.setattr(ingest_cli.Encoder, "load", classmethod(lambda cls, **kw: encoder))


def run(capsys, *argv):
    assert ingest_cli.main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_load_twice_stores_each_fact_once_and_reports_bad_lines(tmp_path, capsys):
    first = run(
        capsys, "--data-dir", str(tmp_path), "load", str(FIXTURES / "movies.txt"), str(FIXTURES / "people.jsonl")
    )
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
    assert {t.relation for t in triples} >= {
        "capital",
        "region",
        "subregion",
        "borders",
        "currency",
        "official language",
        "population",
        "area",
        "demonym",
    }
    assert write_demo_kg(tmp_path / "demo.jsonl") == len(triples)


def test_fit_relations_learns_which_relation_a_question_asks_for(tmp_path, capsys, encoder):
    run(capsys, "--data-dir", str(tmp_path), "load", str(FIXTURES / "movies.txt"))
    questions = [
        ("who directed [Forrest Gump]", ["Robert Zemeckis"]),
        ("who is the director of [Big]", ["Penny Marshall"]),
        ("who directed [Up]", ["Pete Docter"]),
        ("who directed [Her]", ["Spike Jonze"]),
        ("the film [Amélie] was directed by who", ["Jean-Pierre Jeunet"]),
        ("who starred in [Forrest Gump]", ["Tom Hanks"]),
        ("who acted in [Big]", ["Tom Hanks"]),
        ("the movie [Forrest Gump] starred who", ["Tom Hanks"]),
        ("who appears in [Forrest Gump]", ["Tom Hanks"]),
        ("who is in [Forrest Gump]", ["Tom Hanks"]),
        ("which movies did [Tom Hanks] star in", ["Forrest Gump", "Cast Away", "Big"]),
        ("what films did [Robert Zemeckis] direct", ["Forrest Gump", "Cast Away"]),
        ("what did [Penny Marshall] direct", ["Big"]),
        ("when was [Forrest Gump] released", ["1994"]),
        ("what language is [Amélie] in", ["French"]),
    ]
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answers": a}) + "\n" for q, a in questions))
    report = run(capsys, "--data-dir", str(tmp_path), "fit-relations", str(path))
    assert report["questions"][str(path)] == len(questions) and report["unlabelled"] == 0  # all answerable here
    prior = RelationPrior.load(RetrieverSettings(data_dir=tmp_path).relation_prior_path)
    assert {"directed_by", "directed_by^-1", "starred_actors", "starred_actors^-1", NONE_KEY} <= set(prior.keys)
    assert report["keys"] == len(prior.keys) and report["saved"] == str(
        RetrieverSettings(data_dir=tmp_path).relation_prior_path
    )
    state = RetrieverState(settings=RetrieverSettings(data_dir=tmp_path), encoder=encoder, metrics=Metrics("test"))
    try:
        # by cosine alone the second and third are answered with "Cast Away directed by Robert Zemeckis"
        asked = [
            "who directed cast away?",
            "who appears in cast away?",
            "who is in cast away?",
            "what did robert zemeckis direct?",
        ]
        top = [r.facts[0] for r in state.retriever().search(asked, 3)]
    finally:
        state.close()
    assert [(f.subject, f.relation, f.object) for f in top[:3]] == [
        ("Cast Away", "directed_by", "Robert Zemeckis"),
        *[("Cast Away", "starred_actors", "Tom Hanks")] * 2,
    ]
    assert (top[3].relation, top[3].object) == ("directed_by", "Robert Zemeckis")  # either of his two films


def test_relation_read_about_each_linked_mention(tmp_path, capsys, encoder, monkeypatch):
    """'actors' is an entity too (a tag): the relation prior reads the question once per linked mention,
    each masked in turn, and scores a fact by the reading of the mention it touches. Masking only the
    first mention found read "who are the X in tension" for every fact of the film."""
    kb = tmp_path / "kb.txt"
    kb.write_text(
        "Tension|directed_by|John Berry\nTension|starred_actors|Richard Basehart\n"
        "Treasure Island|has_tags|actors\nBig|directed_by|Penny Marshall\nBig|starred_actors|Tom Hanks\n"
        "Up|directed_by|Pete Docter\nUp|starred_actors|Ed Asner\n"
    )
    run(capsys, "--data-dir", str(tmp_path), "load", str(kb))
    questions = [
        ("who directed [Big]", ["Penny Marshall"]),
        ("who is the director of [Up]", ["Pete Docter"]),
        ("who are the actors in [Big]", ["Tom Hanks"]),
        ("who acted in [Up]", ["Ed Asner"]),
        ("the director of [Big] is who", ["Penny Marshall"]),
        ("who starred in [Up]", ["Ed Asner"]),
    ]
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answers": a}) + "\n" for q, a in questions))
    run(capsys, "--data-dir", str(tmp_path), "fit-relations", str(path))
    state = RetrieverState(settings=RetrieverSettings(data_dir=tmp_path), encoder=encoder, metrics=Metrics("test"))
    encoded = []
    monkeypatch.setattr(encoder, "encode", lambda texts, encode=encoder.encode: encoded.extend(texts) or encode(texts))
    try:
        result = state.retriever().search(["who are the actors in tension", "who directed tension"], 2)
    finally:
        state.close()
    assert [e.mention for e in result[0].linked] == ["actors", "tension"]
    assert {"who are the X in tension", "who are the actors in X", "who directed X"} <= set(encoded)
    assert [(r.facts[0].relation, r.facts[0].object) for r in result] == [
        ("starred_actors", "Richard Basehart"),
        ("directed_by", "John Berry"),
    ]


CASES = FIXTURES / "dbpedia_cases.nt"
ROOT = Path(__file__).resolve().parents[1]


class HashEncoder:
    """Deterministic unit vectors from each text's CRC, after a pause per batch: a load without the model,
    slow enough to be killed half-way."""

    dim, name = 384, "fake"

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause

    def encode(self, texts, batch_size=128):
        time.sleep(self.pause)
        rows = np.stack([np.random.default_rng(zlib.crc32(t.encode())).standard_normal(self.dim) for t in texts])
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


# `kgrag-ingest` with a HashEncoder pausing argv[1] seconds per batch.
PAUSED_LOAD = (
    "import sys; from tests.test_ingest_cli import HashEncoder; from retriever_service import ingest_cli; "
    "ingest_cli.Encoder.load = classmethod(lambda cls, **kw: HashEncoder(float(sys.argv[1]))); "
    "sys.exit(ingest_cli.main(sys.argv[2:]))"
)


def packed(tmp_path, source, name):
    path = tmp_path / name
    path.write_bytes(bz2.compress(source.read_bytes()))
    return path


def test_stats_of_files_is_a_dry_run_without_the_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ingest_cli.Encoder, "load", classmethod(lambda cls, **kw: pytest.fail("model loaded")))
    dump = packed(tmp_path, CASES, "cases.nt.bz2")
    out = run(capsys, "--data-dir", str(tmp_path / "store"), "stats", str(dump), str(FIXTURES / "movies.txt"))
    expected = Counter(t.relation for path in (dump, FIXTURES / "movies.txt") for t in read_triples(path))
    assert out["relations"] == dict(expected.most_common(50)) and out["triples"] == sum(expected.values())
    assert out["dropped"]["empty literal"] == 1 and out["dropped"]["dbp duplicate of dbo"] == 2
    assert out["dropped_by_predicate"]["predicate rule"]["dbp:image"] == 1
    assert out["skipped_lines"] == 3 and any("cases.nt.bz2:36" in e for e in out["errors"])
    assert not (tmp_path / "store").exists()  # nothing stored, no store opened
    assert out["passages"] == 0 and out["dropped"]["long text"] == 3
    passages = run(capsys, "stats", str(dump), "--long-text", "passages", "--languages", "en,fr")
    assert passages["passages"] == 3 and "long text" not in passages["dropped"]
    assert 0 < passages["dropped"]["other language"] < out["dropped"]["other language"]


def test_stats_of_the_store_counts_facts_per_relation(tmp_path, capsys):
    run(capsys, "--data-dir", str(tmp_path), "load", str(FIXTURES / "movies.txt"))
    out = run(capsys, "--data-dir", str(tmp_path), "stats")
    expected = Counter(t.relation for t in read_triples(FIXTURES / "movies.txt"))
    assert out["relations"] == dict(expected) and out["facts"] == sum(expected.values())


def test_load_of_compressed_dbpedia_stores_kinds_and_reports_what_was_left_out(tmp_path, capsys, encoder):
    dump = packed(tmp_path, CASES, "cases.nt.bz2")
    out = run(capsys, "--data-dir", str(tmp_path), "load", str(dump))
    triples = list(read_triples(CASES))
    assert out["facts"] == out["added"] == len({t.id for t in triples})
    assert out["dropped"]["empty literal"] == 1 and out["skipped_lines"] == 1 and out["resumed_after_line"] == {}
    assert not (tmp_path / "facts.ingest-checkpoint.json").exists()
    node_fact = Triple("Ada Lovelace", "occupation", "Ada Lovelace, person function 1")
    state = RetrieverState(settings=RetrieverSettings(data_dir=tmp_path), encoder=encoder, metrics=Metrics("test"))
    try:
        stored = state.store().fetch([node_fact.id])[node_fact.id]
    finally:
        state.close()
    assert kind_of(stored, "object") == NODE and kind_of(stored, "subject") == "entity"


def test_bad_rules_file_is_a_clear_error_before_anything_loads(tmp_path, capsys):
    rules = tmp_path / "rules.toml"
    rules.write_text('long_text = "summaries"\n')
    assert ingest_cli.main(["--data-dir", str(tmp_path), "load", str(CASES), "--rules", str(rules)]) == 2
    assert "long_text" in capsys.readouterr().err
    assert not (tmp_path / "facts").exists()


def test_killed_compressed_load_resumes_to_the_exact_count(tmp_path, capsys, monkeypatch):
    """A real load process is killed (SIGKILL) after its checkpoint recorded some batches; run again, it
    reads on from there and ends with the count of a clean load."""
    dump = write_dump(tmp_path / "kg.nt.bz2", 5000)
    args = ["--data-dir", str(tmp_path / "killed"), "load", str(dump), "--batch-size", "100"]
    checkpoint = tmp_path / "killed" / "facts.ingest-checkpoint.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSED_LOAD, "0.3", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while not (checkpoint.exists() and json.loads(checkpoint.read_text())["inputs"][0]["mark"]["line"] > 0):
            assert proc.poll() is None and time.monotonic() < deadline, "the load ended before it could be killed"
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done_line = json.loads(checkpoint.read_text())["inputs"][0]["mark"]["line"]
    monkeypatch.setattr(ingest_cli.Encoder, "load", classmethod(lambda cls, **kw: HashEncoder()))
    resumed = run(capsys, *args)
    clean = run(capsys, "--data-dir", str(tmp_path / "clean"), "load", str(dump), "--batch-size", "100")
    assert resumed["facts"] == clean["facts"] == len({t.id for t in read_triples(dump)})
    assert resumed["resumed_after_line"] == {str(dump): done_line} and done_line > 0
    assert resumed["received"] < clean["received"]  # the stored part was not read into facts again
    assert resumed["existing"] < 100  # at most the batch in flight when the process was killed
    assert not checkpoint.exists()


def test_fit_relations_keeps_the_relation_words_it_was_given_for_later_fits(tmp_path, capsys, monkeypatch):
    for grid in ("WEIGHTS", "TEMPERATURES", "MENTION_PENALTIES", "NAMING_WEIGHTS"):  # one point each: fast
        monkeypatch.setattr(prior_fitting, grid, getattr(prior_fitting, grid)[:1])
    run(capsys, "--data-dir", str(tmp_path), "load", str(FIXTURES / "movies.txt"))
    given = tmp_path / "words.json"
    given.write_text(json.dumps({"directed_by": ["director", "filmmaker"]}))
    report = run(capsys, "--data-dir", str(tmp_path), "fit-relations", "--relation-words", str(given))
    assert report["relation_words"] == {"from": str(given), "relations": 1, "words": 2}
    kept = RetrieverSettings(data_dir=tmp_path).relation_words_path
    assert read_relation_words(kept).of("directed_by") == ("directed by", "director", "filmmaker")
    again = run(capsys, "--data-dir", str(tmp_path), "fit-relations")
    assert again["relation_words"]["from"] == str(kept)
    fitted = RetrieverSettings(data_dir=tmp_path).relation_prior_path.stat().st_mtime_ns
    # a relation the KG lacks (a typo): a clear error, and neither the kept words nor the prior change
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"directd_by": ["director"]}))
    assert ingest_cli.main(["--data-dir", str(tmp_path), "fit-relations", "--relation-words", str(typo)]) == 2
    assert "['directd_by']" in capsys.readouterr().err
    assert read_relation_words(kept).of("directed_by") == ("directed by", "director", "filmmaker")
    assert RetrieverSettings(data_dir=tmp_path).relation_prior_path.stat().st_mtime_ns == fitted
