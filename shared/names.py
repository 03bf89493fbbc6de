"""Folding of names and answers for matching: case, accents and punctuation do not count."""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[^\W_]+")


def fold_tokens(text: str) -> list[str]:
    """'Amélie (2001)!' -> ['amelie', '2001']."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _WORD.findall(stripped.casefold())


def fold(text: str) -> str:
    """One string key: the folded tokens joined by single spaces."""
    return " ".join(fold_tokens(text))
