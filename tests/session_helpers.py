"""Helpers for the session-registry tests: signing logout tokens with the provider's key, and user-visible checks."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from jwcrypto import jwk, jwt

from oauth_client.models import OAuthSession
from oauth_client.validation import BACKCHANNEL_LOGOUT_EVENT
from tests.browser import Browser

FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def provider_key(provider) -> jwk.JWK:
    """The provider's current signing key (its env names the file, which a key rotation may have changed)."""
    return jwk.JWK.from_pem(Path(provider.env()["IDP_KEY_FILE"]).read_bytes())


def sign_logout_token(
    provider,
    *,
    key: jwk.JWK | None = None,
    kid: str | None = None,
    alg: str = "RS256",
    typ: str | None = "logout+jwt",
    **claims: Any,
) -> str:
    """A logout token as the provider would sign it; pass claim=None to leave a claim out (typ=None: no typ)."""
    real = provider_key(provider)
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": provider.issuer,
        "aud": provider.client_id,
        "iat": now,
        "exp": now + 120,
        "jti": secrets.token_urlsafe(16),
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    header = {"alg": alg, "kid": kid or real.thumbprint(), **({"typ": typ} if typ is not None else {})}
    token = jwt.JWT(header=header, claims=body)
    token.make_signed_token(key or real)
    return str(token.serialize())


def signed_in_as(site, user_agent: str | None = None) -> Browser:
    browser = Browser()
    if user_agent:
        browser.headers["User-Agent"] = user_agent
    resp = browser.sign_in(site.url, site.provider.username, site.provider.password)
    assert resp.status_code == 200 and resp.url.startswith(site.url), resp.text[:1000]
    return browser


def is_signed_in(site, browser: Browser) -> bool:
    """What the person sees: their profile page, or a detour to sign in again."""
    resp = browser.get(site.url + "/account/", allow_redirects=False)
    if resp.status_code == 200:
        return True
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/oauth/login/"), resp.status_code
    return False


def newest_record() -> OAuthSession:
    return OAuthSession.objects.order_by("-created_at").first()  # type: ignore[return-value]


def assert_no_token_material(html: str, *tokens: str) -> None:
    """No token, and no 8-character piece of one, anywhere in the page."""
    for token in tokens:
        assert token, "expected a real token to look for"
        assert token not in html
        pieces = {token[i : i + 8] for i in range(len(token) - 7)}
        leaked = [p for p in pieces if p in html]
        assert not leaked, f"token material in the page: {leaked[:3]}"
