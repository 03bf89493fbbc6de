"""Pure rules for RDF terms: readable names for IRIs, literals rendered as the answer a reader
expects, intermediate nodes, categories and long text cut into passages. No I/O here.

Dates are written "28 October 1955" (day, English month name, year): the fact is read as an
English sentence ("Bill Gates birth date 28 October 1955") and that is the form of the answer.
Numbers are written plainly ("221000", "4.2e-07"), without thousands separators, which would fold
to two tokens.
"""

from __future__ import annotations

import math
import re
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from urllib.parse import unquote

from shared.facts import humanize

XSD = "http://www.w3.org/2001/XMLSchema#"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DBPEDIA_DATATYPE = "http://dbpedia.org/datatype/"

PREFIXES = {
    "rdf": RDF,
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "xsd": XSD,
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "dct": "http://purl.org/dc/terms/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "prov": "http://www.w3.org/ns/prov#",
    "schema": "http://schema.org/",
    "dbo": "http://dbpedia.org/ontology/",
    "dbp": "http://dbpedia.org/property/",
    "dbr": "http://dbpedia.org/resource/",
    "dbd": DBPEDIA_DATATYPE,
    "wikidata": "http://www.wikidata.org/entity/",
    "yago": "http://dbpedia.org/class/yago/",
    "umbel": "http://umbel.org/umbel/rc/",
    "dul": "http://www.ontologydesignpatterns.org/ont/dul/DUL.owl#",
}

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_INTEGER_TYPES = frozenset(
    XSD + t
    for t in (
        "integer",
        "int",
        "long",
        "short",
        "byte",
        "nonNegativeInteger",
        "positiveInteger",
        "nonPositiveInteger",
        "negativeInteger",
        "unsignedLong",
        "unsignedInt",
        "unsignedShort",
        "unsignedByte",
    )
)
_FLOAT_TYPES = frozenset(XSD + t for t in ("double", "float"))
_STRING_TYPES = frozenset({XSD + "string", RDF + "langString", XSD + "normalizedString", XSD + "token"})
# DBpedia's unit datatypes (http://dbpedia.org/datatype/...) as a reader writes them; others are humanized.
UNITS = {
    "usDollar": "US dollars",
    "euro": "euros",
    "poundSterling": "pounds sterling",
    "japaneseYen": "yen",
    "squareKilometre": "km²",
    "squareMetre": "m²",
    "kilometre": "km",
    "metre": "m",
    "centimetre": "cm",
    "millimetre": "mm",
    "kilogram": "kg",
    "gram": "g",
    "second": "s",
    "minute": "minutes",
    "hour": "hours",
    "day": "days",
    "kilometrePerHour": "km/h",
    "cubicMetre": "m³",
    "kelvin": "K",
    "degreeCelsius": "°C",
    "inhabitantsPerSquareKilometre": "inhabitants per km²",
    "megawatt": "MW",
    "kilowatt": "kW",
}
_DBPEDIA_RESOURCE = re.compile(r"^https?://(?:([a-z]{2,3}(?:-[a-z]+)?)\.)?dbpedia\.org/resource/(.+)$")
_DATE = re.compile(r"^(-?\d{4,})-(\d{2})-(\d{2})")
_TIME = re.compile(r"T(\d{2}):(\d{2})")
_YEAR_MONTH = re.compile(r"^(-?\d{4,})-(\d{2})(?:Z|[+-]\d{2}:\d{2})?$")
_MONTH_DAY = re.compile(r"^--(\d{2})-(\d{2})")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'“(\[]?[A-Z0-9])")
_IDENTIFIER = re.compile(r"^(?:[A-Za-z]?\d+|m\.[0-9a-z_]+|[0-9a-f-]{16,}|\W*)$")


def clean_text(text: str) -> str:
    """Whitespace runs (newlines, tabs) folded to single spaces, ends stripped."""
    return " ".join(text.split())


def curie(iri: str) -> str:
    """'http://dbpedia.org/ontology/birthPlace' -> 'dbo:birthPlace'; an IRI under no known prefix is returned as is."""
    for prefix, namespace in PREFIXES.items():
        if iri.startswith(namespace) and len(iri) > len(namespace):
            return f"{prefix}:{iri[len(namespace) :]}"
    return iri


def expand(name: str, prefixes: dict[str, str] | None = None) -> str:
    """'dbo:birthPlace' -> the full IRI; a name that is no known CURIE (a full IRI, a glob) is returned as is."""
    prefix, sep, rest = name.partition(":")
    namespace = (prefixes or PREFIXES).get(prefix) if sep and not rest.startswith("//") else None
    return namespace + rest if namespace else name


def local_name(iri: str) -> str:
    """The part of an IRI that names the thing: after a DBpedia resource namespace (so 'AC/DC' stays
    whole), else after the last '#' or '/'."""
    match = _DBPEDIA_RESOURCE.match(iri)
    if match:
        return match.group(2)
    text = iri.rstrip("/#")
    return text.rsplit("#", 1)[-1] if "#" in text else text.rsplit("/", 1)[-1]


def dbpedia_language(iri: str) -> str | None:
    """The language of a DBpedia chapter's resource ('fr' for fr.dbpedia.org), 'en' for dbpedia.org, else None."""
    match = _DBPEDIA_RESOURCE.match(iri)
    if not match:
        return None
    return match.group(1) or "en"


@lru_cache(maxsize=200_000)
def resource_name(iri: str) -> str:
    """A readable name for an entity IRI: 'dbr:Bill_Gates' -> 'Bill Gates', percent escapes decoded,
    'Category:American_billionaires' -> 'American billionaires'. Case is kept (no camelCase split:
    'eBay' stays 'eBay')."""
    local = unquote(local_name(iri))
    if local.startswith("Category:"):
        local = local[len("Category:") :]
    return clean_text(local.replace("_", " ")) or iri


def predicate_name(iri: str) -> str:
    """A relation's words: 'dbo:birthPlace' -> 'birth place'."""
    tail = unquote(local_name(iri))
    return humanize(tail) or iri


def class_name(iri: str) -> str:
    """A class as words: 'dbo:SoccerPlayer' -> 'Soccer player', 'dbo:Company' -> 'Company'."""
    words = _CAMEL.sub(" ", unquote(local_name(iri))).replace("_", " ").split()
    return " ".join([words[0], *(w.lower() if w[1:].islower() else w for w in words[1:])]) if words else iri


def url_name(iri: str) -> str:
    """A web address as a reader writes it: 'https://www.microsoft.com/' -> 'www.microsoft.com'."""
    return re.sub(r"^https?://", "", iri).rstrip("/") or iri


def node_name(iri: str, pattern: re.Pattern[str]) -> str | None:
    """The readable name of an intermediate node ('Melinda_Gates__PersonFunction__1' ->
    'Melinda Gates, person function 1'), or None when the IRI is not one. `pattern` matches the
    local name with groups base, kind (optional) and n."""
    match = pattern.match(unquote(local_name(iri)))
    if not match:
        return None
    base = clean_text(match.group("base").replace("_", " "))
    kind = match.groupdict().get("kind")
    words = " ".join(w.lower() for w in _CAMEL.sub(" ", kind).replace("_", " ").split()) if kind else "node"
    return f"{base}, {words} {match.group('n')}"


def looks_like_identifier(name: str) -> bool:
    """'Q2283', 'm.04sv4', '12345', a hash: names that no one would ask by."""
    return bool(_IDENTIFIER.match(name.strip()))


def language_ok(language: str | None, languages: tuple[str, ...], untagged: bool = True) -> bool:
    """A literal's language tag is kept when its base language ('en' of 'en-GB') is configured."""
    if not language:
        return untagged
    return language.lower().split("-", 1)[0] in languages


def language_rank(language: str | None, languages: tuple[str, ...]) -> int:
    """0 for the first configured language, ...; untagged after all of them."""
    if not language:
        return len(languages)
    base = language.lower().split("-", 1)[0]
    return languages.index(base) if base in languages else len(languages) + 1


def render_literal(lexical: str, datatype: str | None) -> str:
    """The text a reader expects for a literal of this datatype; the lexical form (whitespace
    cleaned) when the datatype is unknown or the value does not parse."""
    text = clean_text(lexical)
    if not datatype or datatype in _STRING_TYPES:
        return text
    try:
        if datatype.startswith(XSD):
            rendered = _render_xsd(text, datatype[len(XSD) :])
        elif datatype.startswith(DBPEDIA_DATATYPE):
            rendered = _render_unit(text, datatype[len(DBPEDIA_DATATYPE) :])
        else:
            rendered = None
    except (ValueError, InvalidOperation, OverflowError):
        rendered = None
    return rendered or text


def _render_xsd(text: str, kind: str) -> str | None:
    if XSD + kind in _INTEGER_TYPES:
        return str(int(text))
    if XSD + kind in _FLOAT_TYPES:
        return render_number(float(text))
    if kind == "decimal":
        return render_decimal(Decimal(text))
    if kind in ("date", "dateTime", "dateTimeStamp"):
        return render_date(text)
    if kind == "gYear":
        return render_year(int(re.sub(r"(?:Z|[+-]\d{2}:\d{2})$", "", text)))
    if kind == "gYearMonth":
        match = _YEAR_MONTH.match(text)
        return f"{_month(match.group(2))} {render_year(int(match.group(1)))}" if match else None
    if kind == "gMonthDay":
        match = _MONTH_DAY.match(text)
        return f"{int(match.group(2))} {_month(match.group(1))}" if match else None
    if kind == "boolean":
        return {"1": "true", "0": "false"}.get(text, text.lower())
    return None


def _render_unit(text: str, unit: str) -> str:
    value = float(text)
    return f"{render_number(value)} {UNITS.get(unit) or humanize(unit)}"


def _month(number: str) -> str:
    month = int(number)
    if not 1 <= month <= 12:
        raise ValueError(f"month {number}")
    return MONTHS[month - 1]


def render_year(year: int) -> str:
    """1955 -> '1955', -44 -> '44 BC' (the lexical year, as DBpedia writes it)."""
    return f"{-year} BC" if year < 0 else str(year)


def render_date(text: str) -> str | None:
    """'1955-10-28' (an optional time zone, or a dateTime) -> '28 October 1955'; a time other than
    midnight is kept ('4 April 1975 14:30'). None when it is not a valid date."""
    match = _DATE.match(text)
    if not match:
        return None
    year, month, day = int(match.group(1)), int(match.group(2)), int(match.group(3))
    date(year if 1 <= year <= 9999 else 2000, month, day)  # raises ValueError for 30 February and friends
    rendered = f"{day} {MONTHS[month - 1]} {render_year(year)}"
    time = _TIME.search(text)
    if time and time.group(0) != "T00:00":
        rendered += f" {time.group(1)}:{time.group(2)}"
    return rendered


def render_number(value: float) -> str:
    """Shortest text that reads back as the same number: 6.4191E11 -> '641910000000', 187.40 -> '187.4',
    4.2e-07 -> '4.2e-07' (Python's repr, scientific below 1e-4 and from 1e16)."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError("not a finite number")
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def render_decimal(value: Decimal) -> str:
    """'12.50' -> '12.5', '3.0' -> '3'."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def split_sentences(text: str) -> list[str]:
    """Sentences: cut after '.', '!' or '?' followed by a space and a capital, a digit or a quote."""
    return [s for s in _SENTENCE_END.split(clean_text(text)) if s]


def pack_passages(sentences: list[str], max_chars: int) -> list[str]:
    """Sentences packed in order into passages of at most max_chars; a longer sentence is cut at
    word boundaries."""
    passages: list[str] = []
    current = ""
    for sentence in sentences:
        for piece in _cut(sentence, max_chars):
            if current and len(current) + 1 + len(piece) > max_chars:
                passages.append(current)
                current = piece
            else:
                current = f"{current} {piece}" if current else piece
    if current:
        passages.append(current)
    return passages


def split_passages(text: str, max_chars: int) -> list[str]:
    """A long text as passages of whole sentences, each at most max_chars."""
    return pack_passages(split_sentences(text), max_chars)


def _cut(sentence: str, max_chars: int) -> list[str]:
    pieces = []
    while len(sentence) > max_chars:
        at = sentence.rfind(" ", 0, max_chars + 1)
        at = at if at > 0 else max_chars
        pieces.append(sentence[:at].strip())
        sentence = sentence[at:].strip()
    return [*pieces, sentence] if sentence else pieces
