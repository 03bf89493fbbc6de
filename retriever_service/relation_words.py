"""Other words for a KG's relations, which the questions generated for the chain prior use beside each
relation's own label (`question_generation.py`).

A relation is asked about in words its label may not hold: `borders` as "neighbours", `region` as
"continent", `demonym` as "nationality". A prior fitted on questions written from the labels alone
reads such a question as some other relation, or as one the graph lacks. Whoever knows the KG can
name those words, and a KG's schema often does: an RDF ontology gives its properties `rdfs:label`,
`skos:prefLabel` and `skos:altLabel` (DBpedia's ontology file, a Wikidata property's aliases).

Two sources, read by `read_relation_words`:

- JSON, an object from each relation (as the store names it) to its other words:
  `{"borders": ["neighbours", "bordering countries"], "region": ["continent"]}`. A relation the KG
  does not have is an error there (most likely a typo).
- RDF (N-Triples, N-Quads, Turtle; compressed or not): the name and alias statements whose subject is
  a predicate, named as a load names that predicate (the same rules), in the rules' languages.
  An ontology describes far more properties than one KG uses: the others are left out silently.

Words are phrases to put where the label goes ("the {word} of France"), so nouns read best.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from retriever_service.dumps import DumpFile
from retriever_service.rdf_parsing import Lit, Statement, line_statements, turtle_statements
from retriever_service.rdf_rules import RdfRules, dbpedia_rules
from retriever_service.rdf_terms import clean_text, language_ok
from retriever_service.readers import RDF_FORMATS, ReaderError, describe_input
from shared.facts import relation_label
from shared.names import fold

MAX_WORDS = 20  # per relation: a long list of words would crowd the label out of the generated questions
MAX_CHARS = 80  # per word


class RelationWordsError(ValueError):
    """A relation words file that cannot be used, with what is wrong in it."""


@dataclass(frozen=True)
class RelationWords:
    """Each relation's other words (its label not among them); a relation without any is left out. strict: words
    for a relation the KG lacks are an error (a file written for the KG), else left out (an ontology's)."""

    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    strict: bool = True

    def of(self, relation: str) -> tuple[str, ...]:
        """The relation's label, then its other words."""
        return (relation_label(relation), *self.extra.get(relation, ()))

    def all_words(self) -> Iterator[str]:
        for relation, words in self.extra.items():
            yield relation_label(relation)
            yield from words

    def __bool__(self) -> bool:
        return bool(self.extra)

    def restricted(self, relations: Iterable[str]) -> RelationWords:
        """The words of the given relations only; when strict, a relation outside them is a RelationWordsError."""
        known = set(relations)
        unknown = sorted(set(self.extra) - known)
        if self.strict and unknown:
            raise RelationWordsError(
                f"relation words given for relations the KG does not have: {unknown}; its relations: {sorted(known)}"
            )
        return RelationWords({r: w for r, w in self.extra.items() if r in known}, self.strict)

    def to_json(self) -> str:
        return json.dumps({r: list(w) for r, w in sorted(self.extra.items())}, ensure_ascii=False, indent=2) + "\n"

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)
        return path


def relation_words(pairs: Iterable[tuple[str, str]], strict: bool = True) -> RelationWords:
    """(relation, word) pairs as RelationWords: words cleaned, each once per relation (folded), not the label,
    at most MAX_WORDS a relation."""
    out: dict[str, list[str]] = {}
    seen: dict[str, set[str]] = {}
    for relation, word in pairs:
        text = clean_text(word)
        key = fold(text)
        known = seen.setdefault(relation, {fold(relation_label(relation))})
        if not key or key in known or len(out.get(relation, ())) >= MAX_WORDS:
            continue
        known.add(key)
        out.setdefault(relation, []).append(text)
    return RelationWords({r: tuple(w) for r, w in out.items()}, strict)


def read_relation_words(path: Path, rules: RdfRules | None = None) -> RelationWords:
    """The words of a JSON or RDF file (module docstring). RelationWordsError when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise RelationWordsError(f"{path}: no such file")
    if path.suffix == ".json":
        return relation_words(_json_pairs(path))
    try:
        item = describe_input(path)
    except ReaderError as exc:
        raise RelationWordsError(str(exc)) from exc
    if item.fmt not in RDF_FORMATS:
        raise RelationWordsError(f"{path}: relation words come from a .json file or an RDF file, not {item.fmt}")
    return relation_words(_rdf_pairs(path, item.fmt, item.streamed, rules or dbpedia_rules()), strict=False)


def _json_pairs(path: Path) -> list[tuple[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RelationWordsError(f"{path}: not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise RelationWordsError(f"{path}: expected an object from relation to words, got {type(data).__name__}")
    pairs = []
    for relation, words in data.items():
        words = [words] if isinstance(words, str) else words
        if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
            raise RelationWordsError(f"{path}: the words of {relation!r} must be a list of non-empty strings")
        if any(len(w) > MAX_CHARS for w in words):
            raise RelationWordsError(f"{path}: a word of {relation!r} is over {MAX_CHARS} characters")
        pairs += [(relation, w) for w in words]
    return pairs


def _rdf_pairs(path: Path, fmt: str, streamed: bool, rules: RdfRules) -> Iterator[tuple[str, str]]:
    """(relation, word) from the name and alias statements about predicates, in the rules' languages."""
    naming = {*rules.name_predicates, *rules.alias_predicates}
    for st in _statements(path, fmt, streamed):
        if st.p in naming and isinstance(st.o, Lit) and language_ok(st.o.language, rules.languages):
            yield rules.relation(st.s), st.o.text


def _statements(path: Path, fmt: str, streamed: bool) -> Iterator[Statement]:
    def on_error(line: int, message: str) -> None:
        raise RelationWordsError(f"{path}:{line}: {message}")

    with DumpFile(path) as dump:
        if streamed:
            yield from line_statements(dump, fmt == "nq", on_error)
            return
        try:
            yield from turtle_statements(dump)
        except RelationWordsError:
            raise
        except Exception as exc:  # rdflib's parser raises many types; the whole file is unusable
            raise RelationWordsError(f"{path}: invalid Turtle: {exc}") from exc
