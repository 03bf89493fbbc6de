"""What each RDF predicate is for (a name, an alias, long text, a fact, left out) and the literal
rules, as one settings object: the DBpedia defaults, changed by a TOML rules file or CLI flags.

A rules file (`kgrag-ingest load --rules rules.toml`, see docs/rdf.md):

    base = "dbpedia"             # or "none": no predicate rules, only the literal and name rules
    languages = ["en", "de"]     # a scalar or list key replaces the base's value
    long_text = "drop"
    [add]                        # appended to the base's lists
    drop_predicates = ["dbp:motto", "dbp:foo*"]
    [remove]                     # taken out of the base's lists
    drop_predicates = ["dbp:caption*"]
    [rename]                     # a relation's words in the fact sentence
    "dbo:birthPlace" = "born in"
    [prefixes]                   # extra CURIE prefixes for the names above
    ex = "http://example.org/"

Predicates are written as CURIEs (prefixes of rdf_terms.PREFIXES plus the file's own) or full
IRIs; drop_predicates entries are glob patterns ("dbp:image*") over the full IRI.
"""

from __future__ import annotations

import dataclasses
import enum
import fnmatch
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retriever_service.rdf_terms import PREFIXES, expand, predicate_name


class RulesError(ValueError):
    """A rules file or flag that cannot be used (unknown key, bad value)."""


class Role(enum.Enum):
    NAME = "name"  # names its subject (the best-ranked one), the others become aliases
    ALIAS = "alias"  # another name of its subject: an "also known as" fact for the entity linker
    REDIRECT = "redirect"  # the subject is another name of the object (dbo:wikiPageRedirects)
    SAME_AS = "same as"  # the object is the same thing: its readable name, if any, is an alias
    TEXT = "text"  # long text: passages (kind TEXT) or left out
    TYPE = "type"  # kept only for classes in keep_types
    URL = "url"  # the object is a web address, written without its scheme
    DROP = "drop"  # layout, images, wiki bookkeeping: left out
    FACT = "fact"


DBPEDIA_DROP = (
    # layout and images of the infobox, kept by DBpedia as raw properties
    "dbp:image*",
    "dbp:caption*",
    "dbp:align*",
    "dbp:div",
    "dbp:v",
    "dbp:wikt",
    "dbp:width*",
    "dbp:footer*",
    "dbp:alt",
    "dbp:alt?",
    "dbp:logo*",
    "dbp:signature*",
    "dbp:direction",
    "dbp:bgcolor",
    "dbp:totalWidth",
    "dbp:header*",
    "dbp:float",
    "dbp:quote",
    "dbp:source",
    "dbp:cs1Dates",
    "dbp:date",
    "dbp:wordnet_type",
    # sister-project links ({{Sister project links|b=...|n=...}})
    "dbp:b",
    "dbp:n",
    "dbp:q",
    "dbp:s",
    "dbp:d",
    "dbp:c",
    "dbp:voy",
    "dbp:species",
    "dbp:mw",
    "dbp:commons",
    # pictures and wiki bookkeeping
    "foaf:depiction",
    "foaf:isPrimaryTopicOf",
    "dbo:thumbnail",
    "dbo:wikiPage*",
    "dbp:wikiPageUsesTemplate",
    "prov:wasDerivedFrom",
    "owl:differentFrom",
    "rdfs:seeAlso",
    "dbo:soundRecording",
)
DEFAULT_NODE_PATTERN = r"^(?P<base>.+?)__(?:(?P<kind>[A-Za-z][A-Za-z0-9_]*?)__)?(?P<n>\d+)$"
_LISTS = (
    "languages",
    "name_predicates",
    "alias_predicates",
    "redirect_predicates",
    "same_as_predicates",
    "text_predicates",
    "type_predicates",
    "keep_types",
    "url_predicates",
    "drop_predicates",
    "prefer",
)
_PREDICATE_LISTS = (
    "name_predicates",
    "alias_predicates",
    "redirect_predicates",
    "same_as_predicates",
    "text_predicates",
    "type_predicates",
    "url_predicates",
)


@dataclass(frozen=True)
class RdfRules:
    """Predicates are full IRIs (CURIEs are expanded on load); drop_predicates are glob patterns over IRIs."""

    languages: tuple[str, ...] = ("en",)
    untagged: bool = True  # a literal without a language tag is kept
    max_literal_chars: int = 200  # a longer literal is long text, whatever its predicate
    long_text: str = "drop"  # "drop": left out; "passages": sentence passages of kind TEXT (docs/rdf.md: measured)
    passage_chars: int = 300
    labels: str = "prepass"  # "prepass": names read from all inputs first; "stream": from earlier lines only
    max_labels: int = 2_000_000  # most entities the name index holds (about 150 bytes each)
    max_block: int = 100_000  # most statements of one subject handled together
    name_predicates: tuple[str, ...] = ()
    alias_predicates: tuple[str, ...] = ()
    redirect_predicates: tuple[str, ...] = ()
    same_as_predicates: tuple[str, ...] = ()
    text_predicates: tuple[str, ...] = ()
    type_predicates: tuple[str, ...] = ()
    keep_types: tuple[str, ...] = ()  # namespaces whose classes an rdf:type fact may name
    url_predicates: tuple[str, ...] = ()
    drop_predicates: tuple[str, ...] = ()
    prefer: tuple[tuple[str, str], ...] = ()  # (preferred, other) namespaces: other's duplicate values dropped
    rename: tuple[tuple[str, str], ...] = ()  # predicate IRI -> relation words
    node_pattern: str = DEFAULT_NODE_PATTERN  # local names of intermediate nodes (groups base, kind, n)
    # Set by __post_init__, not arguments (left out of as_dict, ==, hash and repr): the caches and the pattern.
    _roles: dict[str, Role] = field(init=False, repr=False, compare=False)
    _relations: dict[str, str] = field(init=False, repr=False, compare=False)
    _node_re: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_roles", {})  # predicate -> Role, filled as predicates are met
        object.__setattr__(self, "_relations", {})  # predicate -> relation words
        if self.long_text not in ("passages", "drop"):
            raise RulesError(f"long_text is 'passages' or 'drop', not {self.long_text!r}")
        if self.labels not in ("prepass", "stream"):
            raise RulesError(f"labels is 'prepass' or 'stream', not {self.labels!r}")
        if min(self.max_literal_chars, self.passage_chars, self.max_labels, self.max_block) < 1:
            raise RulesError("max_literal_chars, passage_chars, max_labels and max_block must be positive")
        try:
            object.__setattr__(self, "_node_re", re.compile(self.node_pattern))
        except re.error as exc:
            raise RulesError(f"node_pattern: {exc}") from exc

    @property
    def node_re(self) -> re.Pattern[str]:
        return self._node_re

    def role(self, predicate: str) -> Role:
        """What a predicate (full IRI) is for; computed once per predicate."""
        role = self._roles.get(predicate)
        if role is None:
            role = self._roles[predicate] = self._find_role(predicate)
        return role

    def _find_role(self, predicate: str) -> Role:
        """A predicate named in a role's list has that role; else a drop pattern leaves it out; else a fact."""
        for role, names in (
            (Role.NAME, self.name_predicates),
            (Role.ALIAS, self.alias_predicates),
            (Role.REDIRECT, self.redirect_predicates),
            (Role.SAME_AS, self.same_as_predicates),
            (Role.TEXT, self.text_predicates),
            (Role.TYPE, self.type_predicates),
            (Role.URL, self.url_predicates),
        ):
            if predicate in names:
                return role
        if any(fnmatch.fnmatchcase(predicate, pattern) for pattern in self.drop_predicates):
            return Role.DROP
        return Role.FACT

    def name_rank(self, predicate: str) -> int:
        return self.name_predicates.index(predicate)

    def relation(self, predicate: str) -> str:
        """The relation's words in a fact: a rename, else the predicate's local name humanized."""
        words = self._relations.get(predicate)
        if words is None:
            words = self._relations[predicate] = dict(self.rename).get(predicate) or predicate_name(predicate)
        return words

    def keeps_type(self, cls: str) -> bool:
        return any(cls.startswith(namespace) for namespace in self.keep_types)

    def preferred_namespace(self, predicate: str) -> tuple[str, str] | None:
        """(preferred, other) when the predicate lies in a pair's `other` namespace."""
        return next((pair for pair in self.prefer if predicate.startswith(pair[1])), None)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}

    def fingerprint(self) -> str:
        """Changes whenever a rule that shapes the facts changes (a checkpoint is only resumed under the same)."""
        text = json.dumps(self.as_dict(), sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _iris(names, prefixes: dict[str, str] | None = None) -> tuple[str, ...]:
    return tuple(expand(n, prefixes) for n in names)


def dbpedia_rules(**changes) -> RdfRules:
    """The default rules, written for DBpedia dumps; harmless for other RDF (they name DBpedia and
    W3C vocabularies only)."""
    base = RdfRules(
        name_predicates=_iris(["rdfs:label", "skos:prefLabel", "foaf:name"]),
        alias_predicates=_iris(["skos:altLabel", "dbo:alias", "foaf:nick", "dbp:name", "dbp:otherNames"]),
        redirect_predicates=_iris(["dbo:wikiPageRedirects"]),
        same_as_predicates=_iris(["owl:sameAs"]),
        text_predicates=_iris(["dbo:abstract", "rdfs:comment"]),
        type_predicates=_iris(["rdf:type"]),
        keep_types=_iris(["dbo:"]),
        url_predicates=_iris(["foaf:homepage", "dbp:website", "dbp:url"]),
        drop_predicates=_iris(DBPEDIA_DROP),
        prefer=((PREFIXES["dbo"], PREFIXES["dbp"]),),
        rename=((expand("dct:subject"), "category"), (expand("skos:broader"), "broader category")),
    )
    return dataclasses.replace(base, **changes)


def plain_rules(**changes) -> RdfRules:
    """No predicate rules: only names (rdfs:label, skos:prefLabel, foaf:name) and the literal rules."""
    return dataclasses.replace(
        RdfRules(name_predicates=_iris(["rdfs:label", "skos:prefLabel", "foaf:name"])), **changes
    )


BASES = {"dbpedia": dbpedia_rules, "none": plain_rules}
_SCALARS = (
    "untagged",
    "max_literal_chars",
    "long_text",
    "passage_chars",
    "labels",
    "max_labels",
    "max_block",
    "node_pattern",
)


def load_rules(path: Path | None = None, **flags) -> RdfRules:
    """The rules of a TOML file (None: the DBpedia defaults), then the CLI's flags (None values ignored)."""
    spec: dict = {}
    if path is not None:
        try:
            spec = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise RulesError(f"{path}: {exc}") from exc
    rules = rules_from_spec(spec, where=str(path or "defaults"))
    changes: dict[str, Any] = {k: (tuple(v) if k == "languages" else v) for k, v in flags.items() if v is not None}
    return dataclasses.replace(rules, **changes) if changes else rules


def rules_from_spec(spec: dict, where: str = "rules") -> RdfRules:
    """Rules from a parsed rules file (see the module's docstring)."""
    known = {"base", "add", "remove", "rename", "prefixes", *_SCALARS, *_LISTS}
    if unknown := sorted(set(spec) - known):
        raise RulesError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    base = spec.get("base", "dbpedia")
    if base not in BASES:
        raise RulesError(f"{where}: base is one of {sorted(BASES)}, not {base!r}")
    prefixes = {**PREFIXES, **spec.get("prefixes", {})}
    rules = BASES[base]()
    values = {key: getattr(rules, key) for key in _LISTS}
    for key in _LISTS:
        if key in spec:
            values[key] = tuple(_normalise(key, spec[key], prefixes, where))
    for section, combine in (
        ("add", lambda old, new: old + tuple(x for x in new if x not in old)),
        ("remove", lambda old, new: tuple(x for x in old if x not in new)),
    ):
        for key, items in spec.get(section, {}).items():
            if key not in _LISTS:
                raise RulesError(f"{where}: [{section}] {key} is not a list setting; one of {list(_LISTS)}")
            values[key] = combine(values[key], tuple(_normalise(key, items, prefixes, where)))
    rename = dict(rules.rename) | {expand(k, prefixes): str(v) for k, v in spec.get("rename", {}).items()}
    scalars = {key: spec[key] for key in _SCALARS if key in spec}
    try:
        return dataclasses.replace(rules, **values, **scalars, rename=tuple(rename.items()))
    except TypeError as exc:
        raise RulesError(f"{where}: {exc}") from exc


def _normalise(key: str, items, prefixes: dict[str, str], where: str) -> list:
    if not isinstance(items, list):
        raise RulesError(f"{where}: {key} must be a list")
    if key == "languages":
        return [str(x).lower() for x in items]
    if key == "prefer":
        if not all(isinstance(x, list) and len(x) == 2 for x in items):
            raise RulesError(f"{where}: prefer is a list of [preferred, other] namespace pairs")
        return [tuple(_namespace(n, prefixes) for n in pair) for pair in items]
    if key == "keep_types":
        return [_namespace(n, prefixes) for n in items]
    return [expand(str(x), prefixes) for x in items]


def _namespace(name: str, prefixes: dict[str, str]) -> str:
    """'dbo' or 'dbo:' -> the namespace IRI; a full IRI is kept."""
    return prefixes.get(name.rstrip(":"), name)
