"""RDF statements to triples, one subject at a time, under RdfRules.

A block is the run of consecutive statements with the same subject (DBpedia's dumps and its
per-entity extracts are written that way; a block longer than rules.max_block is cut). Within a
block order does not matter: the subject's label may come after its facts, and a dbp: value
that repeats a dbo: value of the same subject is left out wherever it stands.

Names: the best name statement (rules.name_predicates in rank order, then the configured
languages in order, untagged last) names its entity. NameIndex holds them for every IRI that has
one, so that the objects of other subjects' facts get the same name; it keeps only the rank for
a name equal to the one the IRI gives (DBpedia's labels are), the text otherwise. With the
prepass (the default) it is filled from all inputs before the first fact is made, so a label may
come anywhere; without it ("stream"), from the lines read so far and the subject's own block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from retriever_service.rdf_parsing import Blank, Lit, Statement
from retriever_service.rdf_rules import RdfRules, Role
from retriever_service.rdf_terms import (
    PREFIXES,
    class_name,
    clean_text,
    dbpedia_language,
    language_ok,
    language_rank,
    looks_like_identifier,
    node_name,
    pack_passages,
    render_literal,
    resource_name,
    split_sentences,
    url_name,
)
from retriever_service.read_report import ReadReport
from shared.facts import ENTITY, NODE, TEXT, Triple
from shared.names import fold

ALIAS = "also known as"  # one of retriever_service.entity_linking.ALIAS_RELATIONS

EMPTY = "empty literal"
LANGUAGE = "other language"
PREDICATE = "predicate rule"
TYPE = "type outside kept namespaces"
NODE_TYPE = "type of an intermediate node"
LONG_TEXT = "long text"
REPEATED_SENTENCE = "sentence already kept for the subject"
SAME_NAME = "alias equal to the name"
IDENTIFIER = "sameAs to an identifier"


def default_name(term: str, rules: RdfRules) -> tuple[str, str]:
    """(name, kind) of a subject or object (an IRI or a Blank) from its IRI alone."""
    if isinstance(term, Blank):
        return f"blank node {term}", NODE
    node = node_name(term, rules.node_re)
    if node is not None:
        return node, NODE
    return resource_name(term), ENTITY


class NameIndex:
    """IRI -> its best name so far: a rank (int) when the name is the one its IRI gives, else (rank, name).
    Holds at most `limit` IRIs; the ones past it keep the names their IRIs give (counted in `overflow`)."""

    def __init__(self, rules: RdfRules) -> None:
        self.rules = rules
        self._best: dict[str, int | tuple[int, str]] = {}
        self.overflow = 0

    def __len__(self) -> int:
        return len(self._best)

    def offer(self, term: str, rank: int, name: str) -> None:
        iri = _key(term)
        current = self._best.get(iri)
        if current is None and len(self._best) >= self.rules.max_labels:
            self.overflow += 1
            return
        if current is None or rank < (current if isinstance(current, int) else current[0]):
            self._best[iri] = rank if name == default_name(term, self.rules)[0] else (rank, name)

    def name(self, term: str) -> str | None:
        best = self._best.get(_key(term))
        return best[1] if isinstance(best, tuple) else None

    def named(self, term: str) -> tuple[str, str]:
        """(name, kind): the indexed name, else the IRI's; an intermediate node stays a node."""
        name, kind = default_name(term, self.rules)
        return self.name(term) or name, kind


def _key(term: str) -> str:
    """An IRI as it is; a blank node's label marked, so that it cannot equal an IRI."""
    return f"_:{term}" if isinstance(term, Blank) else term


def name_candidate(st: Statement, rules: RdfRules) -> tuple[int, str] | None:
    """(rank, name) when the statement can name its subject: a name predicate with a non-empty literal
    in a kept language. Lower ranks win."""
    if rules.role(st.p) is not Role.NAME or not isinstance(st.o, Lit):
        return None
    if not language_ok(st.o.language, rules.languages, rules.untagged):
        return None
    text = clean_text(st.o.text)
    if not text:
        return None
    per_predicate = len(rules.languages) + 2
    return rules.name_rank(st.p) * per_predicate + language_rank(st.o.language, rules.languages), text


@dataclass
class _Subject:
    """What the handlers of one block share."""

    name: str
    kind: str
    triples: list[Triple] = field(default_factory=list)
    facts: list[tuple[Triple, str]] = field(default_factory=list)  # (triple, predicate) of FACT statements
    sentences: set[str] = field(default_factory=set)  # casefolded sentences of its texts kept so far


class RdfMapper:
    """Blocks of statements to triples; what is left out is counted in the report."""

    def __init__(self, rules: RdfRules, report: ReadReport, names: NameIndex, names_complete: bool) -> None:
        self.rules = rules
        self.report = report
        self.names = names
        self.names_complete = names_complete  # filled by a prepass: blocks need not offer their names
        self._handlers: dict[Role, Callable[[Statement, _Subject], None]] = {
            Role.NAME: self._name,
            Role.ALIAS: self._alias,
            Role.REDIRECT: self._redirect,
            Role.SAME_AS: self._same_as,
            Role.TEXT: self._text,
            Role.TYPE: self._type,
            Role.URL: self._url,
            Role.DROP: self._drop,
            Role.FACT: self._fact,
        }

    def blocks(self, statements: Iterable[Statement]) -> Iterator[tuple[list[Statement], Statement | None]]:
        """(block, the first statement after it or None at the end)."""
        block: list[Statement] = []
        for st in statements:
            self.report.statements += 1
            if block and (st.s != block[0].s or len(block) >= self.rules.max_block):
                yield block, st
                block = []
            block.append(st)
        if block:
            yield block, None

    def triples(self, block: list[Statement]) -> list[Triple]:
        """The triples of one subject's block, in statement order (a dbp: duplicate of a dbo: value left out)."""
        if not self.names_complete:
            for st in block:
                if (candidate := name_candidate(st, self.rules)) is not None:
                    self.names.offer(st.s, *candidate)
        subject = _Subject(*self.names.named(block[0].s))
        for st in block:
            self._handlers[self.rules.role(st.p)](st, subject)
        duplicates = self._duplicates(subject.facts)
        kept = list(dict.fromkeys(t for t in subject.triples if id(t) not in duplicates))  # the same triple once
        for t in kept:
            self.report.relations[t.relation] += 1
            self.report.node_triples += NODE in (t.subject_kind, t.object_kind)
            self.report.passages += t.object_kind == TEXT
            self.report.aliases += t.relation == ALIAS
        return kept

    def _duplicates(self, facts: list[tuple[Triple, str]]) -> set[int]:
        """ids of the facts whose predicate is in a `prefer` pair's other namespace and whose value a
        fact of the preferred namespace has too."""
        out: set[int] = set()
        for preferred, other in self.rules.prefer:
            values = {fold(t.object) for t, p in facts if p.startswith(preferred)}
            for t, p in facts:
                if p.startswith(other) and fold(t.object) in values:
                    out.add(id(t))
                    self.report.drop(f"{_prefix(other)} duplicate of {_prefix(preferred)}", p)
        return out

    def _literal(self, st: Statement) -> str | None:
        """The rendered text of a literal object, or None (counted) when it is empty or in another language."""
        o = st.o
        assert isinstance(o, Lit)
        if not o.text.strip():
            self.report.drop(EMPTY, st.p)
            return None
        if not language_ok(o.language, self.rules.languages, self.rules.untagged):
            self.report.drop(LANGUAGE, st.p)
            return None
        return render_literal(o.text, o.datatype)

    def _add(self, subject: _Subject, relation: str, obj: str, object_kind: str = ENTITY) -> Triple:
        triple = Triple(subject.name, relation, obj, subject.kind, object_kind)
        subject.triples.append(triple)
        return triple

    def _alias_of(self, subject: _Subject, alias: str, st: Statement) -> None:
        if fold(alias) == fold(subject.name) or not fold(alias):
            self.report.drop(SAME_NAME, st.p)
            return
        self._add(subject, ALIAS, alias)

    def _name(self, st: Statement, subject: _Subject) -> None:
        if not isinstance(st.o, Lit):
            self._alias(st, subject)
            return
        text = self._literal(st)
        if text is None:
            return
        if fold(text) == fold(subject.name):
            self.report.names += 1
        else:  # a second name (foaf:name beside rdfs:label): an alias for linking
            self._alias_of(subject, text, st)

    def _alias(self, st: Statement, subject: _Subject) -> None:
        if isinstance(st.o, Lit):
            text = self._literal(st)
        else:
            text = self.names.named(st.o)[0]
        if text is not None:
            self._alias_of(subject, text, st)

    def _redirect(self, st: Statement, subject: _Subject) -> None:
        """dbr:Gates_Foundation dbo:wikiPageRedirects dbr:Bill_&_Melinda_Gates_Foundation: the
        subject's name is an alias of the object."""
        if isinstance(st.o, Lit):
            self._fact(st, subject)
            return
        target, kind = self.names.named(st.o)
        self._alias_of(_Subject(target, kind, subject.triples), subject.name, st)

    def _same_as(self, st: Statement, subject: _Subject) -> None:
        if isinstance(st.o, Lit):
            self._alias(st, subject)
            return
        language = dbpedia_language(st.o)
        if language is not None and language not in self.rules.languages:
            self.report.drop(LANGUAGE, st.p)
            return
        name = resource_name(st.o) if not isinstance(st.o, Blank) else ""
        if looks_like_identifier(name):
            self.report.drop(IDENTIFIER, st.p)
            return
        self._alias_of(subject, name, st)

    def _text(self, st: Statement, subject: _Subject) -> None:
        if not isinstance(st.o, Lit):
            self._fact(st, subject)
            return
        text = self._literal(st)
        if text is not None:
            self._long_text(st, subject, text)

    def _long_text(self, st: Statement, subject: _Subject, text: str) -> None:
        """Passages of kind TEXT (sentences the subject's other texts already gave left out), or dropped."""
        if self.rules.long_text == "drop":
            self.report.drop(LONG_TEXT, st.p)
            return
        fresh = []
        for sentence in split_sentences(text):
            key = sentence.casefold()
            if key not in subject.sentences:
                subject.sentences.add(key)
                fresh.append(sentence)
        if not fresh:
            self.report.drop(REPEATED_SENTENCE, st.p)
            return
        relation = self.rules.relation(st.p)
        for passage in pack_passages(fresh, self.rules.passage_chars):
            self._add(subject, relation, passage, TEXT)

    def _type(self, st: Statement, subject: _Subject) -> None:
        if subject.kind == NODE:
            self.report.drop(NODE_TYPE, st.p)
        elif not isinstance(st.o, (Lit, Blank)) and self.rules.keeps_type(st.o):
            self._add(subject, self.rules.relation(st.p), class_name(st.o))
        else:
            self.report.drop(TYPE, st.p)

    def _url(self, st: Statement, subject: _Subject) -> None:
        if not isinstance(st.o, (Lit, Blank)):
            subject.facts.append((self._add(subject, self.rules.relation(st.p), url_name(st.o)), st.p))
        else:
            self._fact(st, subject)

    def _drop(self, st: Statement, subject: _Subject) -> None:
        self.report.drop(PREDICATE, st.p)

    def _fact(self, st: Statement, subject: _Subject) -> None:
        if isinstance(st.o, Lit):
            text = self._literal(st)
            if text is None:
                return
            if len(text) > self.rules.max_literal_chars:
                self._long_text(st, subject, text)
                return
            obj, kind = text, ENTITY
        else:
            obj, kind = self.names.named(st.o)
        subject.facts.append((self._add(subject, self.rules.relation(st.p), obj, kind), st.p))


def _prefix(namespace: str) -> str:
    return next((prefix for prefix, ns in PREFIXES.items() if ns == namespace), namespace)
