"""The demo knowledge graph: facts about ~250 countries from the `countryinfo` package.

Codes are spelled out with pycountry (border 'DEU' -> 'Germany', language 'fr' -> 'French',
currency 'EUR' -> 'Euro') so that questions and answers read as people write them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pycountry
from countryinfo import all_countries

from shared.facts import Triple

if TYPE_CHECKING:
    from countryinfo.countryinfo import CountryInfoDict


def _language_name(code: str) -> str:
    lang = pycountry.languages.get(alpha_2=code) or pycountry.languages.get(alpha_3=code)
    return lang.name if lang else code


def _currency_name(code: str) -> str:
    cur = pycountry.currencies.get(alpha_3=code)
    return cur.name if cur else code


def _country_triples(info: CountryInfoDict, names_by_code: dict[str, str]) -> Iterator[Triple]:
    name = info["name"]
    scalar = {
        "capital": info.get("capital"),
        "region": info.get("region"),
        "subregion": info.get("subregion"),
        "demonym": info.get("demonym"),
        "population": info.get("population"),
        "area": f"{info['area']} square kilometres" if info.get("area") else None,
        "ISO code": (info.get("ISO") or {}).get("alpha2"),
    }
    for relation, value in scalar.items():
        if value not in (None, "", 0):
            yield Triple(name, relation, str(value))
    listed = {
        "borders": [names_by_code.get(code, code) for code in info.get("borders") or []],
        "currency": [_currency_name(code) for code in info.get("currencies") or []],
        "official language": [_language_name(code) for code in info.get("languages") or []],
        "calling code": [f"+{code}" for code in info.get("callingCodes") or [] if code],
        "top-level domain": info.get("tld") or [],
        "time zone": info.get("timezones") or [],
        # spelled-out alternative names only: two- and three-letter codes would link stray words
        "also known as": [alt for alt in info.get("altSpellings") or [] if len(alt) > 3 and alt != name],
    }
    for relation, values in listed.items():
        for value in dict.fromkeys(values):  # dedupe, keep order
            yield Triple(name, relation, value)


def demo_triples() -> Iterator[Triple]:
    infos = [country.info() for country in all_countries()]
    infos = [info for info in infos if info.get("name")]
    names_by_code = {(info.get("ISO") or {}).get("alpha3"): info["name"] for info in infos}
    seen: set[Triple] = set()
    for info in sorted(infos, key=lambda i: i["name"]):
        for triple in _country_triples(info, names_by_code):
            if triple not in seen:
                seen.add(triple)
                yield triple


def write_demo_kg(path: Path) -> int:
    """Write the demo KG as JSONL (one triple a line); returns the number of triples."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        for triple in demo_triples():
            fh.write(
                json.dumps(
                    {"subject": triple.subject, "relation": triple.relation, "object": triple.object},
                    ensure_ascii=False,
                )
                + "\n"
            )
            count += 1
    return count
