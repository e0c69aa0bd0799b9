from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.cache import cache

from tests.browser import Browser
from tests.hostile import HostileProvider
from tests.node_provider import NodeProvider
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
    provider: EmbeddedProvider | NodeProvider
    # The site's own client at the provider; by default the provider's demo client.
    client_id: str = ""
    client_secret: str = ""

    def __post_init__(self) -> None:
        self.client_id = self.client_id or self.provider.client_id
        self.client_secret = self.client_secret or self.provider.client_secret

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


@dataclass
class HostileSite:
    url: str
    op: HostileProvider

    def sign_in(self, browser: Browser | None = None, next_url: str | None = None):  # type: ignore[no-untyped-def]
        """Site → /oauth/login/ → the hostile provider's authorize → callback, following every redirect.
        The hostile provider needs no password or consent: it answers /authorize at once."""
        browser = browser or Browser()
        params = {"next": next_url} if next_url else None
        return browser.get(f"{self.url}/oauth/login/", params=params)


@pytest.fixture
def hostile() -> Iterator[HostileProvider]:
    """A provider that behaves until told to misbehave (tests/hostile.py), fresh keys for every test."""
    with HostileProvider() as op:
        yield op


@pytest.fixture
def hostile_site(live_server, hostile: HostileProvider, settings) -> HostileSite:  # type: ignore[no-untyped-def]
    """The demo site in a live server, configured as a client of the hostile provider."""
    settings.OAUTH_CLIENT = hostile.client_settings()
    cache.clear()
    return HostileSite(url=live_server.url, op=hostile)


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def run_fresh_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a new interpreter at the repository root (what an import really loads, in isolation)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo_root(), timeout=60)


# --- node oidc-provider: the independent, certified provider (tests/op, tests/node_provider.py) -----------------


@pytest.fixture(scope="session")
def node_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProvider]:
    """node `oidc-provider` 9 as a real HTTP server, strict like a production provider, 12-second tokens."""
    reason = NodeProvider.unavailable_reason()
    if reason:
        pytest.skip(f"node oidc-provider cannot run here: {reason}")
    p = NodeProvider(tmp_path_factory.mktemp("node-op"))
    p.start()
    yield p
    p.stop()


def node_client_settings(
    provider: NodeProvider, client_id: str, client_secret: str, **overrides: object
) -> dict[str, object]:
    """OAUTH_CLIENT for a site registered at node oidc-provider, as a deployment would configure it."""
    return {
        "ISSUER": provider.issuer,
        "CLIENT_ID": client_id,
        "CLIENT_SECRET": client_secret,
        # oidc-provider keeps offline_access (so issues a refresh token) only when prompt=consent is asked.
        "EXTRA_AUTH_PARAMS": {"prompt": "consent"},
        # oidc-provider 9 serves end_session_endpoint on GET only (POST needs enableHttpPostMethods, which needs
        # SameSite=None cookies).
        "END_SESSION_METHOD": "GET",
        "HTTP_TIMEOUT": (2.0, 5.0),
        **overrides,
    }


def register_node_client(
    provider: NodeProvider, site_url: str, name: str = "", *, secret: bool = True, **metadata: object
) -> tuple[str, str]:
    """A fresh client for the site at `site_url` (exact redirect, post-logout and back-channel URIs); `name`: the
    site's name for this provider when it has several (/oauth/callback/<name>/). `secret=False`: a client without a
    secret (private_key_jwt); `metadata`: more client metadata (NodeProvider.register_client)."""
    client_id, client_secret = f"site-{secrets.token_hex(6)}", secrets.token_urlsafe(32) if secret else ""
    suffix = f"{name}/" if name else ""
    provider.register_client(
        client_id,
        client_secret or None,
        redirect_uris=[f"{site_url}/oauth/callback/{suffix}"],
        post_logout_redirect_uris=[f"{site_url}/"],
        backchannel_logout_uri=f"{site_url}/oauth/backchannel-logout/{suffix}",
        **metadata,  # type: ignore[arg-type]
    )
    return client_id, client_secret


@pytest.fixture
def node_site(live_server, node_provider: NodeProvider, settings) -> Site:  # type: ignore[no-untyped-def]
    """The demo site in a live server, configured as a client of node oidc-provider (its own client, counters
    reset)."""
    client_id, client_secret = register_node_client(node_provider, live_server.url)
    node_provider.reset_counts()
    settings.OAUTH_CLIENT = node_client_settings(node_provider, client_id, client_secret)
    cache.clear()
    return Site(url=live_server.url, provider=node_provider, client_id=client_id, client_secret=client_secret)
