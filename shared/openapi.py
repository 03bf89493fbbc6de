"""The OpenAPI contract says what the endpoints enforce: the limits that come from settings (k,
batch sizes, text lengths) are written into an app's document, text that must not be blank says
so, and integers and booleans are taken as JSON Schema defines them (no "5" or true for an integer)."""

from __future__ import annotations

import copy
from typing import Annotated

from fastapi import FastAPI
from pydantic import BeforeValidator, Field
from pydantic.json_schema import JsonDict

# A character that is not whitespace as str.strip() sees it (the endpoints' "not blank" check),
# spelled out because regex dialects disagree on \s (ECMA's lacks \x1c-\x1f and \x85, has \ufeff).
NON_BLANK_PATTERN = r"[^\x09-\x0d\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
NON_BLANK: JsonDict = {"pattern": NON_BLANK_PATTERN}  # json_schema_extra of a str field the endpoint checks
NON_BLANK_ITEMS: JsonDict = {"items": {"type": "string", "pattern": NON_BLANK_PATTERN}}  # ... of a list[str] field


def _no_coercion(value: object) -> object:
    """pydantic's lax mode would take "5" and true for 5 and 1; JSON Schema's integer is a number
    (5.0 included, which pydantic still accepts)."""
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON integer")
    return value


Count = Annotated[int, Field(ge=1), BeforeValidator(_no_coercion)]  # k, max_new_tokens, num_beams
Hops = Annotated[int, Field(ge=1, le=3), BeforeValidator(_no_coercion)]  # the longest relation chain followed
Limits = dict[str, dict[str, dict]]  # schema name -> field -> JSON Schema keywords (nested for "items")


def document_limits(app: FastAPI, limits: Limits) -> None:
    """`limits` like {"SearchRequest": {"k": {"maximum": 100}, "queries": {"items": {"maxLength": 1000}}}};
    a nullable field gets the keywords on its non-null branch."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = copy.deepcopy(build())  # the schemas may share dicts with the models
            schemas = app.openapi_schema["components"]["schemas"]
            for model, fields in limits.items():
                for name, keywords in fields.items():
                    for branch in _branches(schemas[model]["properties"][name]):
                        _merge(branch, keywords)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema


def _branches(prop: dict) -> list[dict]:
    return [b for b in prop["anyOf"] if b.get("type") != "null"] if "anyOf" in prop else [prop]


def _merge(target: dict, keywords: dict) -> None:
    for key, value in keywords.items():
        if isinstance(value, dict):
            _merge(target.setdefault(key, {}), value)
        else:
            target[key] = value
