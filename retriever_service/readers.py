"""Readers that turn knowledge-graph files into triples.

N-Triples and the line formats (`head|relation|tail`, TSV, JSONL) are streamed line by line, so
a file of any size is read in constant memory; Turtle is parsed whole by rdflib. A line that
cannot be parsed is reported (file and line number) and skipped: the rest still loads.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import rdflib
from rdflib import Literal, URIRef
from rdflib.namespace import FOAF, RDFS, SKOS
from rdflib.plugins.parsers.ntriples import W3CNTriplesParser

from shared.facts import Triple, humanize

log = logging.getLogger(__name__)

FORMATS = ("nt", "ttl", "pipe", "tsv", "jsonl")
_SUFFIXES = {".nt": "nt", ".ttl": "ttl", ".tsv": "tsv", ".jsonl": "jsonl", ".txt": "pipe", ".psv": "pipe"}
_LABEL_PREDICATES = (RDFS.label, SKOS.prefLabel, FOAF.name)


class ReaderError(ValueError):
    """The file cannot be read at all (unknown format, missing file)."""


@dataclass
class LineError:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class ReadReport:
    """What a reader skipped; filled while the triples stream out."""

    errors: list[LineError] = field(default_factory=list)
    max_kept: int = 100
    skipped: int = 0

    def add(self, path: Path, line: int, message: str) -> None:
        self.skipped += 1
        err = LineError(str(path), line, message)
        log.warning("skipped %s", err)
        if len(self.errors) < self.max_kept:
            self.errors.append(err)


def detect_format(path: Path) -> str:
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ReaderError(f"{path}: unknown file type {path.suffix!r}; pass a format, one of {', '.join(FORMATS)}")
    return fmt


def read_triples(path: Path, fmt: str | None = None, report: ReadReport | None = None) -> Iterator[Triple]:
    """Stream the triples of one file; bad lines go to `report` (or only to the log)."""
    path = Path(path)
    if not path.is_file():
        raise ReaderError(f"{path}: no such file")
    fmt = fmt or detect_format(path)
    readers: dict[str, Callable[[Path, ReadReport], Iterator[Triple]]] = {
        "nt": _read_ntriples,
        "ttl": _read_turtle,
        "pipe": lambda p, r: _read_delimited(p, r, "|"),
        "tsv": lambda p, r: _read_delimited(p, r, "\t"),
        "jsonl": _read_jsonl,
    }
    if fmt not in readers:
        raise ReaderError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    yield from readers[fmt](path, report or ReadReport())


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    # newline="" keeps names holding U+2028 and friends whole; str.splitlines() would cut them.
    with open(path, encoding="utf-8", newline="") as fh:
        for number, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if line.strip() and not line.lstrip().startswith("#"):
                yield number, line


def _read_delimited(path: Path, report: ReadReport, sep: str) -> Iterator[Triple]:
    for number, line in _lines(path):
        parts = [p.strip() for p in line.split(sep)]
        if len(parts) != 3 or not all(parts):
            report.add(path, number, f"expected 3 non-empty fields separated by {sep!r}, got {len(parts)}")
            continue
        yield Triple(*parts)


def _read_jsonl(path: Path, report: ReadReport) -> Iterator[Triple]:
    for number, line in _lines(path):
        try:
            row = json.loads(line)
            parts = [str(row[key]).strip() for key in ("subject", "relation", "object")]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            report.add(path, number, f"expected a JSON object with subject, relation, object: {exc}")
            continue
        if not all(parts):
            report.add(path, number, "subject, relation and object must be non-empty")
            continue
        yield Triple(*parts)


def term_name(term: rdflib.term.Node, labels: dict[URIRef, str] | None = None) -> str:
    """A readable name: the label when known, else the URI's last segment, humanized."""
    if isinstance(term, Literal):
        return str(term)
    if labels and term in labels:
        return labels[term]
    text = str(term).rstrip("/#")
    tail = text.rsplit("#", 1)[-1] if "#" in text else text.rsplit("/", 1)[-1]
    return humanize(tail) or text


class _Collect:
    """The sink rdflib's line parser writes into; it keeps the last parsed triple."""

    last: tuple | None = None

    def triple(self, s, p, o) -> None:
        self.last = (s, p, o)


def _parse_nt_line(parser: W3CNTriplesParser, sink: _Collect, line: str) -> tuple:
    sink.last = None
    parser.line = line
    parser.parseline()
    if sink.last is None:
        raise ValueError("not a triple")
    return sink.last


def _read_ntriples(path: Path, report: ReadReport) -> Iterator[Triple]:
    """Streams N-Triples; a label triple names its subject for the lines that follow it
    (DBpedia dumps put labels first), so labels cost memory only for the entities that have one."""
    sink = _Collect()
    parser = W3CNTriplesParser(sink=sink)
    labels: dict[URIRef, str] = {}
    for number, line in _lines(path):
        try:
            s, p, o = _parse_nt_line(parser, sink, line)
        except Exception as exc:  # rdflib raises ParseError and assorted ValueErrors
            report.add(path, number, f"invalid N-Triples: {exc}")
            continue
        if p in _LABEL_PREDICATES:  # a label names an entity; it is not a fact of its own
            if isinstance(o, Literal) and o.language in (None, "", "en"):
                labels.setdefault(s, str(o))
            continue
        yield Triple(term_name(s, labels), term_name(p), term_name(o, labels))


def _read_turtle(path: Path, report: ReadReport) -> Iterator[Triple]:
    graph = rdflib.Graph()
    try:
        graph.parse(path, format="turtle")
    except Exception as exc:  # rdflib's parser raises many types; the whole file is unusable
        report.add(path, getattr(exc, "lines", 0) or 0, f"invalid Turtle: {exc}")
        return
    labels = {s: str(o) for p in _LABEL_PREDICATES for s, o in graph.subject_objects(p)
              if isinstance(o, Literal) and o.language in (None, "", "en")}
    for s, p, o in graph:
        if p in _LABEL_PREDICATES:
            continue
        yield Triple(term_name(s, labels), term_name(p), term_name(o, labels))
