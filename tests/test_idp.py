"""End-to-end tests of the embedded development provider (idp/), run as a real gunicorn server.

No Django test database is involved: the provider runs in its own process with its own SQLite
file, so these tests need neither db fixtures nor the pytest-django plugin.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sqlite3
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import pytest
import requests
from jwcrypto import jwk, jwt

try:  # `python -m pytest` puts the repo root on sys.path; plain `pytest` puts tests/ there
    from tests.provider import EmbeddedProvider
except ImportError:
    from provider import EmbeddedProvider  # type: ignore[no-redef]

REDIRECT_URI = "http://127.0.0.1:9/cb"  # discard port: the final redirect is never followed
POST_LOGOUT_REDIRECT_URI = "http://127.0.0.1:9/"
SCOPE = "openid profile email offline_access"
TIMEOUT = 15


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedProvider]:
    idp = EmbeddedProvider(tmp_path_factory.mktemp("idp"), [REDIRECT_URI], [POST_LOGOUT_REDIRECT_URI])
    idp.start()
    try:
        yield idp
    finally:
        idp.stop()


# -- a browser and a confidential client, by hand ------------------------------------------------


class FormParser(HTMLParser):
    """Collects every <form> with its action and named <input> values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append({"id": attributes.get("id", ""), "action": attributes.get("action", ""), "fields": {}})
        elif tag == "input" and self.forms and attributes.get("name"):
            if attributes.get("type", "text") not in ("submit", "button", "checkbox"):
                self.forms[-1]["fields"][attributes["name"]] = attributes.get("value", "")


def find_form(html: str, with_field: str) -> dict[str, Any]:
    parser = FormParser()
    parser.feed(html)
    for form in parser.forms:
        if with_field in form["fields"]:
            return form
    raise AssertionError(f"no form with a {with_field!r} field in:\n{html[:2000]}")


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def sign_in_and_consent(
    provider: EmbeddedProvider, browser: requests.Session, allow: bool = True, scope: str = SCOPE
) -> dict[str, Any]:
    """GET authorize → login form → consent → redirect to the client; returns the callback's params."""
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    params = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": scope,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page = browser.get(f"{provider.issuer}/authorize/", params=params, timeout=TIMEOUT)
    if urlsplit(page.url).path == "/accounts/login/":
        login = find_form(page.text, with_field="csrfmiddlewaretoken")
        fields = {**login["fields"], "username": provider.username, "password": provider.password}
        page = browser.post(urljoin(page.url, login["action"]), data=fields, timeout=TIMEOUT)
    assert page.status_code == 200, page.text[:2000]

    consent = find_form(page.text, with_field="client_id")
    assert "Demo site" in page.text
    fields = dict(consent["fields"])
    if allow:
        fields["allow"] = "allow"
    answer = browser.post(page.url, data=fields, allow_redirects=False, timeout=TIMEOUT)
    assert answer.status_code == 302, answer.text[:2000]
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    callback = {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
    assert callback["state"] == state
    return {**callback, "verifier": verifier, "nonce": nonce}


def token_request(provider: EmbeddedProvider, data: dict[str, str]) -> requests.Response:
    # client_secret_basic: RFC 6749 2.3.1 form-encodes id and secret before base64.
    auth = (quote(provider.client_id, safe=""), quote(provider.client_secret, safe=""))
    return requests.post(f"{provider.issuer}/token/", data=data, auth=auth, timeout=TIMEOUT)


def exchange_code(provider: EmbeddedProvider, callback: dict[str, Any]) -> dict[str, Any]:
    response = token_request(
        provider,
        {
            "grant_type": "authorization_code",
            "code": callback["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": callback["verifier"],
        },
    )
    assert response.status_code == 200, response.text
    return response.json()


def refresh(provider: EmbeddedProvider, refresh_token: str) -> requests.Response:
    return token_request(provider, {"grant_type": "refresh_token", "refresh_token": refresh_token})


def verify_id_token(provider: EmbeddedProvider, id_token: str) -> dict[str, Any]:
    keys = jwk.JWKSet.from_json(requests.get(f"{provider.issuer}/.well-known/jwks.json", timeout=TIMEOUT).text)
    token = jwt.JWT(
        jwt=id_token,
        key=keys,
        algs=["RS256"],
        check_claims={"iss": provider.issuer, "aud": provider.client_id, "exp": None},
    )
    return json.loads(token.claims)


def db_rows(provider: EmbeddedProvider, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"{provider.database_path.resolve().as_uri()}?mode=ro", uri=True, timeout=20)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# -- tests ---------------------------------------------------------------------------------------


def test_discovery_and_jwks(provider: EmbeddedProvider) -> None:
    discovery = requests.get(provider.discovery_url, timeout=TIMEOUT).json()
    assert discovery["issuer"] == provider.issuer
    assert discovery["authorization_endpoint"] == f"{provider.issuer}/authorize/"
    assert discovery["token_endpoint"] == f"{provider.issuer}/token/"
    assert discovery["userinfo_endpoint"] == f"{provider.issuer}/userinfo/"
    assert discovery["jwks_uri"] == f"{provider.issuer}/.well-known/jwks.json"
    assert discovery["end_session_endpoint"] == f"{provider.issuer}/logout/"
    assert "RS256" in discovery["id_token_signing_alg_values_supported"]
    assert discovery["code_challenge_methods_supported"] == ["S256"]
    assert {"openid", "profile", "email", "offline_access"} <= set(discovery["scopes_supported"])
    assert {"sub", "name", "email", "email_verified", "preferred_username"} <= set(discovery["claims_supported"])
    assert {"client_secret_basic", "client_secret_post"} <= set(discovery["token_endpoint_auth_methods_supported"])

    jwks = requests.get(discovery["jwks_uri"], timeout=TIMEOUT).json()
    assert len(jwks["keys"]) == 1
    (key,) = jwks["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig" and key["kid"]
    assert "d" not in key  # public half only
    assert provider.key_file.stat().st_mode & 0o077 == 0


def test_home_page_and_provider_cookies(provider: EmbeddedProvider) -> None:
    browser = requests.Session()
    page = browser.get(f"{provider.base_url}/accounts/login/", timeout=TIMEOUT)
    assert "Embedded development provider" in page.text
    # Own cookie names: the site runs on the same host (another port) and shares the cookie jar.
    assert "idp_csrftoken" in browser.cookies
    assert "csrftoken" not in browser.cookies
    home = requests.get(f"{provider.base_url}/", timeout=TIMEOUT)
    assert "/o/.well-known/openid-configuration" in home.text


def test_code_flow_refresh_rotation_and_reuse_protection(provider: EmbeddedProvider) -> None:
    browser = requests.Session()
    callback = sign_in_and_consent(provider, browser)
    assert callback["iss"] == provider.issuer  # RFC 9207
    assert "idp_sessionid" in browser.cookies

    tokens = exchange_code(provider, callback)
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == provider.access_token_seconds
    assert set(tokens["scope"].split()) == set(SCOPE.split())
    claims = verify_id_token(provider, tokens["id_token"])
    assert claims["nonce"] == callback["nonce"]
    assert claims["sub"].isdigit()
    assert claims["preferred_username"] == provider.username
    assert claims["email"] == "demo@example.com" and claims["email_verified"] is True
    assert claims["name"] == "Demo User"
    assert {"auth_time", "at_hash", "iat", "exp", "jti"} <= set(claims)
    assert claims["exp"] - claims["iat"] <= provider.id_token_seconds + 5

    userinfo = requests.get(
        f"{provider.issuer}/userinfo/",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=TIMEOUT,
    )
    assert userinfo.status_code == 200
    assert userinfo.json()["sub"] == claims["sub"] and userinfo.json()["email"] == "demo@example.com"

    # The code is single-use.
    replay = token_request(
        provider,
        {
            "grant_type": "authorization_code",
            "code": callback["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": callback["verifier"],
        },
    )
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"

    first_refresh = tokens["refresh_token"]
    assert not provider.is_refresh_token_revoked(first_refresh)
    first_row = next(row for row in provider.refresh_token_rows() if row["token"] == first_refresh)
    first_access_id = first_row["access_token_id"]

    # Rotation: a new refresh token; the old row stays, revoked and detached from its access token,
    # whose row is deleted.
    response = refresh(provider, first_refresh)
    assert response.status_code == 200, response.text
    rotated = response.json()
    second_refresh = rotated["refresh_token"]
    assert second_refresh != first_refresh
    assert rotated["access_token"] != tokens["access_token"]
    assert set(rotated["scope"].split()) == set(SCOPE.split())
    assert provider.is_refresh_token_revoked(first_refresh)
    assert not provider.is_refresh_token_revoked(second_refresh)
    old_row = next(row for row in provider.refresh_token_rows() if row["token"] == first_refresh)
    assert old_row["revoked"] is not None and old_row["access_token_id"] is None
    access_ids = {row["id"] for row in provider.access_token_rows()}
    assert first_access_id not in access_ids
    new_row = next(row for row in provider.refresh_token_rows() if row["token"] == second_refresh)
    assert new_row["token_family"] == old_row["token_family"]
    assert new_row["access_token_id"] in access_ids

    # DOT 3.4.1 does mint a new ID token on refresh (oauthlib's OIDC refresh grant): same subject,
    # fresh iat/exp/jti and at_hash, auth_time still the sign-in time, but no nonce.
    assert "id_token" in rotated
    refreshed = verify_id_token(provider, rotated["id_token"])
    assert refreshed["sub"] == claims["sub"]
    assert refreshed["auth_time"] == claims["auth_time"]
    assert "nonce" not in refreshed
    assert refreshed["jti"] != claims["jti"]
    assert "at_hash" in refreshed and refreshed["at_hash"] != claims["at_hash"]
    assert refreshed["email"] == claims["email"]

    # Reuse of the rotated token: invalid_grant, and the whole family is revoked (Auth0-like).
    reuse = refresh(provider, first_refresh)
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    assert provider.is_refresh_token_revoked(second_refresh)
    assert second_refresh not in {row["token"] for row in provider.active_refresh_tokens()}
    after = refresh(provider, second_refresh)
    assert after.status_code == 400 and after.json()["error"] == "invalid_grant"
    revoked_access = requests.get(
        f"{provider.issuer}/userinfo/",
        headers={"Authorization": f"Bearer {rotated['access_token']}"},
        timeout=TIMEOUT,
    )
    assert revoked_access.status_code == 401


def test_wrong_client_secret_is_rejected(provider: EmbeddedProvider) -> None:
    response = requests.post(
        f"{provider.issuer}/token/",
        data={"grant_type": "refresh_token", "refresh_token": "whatever"},
        auth=(provider.client_id, "not-the-secret"),
        timeout=TIMEOUT,
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_pkce_is_required(provider: EmbeddedProvider) -> None:
    browser = requests.Session()
    page = browser.get(f"{provider.base_url}/accounts/login/", timeout=TIMEOUT)
    login = find_form(page.text, with_field="csrfmiddlewaretoken")
    fields = {**login["fields"], "username": provider.username, "password": provider.password}
    assert browser.post(page.url, data=fields, timeout=TIMEOUT).status_code == 200

    params = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": "s",
    }
    response = browser.get(f"{provider.issuer}/authorize/", params=params, allow_redirects=False, timeout=TIMEOUT)
    assert response.status_code == 302
    assert response.headers["Location"].startswith(REDIRECT_URI + "?error=invalid_request")


def test_deny_redirects_with_access_denied(provider: EmbeddedProvider) -> None:
    browser = requests.Session()
    callback = sign_in_and_consent(provider, browser, allow=False)
    assert callback["error"] == "access_denied"
    assert "code" not in callback


def test_idp_setup_is_idempotent(provider: EmbeddedProvider) -> None:
    def snapshot() -> tuple[list[Any], list[Any]]:
        users = db_rows(provider, "SELECT username, password FROM auth_user")
        apps = db_rows(
            provider,
            "SELECT client_id, client_secret, redirect_uris, post_logout_redirect_uris"
            " FROM oauth2_provider_application",
        )
        return users, apps

    users_before, apps_before = snapshot()
    secret_before = json.loads(provider.client_file.read_text())["client_secret"]
    for _ in range(2):
        # No --redirect-uri: what is registered must survive (URIs are merged, never replaced).
        result = provider.manage("idp_setup", "--output", str(provider.client_file))
        assert secret_before not in result.stdout  # printed only with --show-secret

    users_after, apps_after = snapshot()
    assert len(users_after) == 1 and len(apps_after) == 1
    assert users_after == users_before  # password hash untouched, not re-salted
    assert apps_after == apps_before  # same hashed secret, same URIs
    assert apps_after[0][2] == REDIRECT_URI and apps_after[0][3] == POST_LOGOUT_REDIRECT_URI
    written = json.loads(provider.client_file.read_text())
    assert written["client_secret"] == secret_before
    assert written == {
        "client_id": "demo-site",
        "client_secret": secret_before,
        "issuer": provider.issuer,
        "username": "demo",
        "password": "demo-password",
    }
    assert provider.client_file.stat().st_mode & 0o077 == 0

    # A new redirect URI is merged in (and still the same single application).
    extra = "http://localhost:8000/oauth/callback/"
    provider.manage("idp_setup", "--output", str(provider.client_file), "--redirect-uri", extra)
    (app,) = snapshot()[1]
    assert app[2].split() == [REDIRECT_URI, extra]
    assert app[1] == apps_before[0][1]


def test_rp_initiated_logout(provider: EmbeddedProvider) -> None:
    browser = requests.Session()
    tokens = exchange_code(provider, sign_in_and_consent(provider, browser))
    response = browser.get(
        f"{provider.issuer}/logout/",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": POST_LOGOUT_REDIRECT_URI,
            "state": "bye",
        },
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    # A valid id_token_hint for the signed-in user: no confirmation page.
    assert response.status_code == 302, response.text[:2000]
    assert response.headers["Location"] == f"{POST_LOGOUT_REDIRECT_URI}?state=bye"
    # DOT revokes the user's tokens for the application and ends the provider session.
    assert provider.is_refresh_token_revoked(tokens["refresh_token"])
    again = browser.get(f"{provider.base_url}/", timeout=TIMEOUT)
    assert "Nobody is signed in" in again.text


def test_skip_authorization_and_key_rotation(tmp_path: Path) -> None:
    with EmbeddedProvider(tmp_path, [REDIRECT_URI], [POST_LOGOUT_REDIRECT_URI], skip_authorization=True) as idp:
        browser = requests.Session()
        verifier, challenge = pkce_pair()
        page = browser.get(
            f"{idp.issuer}/authorize/",
            params={
                "response_type": "code",
                "client_id": idp.client_id,
                "redirect_uri": REDIRECT_URI,
                "scope": "openid",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
            timeout=TIMEOUT,
        )
        login = find_form(page.text, with_field="csrfmiddlewaretoken")
        answer = browser.post(
            urljoin(page.url, login["action"]),
            data={**login["fields"], "username": idp.username, "password": idp.password},
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        # Login → authorize → straight to the client: no consent page with skip_authorization.
        answer = browser.get(urljoin(answer.url, answer.headers["Location"]), allow_redirects=False, timeout=TIMEOUT)
        assert answer.headers["Location"].startswith(REDIRECT_URI + "?code=")
        code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
        tokens = exchange_code(idp, {"code": code, "verifier": verifier})
        old_kid = requests.get(f"{idp.issuer}/.well-known/jwks.json", timeout=TIMEOUT).json()["keys"][0]["kid"]

        idp.rotate_signing_key()
        kids = [
            key["kid"] for key in requests.get(f"{idp.issuer}/.well-known/jwks.json", timeout=TIMEOUT).json()["keys"]
        ]
        assert len(kids) == 2 and kids[1] == old_kid  # the active key is listed first
        assert verify_id_token(idp, tokens["id_token"])["aud"] == idp.client_id  # old tokens still verify
        rotated = refresh(idp, tokens["refresh_token"])
        assert rotated.status_code == 200, rotated.text
        header = json.loads(base64.urlsafe_b64decode(rotated.json()["id_token"].split(".")[0] + "=="))
        assert header["kid"] == kids[0]
