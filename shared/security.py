"""Optional API keys (Bearer, compared in constant time) and the start-up check of unsafe settings.

`/healthz`, `/readyz` and `/metrics` stay open so that orchestrators and Prometheus need no key;
`/docs` and `/openapi.json` stay open too (they hold no data). Secrets come from the environment
only (pydantic `SecretStr` settings), never from files in the repository.
"""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlparse

from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.errors import error_response

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/openapi.json"})
MIN_KEY_CHARS = 16


class UnsafeSettings(RuntimeError):
    """A setting that must not reach production; the service refuses to start."""


class ApiKeyMiddleware:
    """401 unless `Authorization: Bearer <key>` matches; a no-op when no key is configured."""

    def __init__(self, app: ASGIApp, api_key: SecretStr | None) -> None:
        self.app = app
        self.key = api_key.get_secret_value().encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.key is None or scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key):
            await self.app(scope, receive, send)
            return
        request_id = scope.get("state", {}).get("request_id")
        response = error_response(
            request_id,
            401,
            "unauthorized",
            "missing or wrong API key (Authorization: Bearer ...)",
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_deployment(
    environment: str, host: str, api_key: SecretStr | None, upstreams: dict[str, tuple[str | None, SecretStr | None]]
) -> None:
    """Outside `development`: refuse to listen beyond loopback without a key, a short key, or a key
    sent to an upstream (Qdrant, the retriever) over plain http on another host."""
    if environment == "development":
        return
    problems = []
    if api_key is None and not _is_loopback(host):
        problems.append(f"listening on {host} without an API key")
    if api_key is not None and len(api_key.get_secret_value()) < MIN_KEY_CHARS:
        problems.append(f"the API key is shorter than {MIN_KEY_CHARS} characters")
    for name, (url, key) in upstreams.items():
        parsed = urlparse(url or "")
        if key is not None and parsed.scheme == "http" and not _is_loopback(parsed.hostname or ""):
            problems.append(f"the {name} API key would travel in clear text to {url}")
    if problems:
        raise UnsafeSettings(
            f"unsafe settings for environment {environment!r}: "
            + "; ".join(problems)
            + " (set the environment to 'development' to allow them)"
        )
