"""private_key_jwt, pushed authorization requests and DPoP, refereed by node `oidc-provider` (OpenID Certified).

The client is registered at the provider the way a FAPI 2.0 deployment registers it: `private_key_jwt` only (no
secret; its keys fetched from our /oauth/jwks.json, or registered inline), `require_pushed_authorization_requests`
and `dpop_bound_access_tokens`. The provider asks for a DPoP nonce on every proof (`OP_DPOP_NONCE`), so each
nonce challenge path runs. Everything is counted at the provider: pushed requests, grants authenticated with the
key, access tokens and the key thumbprint (`cnf.jkt`) each was bound to, error answers by code.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import Client
from jwcrypto import jwk, jwt

from oauth_client import client_auth, dpop, keys
from oauth_client.models import OAuthSession
from tests.browser import Browser
from tests.conftest import Site, node_client_settings, register_node_client
from tests.helpers import active_record, expire_tokens
from tests.node_provider import NodeProvider
from tests.test_secrets import Capture, debug_logs, dump_site_database, secret_forms  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def strict_op(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProvider]:
    """node oidc-provider that asks for a DPoP nonce on every proof."""
    reason = NodeProvider.unavailable_reason()
    if reason:
        pytest.skip(f"node oidc-provider cannot run here: {reason}")
    op = NodeProvider(tmp_path_factory.mktemp("node-fapi"), dpop_nonce=True)
    op.start()
    yield op
    op.stop()


def make_key(directory: Path, name: str = "client-key.pem", kind: str = "ec") -> Path:
    """A new key pair, the way an operator makes one (`manage.py oidc_client_key --out`)."""
    path = directory / name
    out = io.StringIO()
    call_command("oidc_client_key", out=str(path), type=kind, stdout=out, stderr=io.StringIO())
    public = json.loads(out.getvalue())
    assert "d" not in public and public["kid"] == keys.load(str(path)).kid
    return path


def register(op: NodeProvider, site_url: str, **keys_metadata: object) -> str:
    """A FAPI-style client for the site: private_key_jwt only, PAR required, DPoP-bound access tokens."""
    client_id, _ = register_node_client(
        op,
        site_url,
        secret=False,
        token_endpoint_auth_method="private_key_jwt",
        require_pushed_authorization_requests=True,
        dpop_bound_access_tokens=True,
        **keys_metadata,
    )
    return client_id


def fapi_settings(op: NodeProvider, client_id: str, key: Path, **overrides: object) -> dict[str, object]:
    return node_client_settings(
        op,
        client_id,
        "",
        TOKEN_AUTH_METHOD="private_key_jwt",
        CLIENT_KEY_FILE=str(key),
        PAR="on",
        DPOP="on",
        **overrides,
    )


@pytest.fixture
def fapi_site(live_server, strict_op: NodeProvider, settings, tmp_path: Path) -> Site:  # type: ignore[no-untyped-def]
    """The demo site as a FAPI-style client of node oidc-provider, its public key fetched from /oauth/jwks.json."""
    key = make_key(tmp_path)
    client_id = register(strict_op, live_server.url, jwks_uri=f"{live_server.url}/oauth/jwks.json")
    strict_op.reset_counts()
    settings.OAUTH_CLIENT = fapi_settings(strict_op, client_id, key)
    cache.clear()
    return Site(url=live_server.url, provider=strict_op, client_id=client_id)


def sign_out(site: Site, browser: requests.Session) -> None:
    profile = browser.get(site.url + "/account/")
    form = browser.find_form(profile, action="/oauth/logout/")  # type: ignore[attr-defined]
    browser.submit(profile, form)  # type: ignore[attr-defined]


# --- the whole life of a session ---------------------------------------------------------------------------------


def test_sign_in_refresh_userinfo_and_sign_out_with_a_key_par_and_dpop(fapi_site: Site):
    op, client_id = fapi_site.provider, fapi_site.client_id
    assert isinstance(op, NodeProvider)
    browser = fapi_site.signed_in_browser()

    record = active_record()
    assert record.token_type == "DPoP"
    thumbprint = dpop.thumbprint(record.dpop_key)
    counts = op.counts(client_id)
    # The authorization request was pushed (the client requires it: a plain one would have been refused), the code
    # exchanged with a client assertion, the access token bound to this session's key.
    assert counts["pushed_authorization_requests"] == 1
    assert counts["authorization_code_grants"] == 1 and counts["private_key_jwt_grants"] == 1
    assert counts["dpop_bound_access_tokens"] == 1 and counts["bearer_access_tokens"] == 0
    assert op.bound_keys(client_id) == [thumbprint]

    # The profile calls userinfo through api_session: Authorization: DPoP, with a proof (ath, the nonce).
    profile = browser.get(fapi_site.url + "/account/")
    assert profile.status_code == 200 and op.account_email in profile.text

    # Expiry: a transparent refresh, rotated, the new access token bound to the same key.
    spent = record.refresh_token
    expire_tokens()
    assert browser.get(fapi_site.url + "/account/").status_code == 200
    record.refresh_from_db()
    assert record.refresh_count == 1 and record.refresh_token != spent and record.token_type == "DPoP"
    # A sensitive page refreshes first, whatever the expiry.
    assert browser.get(fapi_site.url + "/account/sensitive/").status_code == 200
    record.refresh_from_db()
    assert record.refresh_count == 2
    # The async view: httpx with AsyncBearerAuth, DPoP as well.
    info = browser.get(fapi_site.url + "/account/userinfo.json")
    assert info.status_code == 200, info.text[:300]
    assert info.json()["email"] == op.account_email

    counts = op.counts(client_id)
    assert counts["refresh_grants"] == 2 and counts["refresh_errors"] == 0 and counts["refresh_token_reuse"] == 0
    assert counts["private_key_jwt_grants"] == 3
    assert counts["dpop_bound_access_tokens"] == 3 and counts["bearer_access_tokens"] == 0
    assert op.bound_keys(client_id) == [thumbprint] * 3
    errors = op.errors()
    # The provider asked for nonces, and every challenge was answered: no proof was refused, no token rejected.
    assert errors.get("grant.error use_dpop_nonce", 0) >= 1, errors
    assert not {k for k in errors if "invalid_dpop_proof" in k or "invalid_token" in k or "invalid_client" in k}

    # Sign-out revokes the refresh token at the provider, authenticated with a client assertion.
    sign_out(fapi_site, browser)
    assert op.counts(client_id)["revocations"] == 1
    record.refresh_from_db()
    assert record.ended_reason == OAuthSession.EndReason.LOGOUT
    assert record.dpop_key == "" and record.refresh_token == ""


def test_only_client_id_and_request_uri_go_through_the_browser(fapi_site: Site):
    """PAR: the authorization request the browser carries has two parameters; everything else was pushed."""
    resp = fapi_site.browser().get(fapi_site.url + "/oauth/login/", allow_redirects=False)
    assert resp.status_code == 302
    location = urlsplit(resp.headers["Location"])
    assert (
        f"{location.scheme}://{location.netloc}{location.path}"
        == fapi_site.provider.metadata()["authorization_endpoint"]
    )
    params = parse_qs(location.query)
    assert set(params) == {"client_id", "request_uri"}
    assert params["request_uri"][0].startswith("urn:ietf:params:oauth:request_uri:")
    assert fapi_site.provider.counts(fapi_site.client_id)["pushed_authorization_requests"] == 1


def test_par_is_used_by_default_where_the_provider_offers_it(node_site: Site):
    """PAR "auto" (the default) with the suite's ordinary node client (client_secret_basic, PAR not required)."""
    op = node_site.provider
    assert isinstance(op, NodeProvider)
    location = node_site.browser().get(node_site.url + "/oauth/login/", allow_redirects=False).headers["Location"]
    assert set(parse_qs(urlsplit(location).query)) == {"client_id", "request_uri"}
    node_site.signed_in_browser()
    assert op.counts(node_site.client_id)["pushed_authorization_requests"] == 2
    assert op.counts(node_site.client_id)["bearer_access_tokens"] == 1
    assert active_record().token_type == "Bearer" and active_record().dpop_key == ""


def test_resource_nonce_challenges_are_answered_once(fapi_site: Site):
    """The provider's userinfo (a resource server) asks for a nonce when a proof has none (RFC 9449 §9): api_session
    and the async client answer with one retry each, without refreshing."""
    op = fapi_site.provider
    assert isinstance(op, NodeProvider)
    browser = fapi_site.signed_in_browser()
    op.reset_counts()
    cache.clear()  # forget the nonces the provider gave
    profile = browser.get(fapi_site.url + "/account/")
    assert profile.status_code == 200 and op.account_email in profile.text
    cache.clear()
    info = browser.get(fapi_site.url + "/account/userinfo.json")
    assert info.status_code == 200 and info.json()["email"] == op.account_email
    assert op.errors().get("userinfo.error use_dpop_nonce") == 2, op.errors()
    assert op.counts(fapi_site.client_id)["refresh_grants"] == 0


def test_a_client_key_rotation_keeps_sessions_going(fapi_site: Site, settings, tmp_path: Path):
    """Rotation as docs/providers.md describes it: the next key is published beside the current one before the
    provider next fetches /oauth/jwks.json (it caches it: node for the response's max-age), then it signs. A session
    signed in before the switch refreshes with an assertion signed by the new key."""
    op = fapi_site.provider
    assert isinstance(op, NodeProvider)
    current = settings.OAUTH_CLIENT["CLIENT_KEY_FILE"]
    upcoming = make_key(tmp_path, "next-key.pem", kind="rsa")
    settings.OAUTH_CLIENT = {**settings.OAUTH_CLIENT, "CLIENT_KEY_FILE_NEXT": str(upcoming)}
    published = requests.get(fapi_site.url + "/oauth/jwks.json", timeout=10)
    assert published.headers["Cache-Control"] == "public, max-age=300"
    assert [k["kid"] for k in published.json()["keys"]] == [keys.load(current).kid, keys.load(str(upcoming)).kid]
    browser = fapi_site.signed_in_browser()  # the provider fetches both keys, signed with the current one

    settings.OAUTH_CLIENT = {**settings.OAUTH_CLIENT, "CLIENT_KEY_FILE": str(upcoming), "CLIENT_KEY_FILE_NEXT": ""}
    Path(current).unlink()  # the old key is gone: only the new one can have signed what the provider accepts
    expire_tokens()
    assert browser.get(fapi_site.url + "/account/sensitive/").status_code == 200
    counts = op.counts(fapi_site.client_id)
    assert counts["refresh_grants"] == 1 and counts["private_key_jwt_grants"] == 2
    assert active_record().refresh_count == 1


# --- what the provider refuses, and what the site then says --------------------------------------------------------


def test_a_client_secret_is_refused_for_a_private_key_jwt_client(fapi_site: Site, settings, caplog):
    op = fapi_site.provider
    assert isinstance(op, NodeProvider)
    settings.OAUTH_CLIENT = {
        **settings.OAUTH_CLIENT,
        "TOKEN_AUTH_METHOD": "client_secret_basic",
        "CLIENT_SECRET": secrets.token_urlsafe(32),
    }
    with caplog.at_level(logging.ERROR, logger="oauth_client"):
        resp = fapi_site.browser().get(fapi_site.url + "/oauth/login/")
    assert resp.status_code == 503 and "Sign-in is unavailable" in resp.text
    assert op.errors().get("pushed_authorization_request.error invalid_client") == 1
    assert op.counts(fapi_site.client_id)["pushed_authorization_requests"] == 0
    assert "rejected this client" in caplog.text


def test_a_key_the_provider_does_not_know_is_refused_and_sessions_are_kept(
    live_server, strict_op: NodeProvider, settings, tmp_path: Path, caplog
):
    """Registered with an inline key (no jwks_uri to refetch): the site signing with another key is refused
    (invalid_client), at sign-in and at refresh; nobody is signed out for the site's fault."""
    known, unknown = make_key(tmp_path, "known.pem"), make_key(tmp_path, "unknown.pem")
    client_id = register(strict_op, live_server.url, jwks={"keys": [keys.load(str(known)).public_jwk()]})
    strict_op.reset_counts()
    settings.OAUTH_CLIENT = fapi_settings(strict_op, client_id, known)
    cache.clear()
    site = Site(url=live_server.url, provider=strict_op, client_id=client_id)
    browser = site.signed_in_browser()

    settings.OAUTH_CLIENT = fapi_settings(strict_op, client_id, unknown)
    expire_tokens()
    with caplog.at_level(logging.ERROR, logger="oauth_client"):
        sensitive = browser.get(site.url + "/account/sensitive/", allow_redirects=False)
        sign_in = site.browser().get(site.url + "/oauth/login/")
    assert sensitive.status_code == 503  # the refresh failed; the session is kept
    assert active_record().ended_at is None
    assert sign_in.status_code == 503 and "Sign-in is unavailable" in sign_in.text
    errors = strict_op.errors()
    assert (
        errors.get("grant.error invalid_client") == 1
        and errors.get("pushed_authorization_request.error invalid_client") == 1
    )
    assert strict_op.counts(client_id)["refresh_grants"] == 0
    assert "rejected this client" in caplog.text

    settings.OAUTH_CLIENT = fapi_settings(strict_op, client_id, known)  # fixed: the session carries on
    assert browser.get(site.url + "/account/sensitive/").status_code == 200
    assert strict_op.counts(client_id)["refresh_grants"] == 1


def test_an_expired_client_assertion_is_refused(fapi_site: Site, monkeypatch):
    op = fapi_site.provider
    assert isinstance(op, NodeProvider)
    browser = fapi_site.signed_in_browser()
    # Fault injection at our own edge: assertions that expired five minutes before they were made.
    monkeypatch.setattr(client_auth, "ASSERTION_LIFETIME", -300)
    expire_tokens()
    resp = browser.get(fapi_site.url + "/account/sensitive/", allow_redirects=False)
    assert resp.status_code == 503
    assert op.errors().get("grant.error invalid_client") == 1
    assert active_record().ended_at is None
    monkeypatch.undo()
    assert browser.get(fapi_site.url + "/account/sensitive/").status_code == 200


def test_a_replayed_dpop_proof_is_refused_by_the_provider(fapi_site: Site, monkeypatch):
    """Two uses of one proof: first as an attacker would (a proof and token the site sent to userinfo, replayed),
    then by the site itself (fault injection: every proof with the same jti) — the provider refuses both."""
    op = fapi_site.provider
    assert isinstance(op, NodeProvider)
    browser = fapi_site.signed_in_browser()
    record = active_record()
    userinfo = op.metadata()["userinfo_endpoint"]
    headers = dpop.authorization_headers(record.dpop_key, record.access_token, "GET", userinfo, None)
    first = requests.get(userinfo, headers=headers, timeout=10)
    if dpop.is_nonce_challenge(first.status_code, first.headers):  # the provider wants its nonce in the proof
        nonce = first.headers["DPoP-Nonce"]
        headers = dpop.authorization_headers(record.dpop_key, record.access_token, "GET", userinfo, nonce)
        first = requests.get(userinfo, headers=headers, timeout=10)
    assert first.status_code == 200, (first.status_code, first.headers.get("WWW-Authenticate"))
    replayed = requests.get(userinfo, headers=headers, timeout=10)
    assert replayed.status_code == 401 and 'error="invalid_token"' in replayed.headers["WWW-Authenticate"]
    # Without the proof the bound token is useless: presented as a Bearer token it is refused.
    bearer = requests.get(userinfo, headers={"Authorization": f"Bearer {record.access_token}"}, timeout=10)
    assert bearer.status_code == 401

    fixed = secrets.token_urlsafe(24)
    monkeypatch.setattr(dpop, "new_jti", lambda: fixed)
    expire_tokens()
    # The jti's first use is accepted (a refresh)...
    assert browser.get(fapi_site.url + "/account/", allow_redirects=False).status_code in (200, 302)
    assert op.counts(fapi_site.client_id)["refresh_grants"] == 1
    # ...its second use is refused.
    resp = browser.get(fapi_site.url + "/account/sensitive/", allow_redirects=False)
    # The provider answers invalid_grant ("DPoP proof JWT Replay detected"): the site cannot tell that from a
    # refused refresh token, so it ends the session (and revokes it) and asks the person to sign in again.
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/oauth/login/")
    record.refresh_from_db()
    assert record.ended_reason == OAuthSession.EndReason.REFRESH_REJECTED
    assert op.errors().get("grant.error invalid_grant", 0) >= 1
    assert op.counts(fapi_site.client_id)["refresh_grants"] == 1


# --- settings that cannot work fail clearly -------------------------------------------------------------------------


def test_par_on_without_a_par_endpoint_fails_at_sign_in(site, settings, caplog):
    """The embedded provider (django-oauth-toolkit) has no PAR endpoint: "auto" signs in as usual, "on" refuses."""
    settings.OAUTH_CLIENT = {**settings.OAUTH_CLIENT, "PAR": "on"}
    with caplog.at_level(logging.ERROR, logger="oauth_client"):
        resp = site.browser().get(site.url + "/oauth/login/", allow_redirects=False)
    assert resp.status_code == 503 and "Sign-in is unavailable" in resp.text
    assert "pushed_authorization_request_endpoint" in caplog.text


def test_a_dpop_bound_client_with_dpop_off_cannot_sign_in(fapi_site: Site, settings):
    """The client is registered with dpop_bound_access_tokens; with DPOP off the site sends no proof, the provider
    refuses, and sign-in fails with a clear page (no session, no 500)."""
    settings.OAUTH_CLIENT = {**settings.OAUTH_CLIENT, "DPOP": "off"}
    op = fapi_site.provider
    assert isinstance(op, NodeProvider)
    resp = fapi_site.browser().sign_in(fapi_site.url, op.username, op.password)
    assert resp.status_code == 400 and "Sign-in failed" in resp.text
    assert OAuthSession.objects.count() == 0
    # The provider refused the code exchange (a bound client with no proof); no token was issued.
    assert op.errors().get("grant.error invalid_grant") == 1
    assert op.counts(fapi_site.client_id)["authorization_code_grants"] == 0


def test_the_jwks_endpoint_publishes_public_keys_only(settings, tmp_path: Path):
    current, upcoming = make_key(tmp_path, "a.pem"), make_key(tmp_path, "b.pem", kind="rsa")
    settings.OAUTH_CLIENT = {
        "ISSUER": "https://op.example",
        "CLIENT_ID": "site",
        "TOKEN_AUTH_METHOD": "private_key_jwt",
        "CLIENT_KEY_FILE": str(current),
        "CLIENT_KEY_ID": "2026-12",
        "CLIENT_KEY_FILE_NEXT": str(upcoming),
    }
    resp = Client().get("/oauth/jwks.json")
    assert resp.status_code == 200 and resp["Content-Type"] == "application/jwk-set+json"
    published = resp.json()["keys"]
    assert [k["kid"] for k in published] == ["2026-12", keys.load(str(upcoming)).kid]
    # An RSA key carries no alg (it may sign PS256 or RS256); an EC key's curve fixes its alg.
    assert [(k["kty"], k.get("alg"), k["use"]) for k in published] == [("EC", "ES256", "sig"), ("RSA", None, "sig")]
    for key in published:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)
        jwk.JWK(**key)  # a valid public JWK
    assert Client().post("/oauth/jwks.json").status_code == 405
    settings.OAUTH_CLIENT = {"ISSUER": "https://op.example", "CLIENT_ID": "site", "CLIENT_SECRET": "s" * 32}
    assert Client().get("/oauth/jwks.json").json() == {"keys": []}


def test_a_client_assertion_has_the_claims_rfc_7523_asks(settings, tmp_path: Path):
    key = keys.load(str(make_key(tmp_path)))
    auth = client_auth.PrivateKeyJWT("site", key, "ES256", "https://op.example")
    first, second = auth.assertion(), auth.assertion()
    token = jwt.JWT(jwt=first, key=key.key, expected_type="JWS")
    claims = json.loads(token.claims)
    header = json.loads(token.header)
    assert header == {"alg": "ES256", "kid": key.kid}
    assert claims["iss"] == claims["sub"] == "site" and claims["aud"] == "https://op.example"
    assert 0 < claims["exp"] - claims["iat"] <= 60
    assert json.loads(jwt.JWT(jwt=second, key=key.key).claims)["jti"] != claims["jti"]


def test_a_dpop_proof_has_the_claims_rfc_9449_asks():
    key = dpop.load_key(dpop.new_key())
    proof = dpop.proof(key, "get", "https://api.example/v1/items?page=2#x", access_token="token-1", nonce="n-1")
    token = jwt.JWT(jwt=proof, key=jwk.JWK(**key.export_public(as_dict=True)))
    header, claims = json.loads(token.header), json.loads(token.claims)
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256" and "d" not in header["jwk"]
    assert claims["htm"] == "GET" and claims["htu"] == "https://api.example/v1/items"
    assert claims["ath"] == dpop.access_token_hash("token-1") and claims["nonce"] == "n-1"
    assert claims["jti"] and isinstance(claims["iat"], int)


# --- secrets never leak: the private key, DPoP keys, assertions and proofs too ----------------------------------


def test_no_key_assertion_proof_or_token_leaks(fapi_site: Site, debug_logs, monkeypatch, admin_client):  # noqa: F811
    """test_secrets.py's search, for a private_key_jwt + PAR + DPoP session: the client's private key, every
    session's DPoP private key, every client assertion and DPoP proof the site made, and every token, looked for in
    the site's logs (DEBUG, every logger), responses, cookies, visited URLs, database and admin pages."""
    made: dict[str, set[str]] = {"assertion": set(), "proof": set()}
    real_assertion, real_proof = client_auth.PrivateKeyJWT.assertion, dpop.proof

    def recording_assertion(self, now=None):  # type: ignore[no-untyped-def]
        made["assertion"].add(value := real_assertion(self, now))
        return value

    def recording_proof(*args, **kwargs):  # type: ignore[no-untyped-def]
        made["proof"].add(value := real_proof(*args, **kwargs))
        return value

    monkeypatch.setattr(client_auth.PrivateKeyJWT, "assertion", recording_assertion)
    monkeypatch.setattr(dpop, "proof", recording_proof)
    browser = Browser()
    seen: list[requests.Response] = []
    browser.hooks["response"].append(lambda r, *args, **kwargs: seen.append(r))
    tokens: set[str] = set()
    resp = browser.sign_in(fapi_site.url, fapi_site.provider.username, fapi_site.provider.password, "/account/")
    assert resp.status_code == 200
    record = active_record()
    dpop_key = record.dpop_key
    tokens |= {record.access_token, record.refresh_token}
    expire_tokens()
    assert browser.get(fapi_site.url + "/account/sensitive/").status_code == 200
    record.refresh_from_db()
    tokens |= {record.access_token, record.refresh_token}
    database = dump_site_database()
    admin_page = admin_client.get(f"/admin/oauth_client/oauthsession/{record.pk}/change/")
    assert admin_page.status_code == 200
    assert re.search(r"Token type.*?DPoP", admin_page.content.decode(), re.DOTALL)  # shown: the binding, not the key
    sign_out(fapi_site, browser)

    client_key = keys.load(settings_key_file(fapi_site)).key
    secrets_by_kind = {
        "client private key": {client_key.get("d")},
        "client private key (PEM)": {
            line
            for line in client_key.export_to_pem(private_key=True, password=None).decode().splitlines()
            if "PRIVATE KEY" not in line
        },
        "DPoP private key": {json.loads(dpop_key)["d"]},
        "client assertion": made["assertion"],
        "DPoP proof": made["proof"],
        "token": tokens,
    }
    assert len(made["assertion"]) >= 4 and len(made["proof"]) >= 4  # PAR, code, refresh, revocation; with nonces
    needles = [(kind, form) for kind, values in secrets_by_kind.items() for v in values for form in secret_forms(v)]

    def leaks(text: str) -> list[str]:
        return sorted({kind for kind, form in needles if form in text})

    for r in debug_logs.records:
        text = Capture.render(r)
        assert not leaks(text), f"{leaks(text)} in a log record of {r.name}: {text[:300]}"
    for r in seen:
        assert not leaks(r.text), f"{leaks(r.text)} in {r.request.method} {r.url}"
        assert not leaks(str(dict(r.headers))), r.url
        assert not leaks(r.url) and not leaks(str(r.request.url)), r.url
    for cookie in browser.cookies:
        assert not leaks(f"{cookie.name}={cookie.value}"), cookie.name
    assert "gAAAA" in database and not leaks(database), leaks(database)
    assert not leaks(admin_page.content.decode()), "admin page"


def settings_key_file(site: Site) -> str:
    from django.conf import settings

    return str(settings.OAUTH_CLIENT["CLIENT_KEY_FILE"])


# --- the operator's tools: oidc_doctor, oidc_client_key, system checks --------------------------------------------


def test_the_doctor_checks_the_key_par_and_dpop_and_shows_no_secret(fapi_site: Site, settings):
    settings.DEBUG = True  # as under `make run`: loopback http is fine
    out, err = io.StringIO(), io.StringIO()
    with contextlib.suppress(CommandError):  # exit status 1 on a failure: the report says which
        call_command("oidc_doctor", "--json", "--site-url", fapi_site.url, stdout=out, stderr=err)
    report = json.loads(out.getvalue())
    by_name = {c["name"]: c for c in report["checks"]}
    assert report["ok"], [c for c in report["checks"] if c["status"] == "fail"]
    for name in ("auth_method", "client_key", "client_auth", "par", "dpop"):
        assert by_name[name]["status"] == "ok", by_name[name]
    key = keys.load(settings.OAUTH_CLIENT["CLIENT_KEY_FILE"])
    assert key.kid in by_name["client_key"]["message"] and "ES256" in by_name["client_key"]["message"]
    # The probe authenticated with an assertion: the provider accepted it and refused the made-up grant.
    assert fapi_site.provider.errors().get("grant.error invalid_grant") == 1
    refresh = report["curl"]["refresh"]
    assert '"client_assertion=$(python manage.py oidc_client_key --assertion)"' in refresh
    assert "client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer" in refresh
    assert key.key.get("d") not in out.getvalue() + err.getvalue()


def test_the_key_command_prints_assertions_and_public_keys(fapi_site: Site, settings, tmp_path: Path):
    out = io.StringIO()
    call_command("oidc_client_key", assertion=True, stdout=out)
    key = keys.load(settings.OAUTH_CLIENT["CLIENT_KEY_FILE"])
    claims = json.loads(jwt.JWT(jwt=out.getvalue().strip(), key=key.key).claims)
    assert claims["iss"] == claims["sub"] == fapi_site.client_id and claims["aud"] == fapi_site.provider.issuer

    shown = io.StringIO()
    call_command("oidc_client_key", show=True, stdout=shown)
    assert json.loads(shown.getvalue()) == {"keys": [key.public_jwk()]}

    existing = settings.OAUTH_CLIENT["CLIENT_KEY_FILE"]
    with pytest.raises(CommandError, match="never overwritten"):
        call_command("oidc_client_key", out=existing, stdout=io.StringIO(), stderr=io.StringIO())
    made = make_key(tmp_path, "mode.pem")
    assert made.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"TOKEN_AUTH_METHOD": "private_key_jwt"}, {"oauth_client.E021"}),
        ({"TOKEN_AUTH_METHOD": "private_key_jwt", "CLIENT_KEY_FILE": "/nonexistent/key.pem"}, {"oauth_client.E021"}),
        ({"CLIENT_SECRET": "s" * 32, "CLIENT_KEY_FILE_NEXT": __file__}, {"oauth_client.E021"}),
        ({"CLIENT_SECRET": "s" * 32, "PAR": "always"}, {"oauth_client.E022"}),
        ({"CLIENT_SECRET": "s" * 32, "DPOP": "yes"}, {"oauth_client.E022"}),
        ({"CLIENT_SECRET": "s" * 32, "TOKEN_AUTH_METHOD": "tls_client_auth"}, {"oauth_client.E008"}),
        ({"CLIENT_KEY_FILE": "EC_KEY", "CLIENT_KEY_ALGORITHM": "RS256"}, {"oauth_client.E021"}),
        (
            {
                "CLIENT_KEY_FILE": "EC_KEY",
                "CLIENT_KEY_ID": "k1",
                "CLIENT_KEY_FILE_NEXT": "RSA_KEY",
                "CLIENT_KEY_ID_NEXT": "k1",
            },
            {"oauth_client.E023"},
        ),
    ],
)
def test_settings_that_cannot_work_are_system_check_errors(settings, tmp_path, overrides, expected):
    from django.core.checks import run_checks

    files = {"EC_KEY": str(make_key(tmp_path, "ec.pem")), "RSA_KEY": str(make_key(tmp_path, "rsa.pem", kind="rsa"))}
    overrides = {k: files.get(v, v) if isinstance(v, str) else v for k, v in overrides.items()}
    settings.OAUTH_CLIENT = {"ISSUER": "https://op.example", "CLIENT_ID": "site", **overrides}
    found = {
        m.id for m in run_checks(tags=["oauth_client"]) if m.id in {*expected, "oauth_client.W003", "oauth_client.E021"}
    }
    # No client secret is asked for when the client authenticates with a key.
    assert found == expected


def test_a_key_and_no_secret_is_a_complete_configuration(settings, tmp_path: Path):
    from django.core.checks import run_checks

    key = make_key(tmp_path)
    settings.OAUTH_CLIENT = {
        "ISSUER": "https://op.example",
        "CLIENT_ID": "site",
        "TOKEN_AUTH_METHOD": "private_key_jwt",
        "CLIENT_KEY_FILE": str(key),
        "PAR": "on",
        "DPOP": "on",
    }
    ids = {m.id for m in run_checks(tags=["oauth_client"], include_deployment_checks=True)}
    assert not ids & {"oauth_client.W003", "oauth_client.E020", "oauth_client.E021", "oauth_client.E022"}


# --- review follow-ups: what else must hold --------------------------------------------------------------------------


def test_nonce_challenges_are_answered_without_a_working_cache(fapi_site: Site, settings):
    """The cache only saves the next request a challenge; a challenge's own nonce is used for its retry."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    op = fapi_site.provider
    assert isinstance(op, NodeProvider)
    browser = fapi_site.signed_in_browser()
    expire_tokens()
    assert browser.get(fapi_site.url + "/account/sensitive/").status_code == 200
    profile = browser.get(fapi_site.url + "/account/")
    assert profile.status_code == 200 and op.account_email in profile.text
    assert browser.get(fapi_site.url + "/account/userinfo.json").json()["email"] == op.account_email
    counts = op.counts(fapi_site.client_id)
    assert counts["authorization_code_grants"] == 1 and counts["refresh_grants"] == 1
    assert op.errors().get("grant.error use_dpop_nonce", 0) >= 2  # every token call was challenged, and answered


@pytest.mark.parametrize(("registered", "configured"), [("PS256", ""), ("RS256", "RS256")])
def test_an_rsa_key_signs_what_the_registration_asks(
    live_server, strict_op: NodeProvider, settings, tmp_path: Path, registered: str, configured: str
):
    """An RSA key signs PS256 where the provider takes it (FAPI 2.0), or the algorithm CLIENT_KEY_ALGORITHM names
    for a client registered with another (token_endpoint_auth_signing_alg)."""
    key = make_key(tmp_path, kind="rsa")
    client_id = register(
        strict_op,
        live_server.url,
        jwks_uri=f"{live_server.url}/oauth/jwks.json",
        token_endpoint_auth_signing_alg=registered,
    )
    strict_op.reset_counts()
    settings.OAUTH_CLIENT = fapi_settings(strict_op, client_id, key, CLIENT_KEY_ALGORITHM=configured)
    cache.clear()
    site = Site(url=live_server.url, provider=strict_op, client_id=client_id)
    browser = site.signed_in_browser()
    expire_tokens()
    assert browser.get(site.url + "/account/sensitive/").status_code == 200
    assert strict_op.counts(client_id)["private_key_jwt_grants"] == 2
    assert not [k for k in strict_op.errors() if "invalid_client" in k]


def test_the_authorization_code_is_bound_to_the_sessions_key(fapi_site: Site, monkeypatch):
    """dpop_jkt (RFC 9449 §10) reaches the provider: a code exchanged with another key than the one named at the
    authorization request is refused (fault injection: the request names a key the site does not hold)."""
    op = fapi_site.provider
    assert isinstance(op, NodeProvider)
    other = dpop.new_key()
    monkeypatch.setattr(dpop, "thumbprint", lambda key: dpop.load_key(other).thumbprint())
    resp = fapi_site.browser().sign_in(fapi_site.url, op.username, op.password)
    assert resp.status_code == 400 and "Sign-in failed" in resp.text
    assert op.errors().get("grant.error invalid_grant") == 1
    assert op.counts(fapi_site.client_id)["authorization_code_grants"] == 0
    assert OAuthSession.objects.count() == 0


def test_a_bearer_answer_is_refused_when_dpop_is_on(site, settings):
    """The embedded provider ignores DPoP and issues Bearer tokens; with DPOP on, the site discards that answer
    (RFC 9449 §5) and says sign-in failed, rather than silently running without the binding it was asked for."""
    settings.OAUTH_CLIENT = {**settings.OAUTH_CLIENT, "DPOP": "on"}
    resp = site.browser().sign_in(site.url, site.provider.username, site.provider.password)
    assert resp.status_code == 400 and "Sign-in failed" in resp.text
    assert OAuthSession.objects.count() == 0


def test_a_dpop_proof_is_made_anew_for_a_same_host_redirect_and_dropped_for_another_host(fapi_site: Site):
    """api_session: requests keeps headers on a same-host redirect and drops Authorization on another host. A DPoP
    proof is for one method and URL, and single-use: made anew for the new URL, or dropped with the token."""
    from oauth_client import api_session
    from tests.stub_server import Answer, StubServer
    from tests.test_api import request_for

    browser = fapi_site.signed_in_browser()
    with StubServer() as other, StubServer() as api:
        api.routes["/moved"] = Answer(307, "", {"Location": api.url + "/here"})
        api.routes["/here"] = Answer(200, {"ok": True})
        api.routes["/away"] = Answer(302, "", {"Location": other.url + "/landing"})
        other.routes["/landing"] = Answer(200, {"ok": True})
        session = api_session(request_for(browser))  # type: ignore[arg-type]
        assert session.get(api.url + "/moved").status_code == 200
        assert session.get(api.url + "/away").status_code == 200
        (moved,), (here,) = api.requests_to("/moved"), api.requests_to("/here")
        (landed,) = other.requests_to("/landing")
    first, second = (json.loads(jwt.JWT(jwt=r.headers["DPoP"]).token.objects["payload"]) for r in (moved, here))
    assert first["htu"] == api.url + "/moved" and second["htu"] == api.url + "/here"
    assert first["jti"] != second["jti"] and here.headers["Authorization"].startswith("DPoP ")
    assert "Authorization" not in landed.headers and "DPoP" not in landed.headers


def test_par_with_client_secret_post_sends_client_id_once(live_server, node_provider: NodeProvider, settings):
    """A pushed request carries client_id as a parameter of its own; client_secret_post must not add a second one
    (the provider refuses a repeated parameter)."""
    client_id, secret = f"post-{secrets.token_hex(6)}", secrets.token_urlsafe(32)
    node_provider.register_client(
        client_id,
        secret,
        redirect_uris=[f"{live_server.url}/oauth/callback/"],
        token_endpoint_auth_method="client_secret_post",
    )
    node_provider.reset_counts()
    settings.OAUTH_CLIENT = node_client_settings(node_provider, client_id, secret)
    cache.clear()
    site = Site(url=live_server.url, provider=node_provider, client_id=client_id, client_secret=secret)
    site.signed_in_browser()
    counts = node_provider.counts(client_id)
    assert counts["pushed_authorization_requests"] == 1 and counts["authorization_code_grants"] == 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"', True),
        ('Bearer realm="api", DPoP algs="ES256 PS256", error="use_dpop_nonce"', True),  # RFC 9449 §7.2: both schemes
        ('DPoP realm="a, b", error="use_dpop_nonce"', True),
        ('Bearer error="use_dpop_nonce"', False),  # a Bearer challenge cannot ask for a DPoP nonce
        ('DPoP error_description="not error=use_dpop_nonce", error="invalid_token"', False),
        ('DPoP error="invalid_token"', False),
        ("", False),
    ],
)
def test_nonce_challenges_are_read_per_scheme(header, expected):
    assert dpop.is_nonce_challenge(401, {"WWW-Authenticate": header}) is expected


def test_turning_dpop_on_binds_existing_sessions_at_their_next_refresh(node_site: Site, settings):
    """A confidential client's refresh token is not bound (RFC 9449 §5): a session signed in with Bearer tokens gets
    a key at its next refresh, and the provider binds the new access token to it."""
    op = node_site.provider
    assert isinstance(op, NodeProvider)
    browser = node_site.signed_in_browser()
    assert active_record().token_type == "Bearer" and active_record().dpop_key == ""
    settings.OAUTH_CLIENT = {**settings.OAUTH_CLIENT, "DPOP": "on"}
    expire_tokens()
    profile = browser.get(node_site.url + "/account/")
    assert profile.status_code == 200 and op.account_email in profile.text  # userinfo with the bound token
    record = active_record()
    assert record.token_type == "DPoP" and record.refresh_count == 1
    assert op.bound_keys(node_site.client_id) == [dpop.thumbprint(record.dpop_key)]


def test_a_bearer_answer_to_a_dpop_refresh_ends_the_session_and_revokes_it(site, settings):
    """The embedded provider ignores proofs: with DPOP turned on after sign-in, the refresh (with a proof, a new key)
    gets a Bearer answer. The site refuses it (RFC 9449 §5), ends the session, and revokes the refresh token that
    answer carried, so nothing it held stays alive."""
    browser = site.signed_in_browser()
    settings.OAUTH_CLIENT = {**settings.OAUTH_CLIENT, "DPOP": "on"}
    before = {row["token"] for row in site.provider.refresh_token_rows()}
    expire_tokens()
    resp = browser.get(site.url + "/account/", allow_redirects=False)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/oauth/login/")
    record = OAuthSession.objects.get()
    assert record.ended_reason == OAuthSession.EndReason.REFRESH_REJECTED
    (issued,) = [row["token"] for row in site.provider.refresh_token_rows() if row["token"] not in before]
    assert site.provider.is_refresh_token_revoked(issued)


def test_an_rsa_key_signs_rs256_where_the_provider_advertises_nothing(tmp_path: Path):
    key = keys.load(str(make_key(tmp_path, kind="rsa")))
    assert key.algorithm(None) == "RS256"
    assert key.algorithm(["RS256", "PS256"]) == "PS256"
    assert key.algorithm(["RS256", "ES256"]) == "RS256"
    assert key.algorithm(["PS256"], "RS256") == "RS256"  # CLIENT_KEY_ALGORITHM wins: the registration pins it
    with pytest.raises(Exception, match="cannot sign"):
        keys.load(str(make_key(tmp_path, "ec.pem"))).algorithm(None, "RS256")


def test_the_async_client_makes_a_proof_per_hop_and_none_for_another_origin(monkeypatch):
    """httpx keeps headers on a same-origin redirect and drops Authorization (only) on another origin: the request
    hook makes a new proof for each same-origin hop, and drops the proof with the token."""
    from types import SimpleNamespace

    import httpx
    from asgiref.sync import async_to_sync

    from oauth_client import api

    record = SimpleNamespace(access_token="T1", token_type="DPoP", dpop_key=dpop.new_key())

    async def fresh(request):  # type: ignore[no-untyped-def]
        return record

    monkeypatch.setattr(api, "_afresh_record", fresh)
    seen: list[tuple[str, str, str | None, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        proof = request.headers.get("DPoP")
        claims = dpop.proof_claims(proof) if proof else {}
        seen.append((request.url.host + request.url.path, request.method, claims.get("htu"), claims.get("jti")))
        if request.url.path == "/moved":
            return httpx.Response(307, headers={"Location": "https://api.example/here"})
        if request.url.path == "/away":
            return httpx.Response(302, headers={"Location": "https://elsewhere.example/landing"})
        return httpx.Response(200)

    async def call() -> None:
        auth = api.AsyncBearerAuth(object())  # type: ignore[arg-type]
        hooks = {"request": [auth.check_proof]}
        transport = httpx.MockTransport(handler)
        async with httpx.AsyncClient(auth=auth, transport=transport, event_hooks=hooks) as client:
            assert (await client.get("https://api.example/moved", follow_redirects=True)).status_code == 200
            assert (await client.get("https://api.example/away", follow_redirects=True)).status_code == 200

    async_to_sync(call)()
    moved, here, away, landing = seen
    assert moved[2] == "https://api.example/moved" and here[2] == "https://api.example/here"
    assert moved[3] != here[3]
    assert away[2] == "https://api.example/away" and landing == ("elsewhere.example/landing", "GET", None, None)


def test_an_unfollowed_redirect_makes_no_proof_and_no_refresh(fapi_site: Site):
    """requests also prepares the next hop of a redirect it does not follow (Response.next): no proof is made for it
    (and no token read or refreshed) until it is sent."""
    from oauth_client import api_session
    from tests.stub_server import Answer, StubServer
    from tests.test_api import request_for

    browser = fapi_site.signed_in_browser()
    made: list[str] = []
    real = dpop.proof
    with StubServer() as api:
        api.routes["/moved"] = Answer(302, "", {"Location": api.url + "/here"})
        session = api_session(request_for(browser))  # type: ignore[arg-type]
        try:
            dpop.proof = lambda *a, **k: made.append("proof") or real(*a, **k)  # type: ignore[assignment]
            response = session.get(api.url + "/moved", allow_redirects=False)
        finally:
            dpop.proof = real  # type: ignore[assignment]
        assert response.status_code == 302 and len(api.seen) == 1
    assert made == ["proof"]  # the one for the request that was sent
    assert response.next is not None and "DPoP" not in response.next.headers
