"""RDF syntax to statements: N-Triples and N-Quads a line at a time (rdflib's line parser), Turtle
whole (rdflib's graph parser, for files up to MAX_TURTLE_BYTES), and Turtle that is written one
triple per line without prefixes (DBpedia's .ttl dumps) streamed as N-Triples.

A statement keeps the line it came from and that line's byte offset, for error messages and
checkpoints. Blank nodes keep the label the file gives them (`_:b1`), so the same file read
twice names them the same.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import NamedTuple, overload

import rdflib
from rdflib.compat import decodeUnicodeEscape
from rdflib.plugins.parsers.ntriples import DummySink, W3CNTriplesParser, r_nodeid, r_tail, r_wspace

from retriever_service.dumps import DumpFile

log = logging.getLogger(__name__)
MAX_TURTLE_BYTES = 256 * 1024 * 1024  # Turtle parsed whole takes about 1 KB of memory per triple
SNIFF_LINES = 200  # statement lines read to tell line-per-triple Turtle from the rest
_DIRECTIVES = ("@prefix", "@base", "prefix ", "base ")

logging.getLogger("rdflib.term").setLevel(logging.ERROR)  # ill-typed literals are rendered from their text

# One regular expression for a whole N-Triples or N-Quads line, from rdflib's own term patterns, so
# that it reads what rdflib's line parser reads; a line it does not match goes to rdflib's parser
# (for the error message). Groups: subject IRI | blank, predicate, object IRI | blank | literal
# (text, language, datatype), graph IRI | blank.
_IRI = r'<([^:]+:[^\s"<>]*)>'
_BLANK = r"_:([A-Za-z0-9_:](?:[-A-Za-z0-9_:\.]*[-A-Za-z0-9_:])?)"
_LITERAL = r'"([^"\\]*(?:\\.[^"\\]*)*)"(?:@([a-zA-Z]+(?:-[a-zA-Z0-9]+)*)|\^\^' + _IRI + ")?"
_LINE = re.compile(
    rf"[ \t]*(?:{_IRI}|{_BLANK})[ \t]*{_IRI}[ \t]*(?:{_IRI}|{_BLANK}|{_LITERAL})"
    rf"(?:[ \t]*(?:{_IRI}|{_BLANK}))?[ \t]*\.[ \t]*(?:#.*)?"
)


class Blank(str):
    """A blank node, by the label its file gives it."""

    __slots__ = ()


class Lit(NamedTuple):
    text: str
    language: str | None = None
    datatype: str | None = None  # a full IRI


Term = str | Blank | Lit  # an IRI is a plain str


class Statement(NamedTuple):
    s: str  # an IRI or a Blank
    p: str
    o: Term
    line: int  # 0 for Turtle parsed whole
    offset: int  # byte offset of the line in the uncompressed text


class LineError(ValueError):
    """A line that is not an N-Triples (or N-Quads) statement."""


def _unescape(text: str) -> str:
    return decodeUnicodeEscape(text) if "\\" in text else text


def parse_line(line: str, quads: bool = False) -> tuple[str, str, Term]:
    """(subject, predicate, object) of one N-Triples line (N-Quads: the graph term is read and left out).
    LineError when it is not one."""
    m = _LINE.fullmatch(line)
    if m is None or (not quads and (m.group(9) or m.group(10))):
        return StatementParser().statement(line, quads)  # rdflib says what is wrong (or reads an odd line)
    s = _unescape(m.group(1)) if m.group(1) is not None else Blank(m.group(2))
    if m.group(4) is not None:
        o: Term = _unescape(m.group(4))
    elif m.group(5) is not None:
        o = Blank(m.group(5))
    else:
        datatype = m.group(8)
        o = Lit(_unescape(m.group(6)), m.group(7), _unescape(datatype) if datatype else None)
    return s, _unescape(m.group(3)), o


@overload
def from_rdflib(term: rdflib.URIRef | rdflib.BNode) -> str: ...
@overload
def from_rdflib(term: rdflib.term.Node) -> Term: ...
def from_rdflib(term: rdflib.term.Node) -> Term:
    if isinstance(term, rdflib.Literal):
        return Lit(str(term), term.language, str(term.datatype) if term.datatype else None)
    if isinstance(term, rdflib.BNode):
        return Blank(term)
    return str(term)


class _NoSink(DummySink):
    def triple(self, s, p, o) -> None:  # the statements are returned, not sent
        pass


class StatementParser(W3CNTriplesParser):
    """rdflib's N-Triples parser, one line at a time; an N-Quads graph term is read and left out."""

    def __init__(self) -> None:
        super().__init__(sink=_NoSink())

    def nodeid(self, bnode_context=None):
        if self.peek("_"):
            return rdflib.BNode(self.eat(r_nodeid).group(1))
        return False

    def statement(self, line: str, quads: bool = False) -> tuple[str, str, Term]:
        self.line = line
        try:
            self.eat(r_wspace)
            s = self.subject()
            self.eat(r_wspace)
            p = self.predicate()
            self.eat(r_wspace)
            o = self.object()
            if quads:
                self.eat(r_wspace)
                self.uriref() or self.nodeid()
            self.eat(r_tail)
        except Exception as exc:  # rdflib raises ParseError and assorted ValueErrors
            raise LineError(str(exc) or type(exc).__name__) from exc
        if self.line:
            raise LineError(f"trailing text {self.line[:40]!r}")
        return from_rdflib(s), str(p), from_rdflib(o)


def decode_line(raw: bytes) -> str | None:
    """The line without its end; None for a blank line or a comment. UnicodeDecodeError when not UTF-8."""
    text = raw.decode("utf-8").rstrip("\r\n")
    stripped = text.lstrip()
    if not stripped or stripped.startswith("#"):
        return None
    return text


def line_statements(
    dump: DumpFile, quads: bool, on_error, start_line: int = 0, start_offset: int = 0
) -> Iterator[Statement]:
    """The statements of an N-Triples or N-Quads file after start_line; a bad line goes to
    on_error(line, message) and is skipped."""
    kind = "N-Quads" if quads else "N-Triples"
    for number, offset, raw in dump.lines(start_line, start_offset):
        try:
            text = decode_line(raw)
            if text is None:
                continue
            s, p, o = parse_line(text, quads)
        except UnicodeDecodeError as exc:
            on_error(number, f"not UTF-8: {exc}")
            continue
        except LineError as exc:
            on_error(number, f"invalid {kind}: {exc}")
            continue
        yield Statement(s, p, o, number, offset)


def is_line_based_turtle(dump: DumpFile) -> bool:
    """True when the first SNIFF_LINES statements of a Turtle file are N-Triples lines (no prefixes):
    DBpedia writes its .ttl dumps that way, and such a file is streamed."""
    seen = 0
    for _, _, raw in dump.lines():
        try:
            text = decode_line(raw)
        except UnicodeDecodeError:
            return False
        if text is None:
            continue
        if text.lstrip().lower().startswith(_DIRECTIVES):
            return False
        try:
            parse_line(text)
        except LineError:
            return False
        seen += 1
        if seen >= SNIFF_LINES:
            break
    return True


def turtle_statements(dump: DumpFile, max_bytes: int = MAX_TURTLE_BYTES) -> Iterator[Statement]:
    """The statements of a Turtle file parsed whole, grouped by subject. ValueError when it is larger
    than max_bytes uncompressed or is not Turtle."""
    data = dump.read_all(max_bytes)
    graph = rdflib.Graph()
    graph.parse(data=data, format="turtle", publicID=dump.path.resolve().as_uri())
    for subject in graph.subjects(unique=True):
        for p, o in graph.predicate_objects(subject):
            # rdflib types a subject as any node; an RDF subject is an IRI or a blank node (a str)
            yield Statement(from_rdflib(subject), str(p), from_rdflib(o), 0, 0)  # type: ignore[arg-type]
