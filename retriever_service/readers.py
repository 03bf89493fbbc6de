"""Readers that turn knowledge-graph files into triples.

Every format is streamed line by line in constant memory, plain or compressed (.bz2, .gz, .xz):
N-Triples, N-Quads (the graph is left out), Turtle written one triple per line (DBpedia's .ttl
dumps), `head|relation|tail`, TSV and JSONL. Other Turtle is parsed whole by rdflib, up to
rdf_parsing.MAX_TURTLE_BYTES. RDF statements go through RdfRules (rdf_rules.py, rdf_mapping.py):
literals rendered, other languages and empty literals left out, names and aliases, intermediate
nodes, long text, predicate rules. A line that cannot be parsed is reported (file and line
number) and skipped: the rest still loads.

KgReader reads several inputs as one stream and knows, after each triple it gave, how far each
input got (checkpoints.InputMark), so that a load can record it and resume there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import rdflib
from rdflib import Literal
from tqdm import tqdm

from retriever_service.checkpoints import InputMark, input_key
from retriever_service.dumps import DumpFile, split_compression
from retriever_service.rdf_mapping import NameIndex, RdfMapper, name_candidate
from retriever_service.rdf_parsing import (
    MAX_TURTLE_BYTES,
    LineError as StatementError,
    Statement,
    decode_line,
    is_line_based_turtle,
    line_statements,
    parse_line,
    turtle_statements,
)
from retriever_service.rdf_rules import RdfRules, dbpedia_rules
from retriever_service.read_report import LineError, ReadReport
from shared.facts import Triple, humanize

log = logging.getLogger(__name__)

__all__ = [
    "FORMATS",
    "KgReader",
    "LineError",
    "ReadReport",
    "ReaderError",
    "detect_format",
    "read_triples",
    "term_name",
]

FORMATS = ("nt", "nq", "ttl", "pipe", "tsv", "jsonl")
RDF_FORMATS = ("nt", "nq", "ttl")
_SUFFIXES = {".nt": "nt", ".nq": "nq", ".ttl": "ttl", ".tsv": "tsv", ".jsonl": "jsonl", ".txt": "pipe", ".psv": "pipe"}


class ReaderError(ValueError):
    """The file cannot be read at all (unknown format, missing file, Turtle too large to parse whole)."""


def detect_format(path: Path) -> str:
    """The format from the suffix, under a compression suffix: 'dump.nt.bz2' -> 'nt'."""
    suffix, _ = split_compression(Path(path))
    fmt = _SUFFIXES.get(suffix)
    if fmt is None:
        raise ReaderError(f"{path}: unknown file type {suffix!r}; pass a format, one of {', '.join(FORMATS)}")
    return fmt


@dataclass(frozen=True)
class KgInput:
    path: Path
    fmt: str
    streamed: bool  # read line by line (False: Turtle parsed whole)

    def key(self) -> dict:
        return input_key(self.path, self.fmt)


def describe_input(path: Path, fmt: str | None = None) -> KgInput:
    """Checks that an input can be read: the file exists, its format is known, and Turtle that is not
    written one triple per line is small enough to parse whole. ReaderError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ReaderError(f"{path}: no such file")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ReaderError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if fmt != "ttl":
        return KgInput(path, fmt, True)
    with DumpFile(path) as dump:
        if is_line_based_turtle(dump):
            return KgInput(path, fmt, True)
        ratio = 4 if dump.compression else 1  # a compressed file is at least 4 times larger unpacked
        if dump.size * ratio > MAX_TURTLE_BYTES:
            raise ReaderError(
                f"{path}: Turtle with prefixes is parsed whole, which this file is too large for "
                f"(limit {MAX_TURTLE_BYTES // 2**20} MiB unpacked); convert it to N-Triples "
                "(e.g. `riot --output=nt` or `rapper -i turtle -o ntriples`) and load that"
            )
    return KgInput(path, fmt, False)


def read_triples(
    path: Path, fmt: str | None = None, report: ReadReport | None = None, rules: RdfRules | None = None
) -> Iterator[Triple]:
    """Stream the triples of one file; bad lines go to `report` (or only to the log)."""
    yield from KgReader([path], fmt, rules=rules, report=report)


class KgReader:
    """Several inputs read in order as one stream of triples. `marks[i]` says how far input i got
    once the consumer holds the last triple given; start marks resume a killed load."""

    def __init__(
        self,
        paths: list[Path],
        fmt: str | None = None,
        *,
        rules: RdfRules | None = None,
        report: ReadReport | None = None,
        marks: list[InputMark] | None = None,
        progress: bool = False,
    ) -> None:
        self.inputs = [describe_input(p, fmt) for p in paths]
        self.rules = rules or dbpedia_rules()
        self.report = report if report is not None else ReadReport()
        self.marks = list(marks) if marks is not None else [InputMark() for _ in self.inputs]
        self.names = NameIndex(self.rules)
        self.progress = progress
        self._done_bytes = 0
        self._current: DumpFile | None = None
        self._prepared = False

    @property
    def total_bytes(self) -> int:
        return sum(i.path.stat().st_size for i in self.inputs)

    @property
    def bytes_read(self) -> int:
        """Bytes of the inputs (as stored, compressed) read so far, finished inputs included."""
        return self._done_bytes + (self._current.position if self._current is not None else 0)

    def keys(self) -> list[dict]:
        return [i.key() for i in self.inputs]

    def prepare(self) -> None:
        """Fill the name index (the prepass); done by the first iteration when not called before."""
        if not self._prepared:
            self._collect_names()
            self._prepared = True

    def __iter__(self) -> Iterator[Triple]:
        self.prepare()
        for index, item in enumerate(self.inputs):
            if not self.marks[index].complete:
                yield from self._read_input(index)
                self.marks[index] = InputMark(self.marks[index].line, self.marks[index].offset, complete=True)
            self._done_bytes += item.path.stat().st_size

    def _read_input(self, index: int) -> Iterator[Triple]:
        item, mark = self.inputs[index], self.marks[index]
        if mark.line:
            log.info("%s: resuming after line %d", item.path, mark.line)
        with DumpFile(item.path) as dump:
            self._current = dump
            try:
                if item.fmt in RDF_FORMATS:
                    yield from self._rdf_input(index, dump)
                else:
                    yield from self._line_input(index, dump)
            finally:
                self._current = None

    def _rdf_input(self, index: int, dump: DumpFile) -> Iterator[Triple]:
        mapper = RdfMapper(self.rules, self.report, self.names, names_complete=self.rules.labels == "prepass")
        for block, following in mapper.blocks(self._statements(index, dump)):
            triples = mapper.triples(block)
            end = InputMark(following.line - 1, following.offset) if following is not None and following.line else None
            if end is not None and not triples:
                self.marks[index] = end
            for k, triple in enumerate(triples):
                if end is not None and k == len(triples) - 1:
                    self.marks[index] = end  # set before the block's last triple is handed out
                yield triple

    def _statements(self, index: int, dump: DumpFile) -> Iterator[Statement]:
        item, mark = self.inputs[index], self.marks[index]
        if item.streamed:

            def on_error(line: int, message: str) -> None:
                self.report.add(item.path, line, message)

            yield from line_statements(dump, item.fmt == "nq", on_error, mark.line, mark.offset)
            return
        try:
            statements = list(turtle_statements(dump, MAX_TURTLE_BYTES))
        except ValueError as exc:
            raise ReaderError(f"{item.path}: {exc}; convert it to N-Triples and load that") from exc
        except Exception as exc:  # rdflib's parser raises many types; the whole file is unusable
            self.report.add(item.path, getattr(exc, "lines", 0) or 0, f"invalid Turtle: {exc}")
            return
        yield from statements

    def _line_input(self, index: int, dump: DumpFile) -> Iterator[Triple]:
        item, mark = self.inputs[index], self.marks[index]
        parse = _LINE_PARSERS[item.fmt]
        for number, offset, raw in dump.lines(mark.line, mark.offset):
            try:
                text = decode_line(raw)
                if text is None:
                    continue
                triple = parse(text)
            except (ValueError, UnicodeDecodeError) as exc:
                self.report.add(item.path, number, str(exc))
                continue
            self.marks[index] = InputMark(number, offset + len(raw))
            self.report.relations[triple.relation] += 1
            yield triple

    def _collect_names(self) -> None:
        """Fills the name index before any fact is made: from every RDF input with the prepass, else
        (stream) from the part of each input that a resumed load passes over."""
        for index, item in enumerate(self.inputs):
            if item.fmt not in RDF_FORMATS:
                continue
            mark = self.marks[index]
            if self.rules.labels == "prepass":
                self._names_of(item, None)
            elif mark.complete or mark.line:
                self._names_of(item, None if mark.complete else mark.line)

    def _names_of(self, item: KgInput, until_line: int | None) -> None:
        with (
            DumpFile(item.path) as dump,
            tqdm(
                total=dump.size,
                unit="B",
                unit_scale=True,
                desc=f"names {item.path.name}",
                disable=not self.progress,
                leave=False,
            ) as bar,
        ):
            if item.streamed:
                statements = _name_statements(dump, self.rules, item.fmt == "nq", until_line, bar)
            else:
                statements = turtle_statements(dump, MAX_TURTLE_BYTES)
            try:
                for st in statements:
                    if (candidate := name_candidate(st, self.rules)) is not None:
                        self.names.offer(st.s, *candidate)
            except Exception as exc:  # a Turtle file that does not parse is reported when it is read for its facts
                log.debug("no names from %s: %s", item.path, exc)
        if self.names.overflow:
            log.warning(
                "name index full (%d entries): %d entities keep the names their IRIs give",
                len(self.names),
                self.names.overflow,
            )


def _name_statements(
    dump: DumpFile, rules: RdfRules, quads: bool, until_line: int | None, bar: tqdm
) -> Iterator[Statement]:
    """The name statements of a line-based file (up to until_line), found by their predicate's
    IRI in the raw line before anything is parsed."""
    needles = tuple(f"<{iri}>".encode() for iri in rules.name_predicates)
    parser_lines: list[tuple[int, int, bytes]] = []
    for number, offset, raw in dump.lines():
        if until_line is not None and number > until_line:
            break
        if number % 65536 == 0:
            bar.update(dump.position - bar.n)
        if any(needle in raw for needle in needles):
            parser_lines.append((number, offset, raw))
            if len(parser_lines) >= 4096:
                yield from _parse_some(parser_lines, quads)
                parser_lines.clear()
    yield from _parse_some(parser_lines, quads)


def _parse_some(lines: list[tuple[int, int, bytes]], quads: bool) -> Iterator[Statement]:
    for number, offset, raw in lines:
        try:
            text = decode_line(raw)
            if text is not None:
                yield Statement(*parse_line(text, quads), number, offset)
        except (UnicodeDecodeError, StatementError):
            continue  # reported when the file is read for its facts


def _parse_delimited(text: str, sep: str) -> Triple:
    parts = [p.strip() for p in text.split(sep)]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"expected 3 non-empty fields separated by {sep!r}, got {len(parts)}")
    return Triple(*parts)


def _parse_jsonl(text: str) -> Triple:
    try:
        row = json.loads(text)
        parts = [str(row[key]).strip() for key in ("subject", "relation", "object")]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"expected a JSON object with subject, relation, object: {exc}") from exc
    if not all(parts):
        raise ValueError("subject, relation and object must be non-empty")
    return Triple(*parts)


_LINE_PARSERS: dict[str, Callable[[str], Triple]] = {
    "pipe": lambda text: _parse_delimited(text, "|"),
    "tsv": lambda text: _parse_delimited(text, "\t"),
    "jsonl": _parse_jsonl,
}


def term_name(term: rdflib.term.Node, labels: Mapping[rdflib.term.Node, str] | None = None) -> str:
    """A readable name: the label when known, else the URI's last segment, humanized (as relations are named)."""
    if isinstance(term, Literal):
        return str(term)
    if labels and term in labels:
        return labels[term]
    text = str(term).rstrip("/#")
    tail = text.rsplit("#", 1)[-1] if "#" in text else text.rsplit("/", 1)[-1]
    return humanize(tail) or text
