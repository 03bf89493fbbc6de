"""Dumps as they ship: compressed files, N-Quads, DBpedia's line-per-triple Turtle, and reading on
from a mark (what a resumed load does)."""

import bz2
import gzip
import itertools
import lzma

import pytest

from retriever_service import readers
from retriever_service.checkpoints import Checkpoint, InputMark
from retriever_service.dumps import DumpFile, split_compression
from retriever_service.readers import KgReader, ReaderError, ReadReport, describe_input, detect_format, read_triples
from tests.conftest import FIXTURES

CASES = FIXTURES / "dbpedia_cases.nt"
OPENERS = {"bz2": bz2.open, "gz": gzip.open, "xz": lzma.open}


def compressed(tmp_path, source, name, kind):
    path = tmp_path / name
    with OPENERS[kind](path, "wb") as out:
        out.write(source.read_bytes())
    return path


def as_quads(text: str) -> str:
    """Each statement line of an N-Triples text with a graph term before its final dot."""
    lines = []
    for line in text.splitlines():
        if line.rstrip().endswith(" .") and not line.startswith("#"):
            line = line.rstrip()[:-2] + " <http://dbpedia.org> ."
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_compression_suffixes():
    assert split_compression(CASES.with_name("x.nt.bz2")) == (".nt", "bz2")
    assert split_compression(CASES.with_name("x.ttl.gz")) == (".ttl", "gzip")
    assert split_compression(CASES.with_name("x.nq")) == (".nq", None)
    assert [detect_format(CASES.with_name(n)) for n in ("a.nt.bz2", "a.nq.gz", "a.txt.xz", "a.ttl")] == [
        "nt",
        "nq",
        "pipe",
        "ttl",
    ]


@pytest.mark.parametrize("kind", ["bz2", "gz", "xz"])
def test_compressed_files_read_the_same(tmp_path, kind):
    plain_report, packed_report = ReadReport(), ReadReport()
    plain = list(read_triples(CASES, report=plain_report))
    packed = list(read_triples(compressed(tmp_path, CASES, f"cases.nt.{kind}", kind), report=packed_report))
    assert packed == plain and len(plain) > 15
    assert [e.line for e in packed_report.errors] == [e.line for e in plain_report.errors] == [36]
    movies = list(read_triples(compressed(tmp_path, FIXTURES / "movies.txt", f"movies.txt.{kind}", kind)))
    assert movies == list(read_triples(FIXTURES / "movies.txt"))


def test_n_quads_leave_the_graph_out(tmp_path):
    quads = tmp_path / "cases.nq"
    quads.write_text(as_quads(CASES.read_text()))
    assert list(read_triples(quads)) == list(read_triples(CASES))
    packed = compressed(tmp_path, quads, "cases.nq.gz", "gz")
    assert list(read_triples(packed)) == list(read_triples(CASES))
    bad = tmp_path / "bad.nq"
    bad.write_text('<http://a> <http://b> "c" <http://g> <http://extra> .\n<http://a> <http://b> "d" .\n')
    report = ReadReport()
    assert [t.object for t in read_triples(bad, report=report)] == ["d"]  # the graph term is optional
    assert [e.line for e in report.errors] == [1]


def test_line_per_triple_turtle_streams_and_other_turtle_is_parsed_whole(tmp_path, monkeypatch):
    as_nt = tmp_path / "fixed.nt"
    as_nt.write_bytes(CASES.read_bytes().replace(b" this line is broken", b" ."))
    dbpedia_ttl = compressed(tmp_path, as_nt, "cases.ttl.bz2", "bz2")
    assert describe_input(dbpedia_ttl).streamed
    assert list(read_triples(dbpedia_ttl)) == list(read_triples(as_nt))
    assert not describe_input(FIXTURES / "geo.ttl").streamed
    monkeypatch.setattr(readers, "MAX_TURTLE_BYTES", 100)
    with pytest.raises(ReaderError, match="N-Triples"):
        describe_input(FIXTURES / "geo.ttl")
    many = tmp_path / "many.ttl"
    many.write_text("@prefix ex: <http://example.org/> .\n" + "".join(f"ex:e{i} ex:p ex:o{i} .\n" for i in range(200)))
    packed = compressed(tmp_path, many, "many.ttl.gz", "gz")
    monkeypatch.setattr(readers, "MAX_TURTLE_BYTES", 4 * packed.stat().st_size + 1)  # passes the check up front
    with pytest.raises(ReaderError, match="more than"):
        list(KgReader([packed]))
    monkeypatch.setattr(readers, "MAX_TURTLE_BYTES", many.stat().st_size)
    assert len(list(KgReader([packed]))) == 200


def test_blank_nodes_keep_their_labels(tmp_path):
    path = tmp_path / "b.nt"
    path.write_text("_:b1 <http://example.org/p> <http://example.org/X> .\n")
    first, second = list(read_triples(path)), list(read_triples(path))
    assert first == second and first[0].subject == "blank node b1" and first[0].subject_kind == "node"


@pytest.mark.parametrize("name", ["cases.nt", "cases.nt.bz2", "movies.txt"])
def test_reading_on_from_any_mark_gives_exactly_the_rest(tmp_path, name):
    """The mark after the k-th triple (what a checkpoint records) resumes to the full list's tail."""
    source = FIXTURES / ("movies.txt" if name == "movies.txt" else "dbpedia_cases.nt")
    path = compressed(tmp_path, source, name, "bz2") if name.endswith(".bz2") else source
    full = list(read_triples(path))
    rests = []
    for k in range(1, len(full) + 1):
        reader = KgReader([path])
        given = list(itertools.islice(iter(reader), k))
        rest = list(KgReader([path], marks=reader.marks))
        assert given == full[:k]
        assert rest == full[len(full) - len(rest) :] and len(rest) >= len(full) - k, k
        rests.append(len(rest))
    assert rests == sorted(rests, reverse=True) and rests[-1] < len(full) // 2  # marks move on, block by block


def test_progress_counts_compressed_bytes(tmp_path):
    path = compressed(tmp_path, CASES, "cases.nt.bz2", "bz2")
    reader = KgReader([path, FIXTURES / "movies.txt"])
    assert reader.bytes_read == 0
    seen = [reader.bytes_read for _ in reader]
    assert seen == sorted(seen) and reader.bytes_read == reader.total_bytes
    assert reader.marks == [
        InputMark(reader.marks[0].line, reader.marks[0].offset, True),
        InputMark(reader.marks[1].line, reader.marks[1].offset, True),
    ]


def test_dump_lines_resume_at_an_offset(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"a|r|b\n# note\nc|r|d\r\ne|r|f\n")
    with DumpFile(path) as dump:
        lines = list(dump.lines())
    assert [(n, off) for n, off, _ in lines] == [(1, 0), (2, 6), (3, 13), (4, 20)]
    with DumpFile(path) as dump:
        assert list(dump.lines(2, 13)) == lines[2:]


def test_checkpoint_matches_inputs_and_rules(tmp_path):
    path = tmp_path / "kb.txt"
    path.write_text("a|r|b\n")
    keys = [describe_input(path).key()]
    checkpoint = Checkpoint(tmp_path / "c.json", "rules-1")
    checkpoint.save(keys, [InputMark(1, 6)])
    assert checkpoint.load(keys) == [InputMark(1, 6)]
    assert Checkpoint(tmp_path / "c.json", "rules-2").load(keys) == [InputMark()]  # other rules: from the start
    path.write_text("a|r|b\nc|r|d\n")  # the file changed
    assert checkpoint.load([describe_input(path).key()]) == [InputMark()]
    (tmp_path / "c.json").write_text("{not json")
    assert checkpoint.load(keys) == [InputMark()]
    checkpoint.remove()
    assert not (tmp_path / "c.json").exists()
