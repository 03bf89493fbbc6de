"""What a read kept and what it left out, and why: filled while the triples stream out."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from retriever_service.rdf_terms import curie

log = logging.getLogger(__name__)


@dataclass
class LineError:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class ReadReport:
    """Bad lines (`skipped`, the first `max_kept` of them in `errors`); for RDF, the statements read,
    the facts made per relation, and the statements left out per reason and per predicate."""

    errors: list[LineError] = field(default_factory=list)
    max_kept: int = 100
    skipped: int = 0  # lines that could not be parsed
    statements: int = 0  # RDF statements parsed
    relations: Counter[str] = field(default_factory=Counter)  # triples made, per relation
    dropped: Counter[str] = field(default_factory=Counter)  # statements left out, per reason
    dropped_predicates: Counter[tuple[str, str]] = field(default_factory=Counter)  # (reason, predicate)
    names: int = 0  # name statements that named their subject (not facts)
    aliases: int = 0  # "also known as" triples made
    passages: int = 0  # text passages made
    node_triples: int = 0  # triples with an intermediate node at one end

    def add(self, path: Path | str, line: int, message: str) -> None:
        self.skipped += 1
        err = LineError(str(path), line, message)
        log.warning("skipped %s", err)
        if len(self.errors) < self.max_kept:
            self.errors.append(err)

    def drop(self, reason: str, predicate: str) -> None:
        self.dropped[reason] += 1
        self.dropped_predicates[reason, predicate] += 1

    @property
    def triples(self) -> int:
        return sum(self.relations.values())

    def as_dict(self, top: int = 50) -> dict:
        """A JSON-ready summary: the `top` relations, and per reason its `top` predicates."""
        by_reason: dict[str, dict[str, int]] = {}
        for (reason, predicate), n in self.dropped_predicates.most_common():
            group = by_reason.setdefault(reason, {})
            if len(group) < top:
                group[curie(predicate)] = n
        relations = dict(self.relations.most_common(top))
        if len(self.relations) > top:
            relations["(other relations)"] = self.triples - sum(relations.values())
        return {
            "statements": self.statements,
            "triples": self.triples,
            "relations": relations,
            "distinct_relations": len(self.relations),
            "names": self.names,
            "aliases": self.aliases,
            "passages": self.passages,
            "node_triples": self.node_triples,
            "dropped": dict(self.dropped.most_common()),
            "dropped_by_predicate": by_reason,
            "skipped_lines": self.skipped,
            "errors": [str(e) for e in self.errors[:20]],
        }
