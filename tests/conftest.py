from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.cache import cache

from tests.browser import Browser
from tests.provider import EmbeddedProvider

POSTGRES = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
requires_postgres = pytest.mark.skipif(not POSTGRES, reason="needs PostgreSQL (set DATABASE_URL)")


@pytest.fixture(scope="session")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedProvider]:
    """The embedded django-oauth-toolkit provider, as a real HTTP server (gunicorn) with its own database.

    Loopback redirect URIs match on any port (RFC 8252), so one registration serves every live server."""
    p = EmbeddedProvider(
        tmp_path_factory.mktemp("idp"),
        redirect_uris=["http://127.0.0.1:9/oauth/callback/"],
        post_logout_redirect_uris=["http://127.0.0.1:9/"],
    )
    p.start()
    yield p
    p.stop()


@dataclass
class Site:
    url: str
    provider: EmbeddedProvider

    def browser(self, language: str = "en") -> Browser:
        return Browser(language)

    def signed_in_browser(self, next_url: str | None = None, language: str = "en") -> Browser:
        b = Browser(language)
        resp = b.sign_in(self.url, self.provider.username, self.provider.password, next_url)
        assert resp.status_code == 200, resp.text[:2000]
        assert resp.url.startswith(self.url), resp.url
        return b


def client_settings(provider: EmbeddedProvider, **overrides: object) -> dict[str, object]:
    return {
        "ISSUER": provider.issuer,
        "CLIENT_ID": provider.client_id,
        "CLIENT_SECRET": provider.client_secret,
        "REVOCATION_ENDPOINT": f"{provider.base_url}/o/revoke_token/",
        # Tests that need the retry loop set these; the defaults keep failing tests fast.
        "HTTP_TIMEOUT": (2.0, 5.0),
        **overrides,
    }


@pytest.fixture
def site(live_server, provider: EmbeddedProvider, settings) -> Site:  # type: ignore[no-untyped-def]
    """The demo site in a live server, configured as a client of the embedded provider."""
    settings.OAUTH_CLIENT = client_settings(provider)
    cache.clear()
    return Site(url=live_server.url, provider=provider)


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
