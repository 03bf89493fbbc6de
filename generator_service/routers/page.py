"""The page at `/`: a question box, the answers with their probabilities, the evidence with prior,
likelihood and posterior bars, the linked entities and a drawing of each relation path.

Plain HTML, CSS and JavaScript served from the package (`generator_service/page/`), with nothing
fetched from elsewhere, so it works offline. It calls the public `POST /v1/answer` on the same
origin, and is left out of the OpenAPI document. With an API key set, `/` is refused like every
path but health, metrics and docs: the page is for key-less (local) use.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter, Response

from shared.errors import ServiceError

ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# Only this origin's script, style and API; inline SVG is built by the script, the favicon is a data: URL.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@cache
def _read(name: str) -> bytes:
    return (resources.files("generator_service") / "page" / name).read_bytes()


def _asset(name: str) -> Response:
    return Response(_read(name), media_type=ASSETS[name], headers=HEADERS)


@router.get("/")
def page() -> Response:
    return _asset("index.html")


@router.get("/page/{name}")
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise ServiceError(404, "not_found", f"no page asset named {name!r}")
    return _asset(name)
