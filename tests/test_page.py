"""The page at `/` through the generator's FastAPI app: served from the package with the right
content types, nothing fetched from elsewhere, and out of the OpenAPI document (the browser test,
test_page_browser.py, runs it against real services)."""

import re

import pytest
from fastapi.testclient import TestClient

from generator_service.app import create_app
from generator_service.routers.page import ASSETS
from generator_service.settings import GeneratorSettings

# The one URL the page may contain: the SVG namespace name that createElementNS needs (never fetched).
SVG_NAMESPACE = "http://www.w3.org/2000/svg"
URL = re.compile(r"""(?:[a-z][a-z0-9+.-]*:)?//[^\s"'`)<>]+""", re.I)


@pytest.fixture(scope="module")
def client():
    # Without `with`, the lifespan (model loading) does not run: the page needs no model.
    return TestClient(create_app(GeneratorSettings()))


def test_page_and_assets_served_with_their_types(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    for name, media_type in ASSETS.items():
        r = client.get(f"/page/{name}")
        assert r.status_code == 200, name
        assert r.headers["content-type"] == media_type
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'none'" in r.headers["content-security-policy"]
    assert client.get("/page/index.html").content == page.content


def test_page_links_only_its_own_assets(client):
    html = client.get("/").text
    linked = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/page/app.js" in linked and "/page/style.css" in linked
    for target in linked:
        if target.startswith("/page/"):
            assert client.get(target).status_code == 200, target
        else:
            assert target in ("data:,", "/docs"), target


def test_no_external_urls(client):
    for name in ASSETS:
        text = client.get(f"/page/{name}").text.replace(SVG_NAMESPACE, "")
        assert URL.findall(text) == [], name
        assert "@import" not in text and "url(" not in text, name


def test_script_calls_the_public_api_only(client):
    script = client.get("/page/app.js").text
    assert re.findall(r'fetch\("([^"]+)"', script) == ["/v1/answer"]
    assert "innerHTML" not in script  # replies are shown as text, never parsed as HTML


def test_unknown_asset_is_a_404_in_the_error_shape(client):
    r = client.get("/page/secret.py")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert client.get("/page/..%2Fapp.py").status_code == 404


def test_page_is_not_in_the_openapi_document(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/page") for p in paths)


def test_with_an_api_key_the_page_is_refused_like_the_api():
    """The page is for key-less use: with a key set it answers 401 as /v1/* does (a browser cannot send
    a Bearer header with a page load), and health stays open."""
    client = TestClient(create_app(GeneratorSettings(api_key="k" * 16)))
    assert client.get("/").status_code == 401
    assert client.get("/page/app.js").status_code == 401
    assert client.get("/healthz").status_code == 200
