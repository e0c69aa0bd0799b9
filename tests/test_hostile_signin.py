"""Adversarial sign-in: a hostile provider (tests/hostile.py) misbehaves in one way per test, modelled on the
OpenID Foundation's RP certification cases. Each must end on a clear 4xx page with nobody signed in; the same
provider behaving correctly signs the person in, so every refusal is for the one thing that was broken."""

from __future__ import annotations

import json
import time

import pytest
from django.contrib.auth import get_user_model
from jwcrypto import jwk

from oauth_client.models import OAuthIdentity, OAuthSession
from tests.browser import Browser
from tests.hostile import OMIT, HostileProvider, Reply, hs256_with_public_key, json_b64, new_key, sign, unsigned

pytestmark = pytest.mark.django_db(transaction=True)

MB = 1024 * 1024


def assert_signed_in(site, resp) -> None:
    assert resp.status_code == 200, resp.text[:500]
    assert resp.url == site.url + "/account/"
    record = OAuthSession.objects.get()
    assert record.is_active and record.subject == site.op.subject and record.issuer == site.op.issuer


def assert_refused(site, resp, status: int = 400, title: str = "Sign-in failed") -> None:
    assert resp.status_code == status, resp.text[:500]
    assert title in resp.text
    assert "Traceback" not in resp.text
    # Nobody signed in, nothing created.
    assert not OAuthSession.objects.exists()
    assert not OAuthIdentity.objects.exists()
    assert not get_user_model().objects.exists()


def assert_not_signed_in(site, browser: Browser) -> None:
    resp = browser.get(site.url + "/account/", allow_redirects=False)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/oauth/login/")


# -- the provider behaving: the control case and the variants a correct client must accept ---------------


def _es256(op: HostileProvider) -> None:
    op.rotate_signing_key(kty="EC")


def _no_kid_single_key(op: HostileProvider) -> None:
    op.id_token_forger = lambda claims: sign(claims, op.signing_key, header={"alg": "RS256"})


def _lowercase_bearer(op: HostileProvider) -> None:
    op.token_reply = lambda body: Reply(200, {**body, "token_type": "bearer"})


def _several_audiences_with_azp(op: HostileProvider) -> None:
    op.id_token_claims = {"aud": [op.client_id, "https://api.example"], "azp": op.client_id}


def _expires_in_as_string(op: HostileProvider) -> None:
    op.token_reply = lambda body: Reply(200, {**body, "expires_in": "300"})


def _no_refresh_token(op: HostileProvider) -> None:
    op.token_reply = lambda body: Reply(200, {k: v for k, v in body.items() if k != "refresh_token"})


def _refresh_expires_in(value):
    # Advisory: a value we cannot use is ignored, not fatal.
    return lambda op: setattr(op, "token_reply", lambda body: Reply(200, {**body, "refresh_expires_in": value}))


def _iss_not_advertised_nor_sent(op: HostileProvider) -> None:
    op.advertise_iss = False


def _rotated_key_still_published(op: HostileProvider) -> None:
    op.rotate_signing_key(keep_old=True)


ACCEPTED = {
    "correct provider": lambda op: None,
    "ES256 signing key": _es256,
    "no kid, one key": _no_kid_single_key,
    "token_type bearer in lower case": _lowercase_bearer,
    "several audiences, azp is us": _several_audiences_with_azp,
    "expires_in as a string": _expires_in_as_string,
    "no refresh token": _no_refresh_token,
    "iss neither advertised nor sent": _iss_not_advertised_nor_sent,
    "refresh_expires_in a superscript digit": _refresh_expires_in("²"),
    "refresh_expires_in beyond year 9999": _refresh_expires_in(10**12),
    "refresh_expires_in negative": _refresh_expires_in(-1),
    "two published keys, kid names one": _rotated_key_still_published,
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_correct_variants_sign_in(hostile_site, case):
    ACCEPTED[case](hostile_site.op)
    assert_signed_in(hostile_site, hostile_site.sign_in(next_url="/account/"))


# -- ID token attacks ----------------------------------------------------------------------------------


def _unknown_key_same_kid(op: HostileProvider) -> None:
    rogue = new_key("RSA", kid=op.signing_key.get("kid"))
    op.id_token_forger = lambda claims: sign(claims, rogue)


def _unknown_key_unknown_kid(op: HostileProvider) -> None:
    rogue = new_key("RSA")
    op.id_token_forger = lambda claims: sign(claims, rogue)


def _alg_none(op: HostileProvider) -> None:
    op.id_token_forger = lambda claims: unsigned(claims, op.signing_key.get("kid"))


def _alg_none_without_kid(op: HostileProvider) -> None:
    op.id_token_forger = lambda claims: unsigned(claims)


def _hs256_with_public_key(op: HostileProvider) -> None:
    op.id_token_forger = lambda claims: hs256_with_public_key(claims, op.signing_key)


def _hs256_with_published_symmetric_key(op: HostileProvider) -> None:
    # Even a provider that publishes a symmetric key cannot get HS256 accepted.
    oct_key = jwk.JWK.generate(kty="oct", size=256, kid="shared")
    op.jwks_extra = [oct_key.export(private_key=True, as_dict=True)]
    op.id_token_forger = lambda claims: sign(claims, oct_key, alg="HS256")


def _no_kid_several_keys(op: HostileProvider) -> None:
    op.rotate_signing_key(keep_old=True)
    op.id_token_forger = lambda claims: sign(claims, op.signing_key, header={"alg": "RS256"})


def _alg_differs_from_key(op: HostileProvider) -> None:
    # Header says PS256, the signature is RS256.
    def forge(claims):
        token = sign(claims, op.signing_key, alg="RS256")
        header = json_b64({"alg": "PS256", "kid": op.signing_key.get("kid")})
        return header + token[token.index(".") :]

    op.id_token_forger = forge


def _typed_as_logout_token(op: HostileProvider) -> None:
    # Cross-JWT confusion (Back-Channel Logout 1.0 §4.1): a logout token can never serve as an ID token.
    op.id_token_forger = lambda claims: sign(
        claims, op.signing_key, header={"alg": "RS256", "kid": op.signing_key.get("kid"), "typ": "logout+jwt"}
    )


def _subject(value):
    # The provider's subject itself (ID token and userinfo agree on it).
    return lambda op: setattr(op, "subject", value)


def _deeply_nested_claim(op: HostileProvider) -> None:
    def forge(claims):
        payload = json.dumps(claims)[:-1] + ', "deep": ' + "[" * 20_000 + "]" * 20_000 + "}"
        return sign(payload.encode(), op.signing_key)

    op.id_token_forger = forge


def _claims(**changes):
    return lambda op: setattr(op, "id_token_claims", changes)


def _claims_fn(fn):
    return lambda op: setattr(op, "id_token_claims", fn(op))


now = lambda: int(time.time())  # noqa: E731

REFUSED_ID_TOKENS = {
    "signed with an unknown key (published kid)": _unknown_key_same_kid,
    "signed with an unknown key (unknown kid)": _unknown_key_unknown_kid,
    "alg none": _alg_none,
    "alg none without kid": _alg_none_without_kid,
    "HS256 signed with the public key": _hs256_with_public_key,
    "HS256 with a published symmetric key": _hs256_with_published_symmetric_key,
    "kid absent, several keys": _no_kid_several_keys,
    "alg header differs from the signature": _alg_differs_from_key,
    "typed logout+jwt": _typed_as_logout_token,
    "wrong iss": _claims(iss="https://evil.example"),
    "iss with a trailing path": _claims_fn(lambda op: {"iss": op.issuer + "/other"}),
    "wrong aud": _claims(aud="someone-else"),
    "aud missing": _claims(aud=OMIT),
    "several audiences, no azp": _claims_fn(lambda op: {"aud": [op.client_id, "other"]}),
    "several audiences, wrong azp": _claims_fn(lambda op: {"aud": [op.client_id, "other"], "azp": "other"}),
    "one audience, wrong azp": _claims(azp="other"),
    "azp null": _claims(azp=None),
    "several audiences, azp null": _claims_fn(lambda op: {"aud": [op.client_id, "other"], "azp": None}),
    "nonce missing": _claims(nonce=OMIT),
    "nonce wrong": _claims(nonce="not-the-nonce"),
    "exp in the past": _claims_fn(lambda op: {"exp": now() - 3600, "iat": now() - 7200}),
    "exp missing": _claims(exp=OMIT),
    "exp null": _claims(exp=None),
    "exp is a string": _claims(exp="tomorrow"),
    "iat far in the future": _claims_fn(lambda op: {"iat": now() + 3600, "exp": now() + 7200}),
    "iat missing": _claims(iat=OMIT),
    "sub missing": _claims(sub=OMIT),
    "sub empty": _claims(sub=""),
    "sub not a string": _claims(sub=12345),
    # Signed by the provider but unusable: these used to end in a 500 (year out of range, PostgreSQL
    # refusing NUL characters, lone surrogates that cannot be encoded).
    "exp beyond year 9999": _claims_fn(lambda op: {"exp": 10**12}),
    "exp NaN": _claims(exp=float("nan")),
    "iat NaN": _claims(iat=float("nan")),
    "exp infinite": _claims(exp=float("inf")),
    "NUL character in sub": _subject("alice\x00admin"),
    "NUL character in a claim": _claims(name="Alice\x00"),
    "lone surrogate in nonce": _claims(nonce="\ud800"),
    "lone surrogate in sub": _subject("\udfff"),
    "claims nested too deeply": _deeply_nested_claim,
}


@pytest.mark.parametrize("case", list(REFUSED_ID_TOKENS))
def test_bad_id_token_is_refused(hostile_site, case):
    REFUSED_ID_TOKENS[case](hostile_site.op)
    browser = Browser()
    resp = hostile_site.sign_in(browser)
    assert resp.url.startswith(hostile_site.url + "/oauth/callback/")
    assert_refused(hostile_site, resp)
    assert_not_signed_in(hostile_site, browser)


def test_unknown_kid_refetches_the_jwks_once(hostile_site):
    _unknown_key_unknown_kid(hostile_site.op)
    assert_refused(hostile_site, hostile_site.sign_in())
    assert hostile_site.op.hits["/jwks"] == 2  # the cached set, then one refetch for the unknown kid


# -- userinfo ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "userinfo",
    [{"sub": "mallory-0666"}, {"sub": OMIT}, {"sub": ""}, {"sub": 1}],
    ids=["other sub", "no sub", "empty sub", "sub not a string"],
)
def test_userinfo_for_another_subject_is_refused(hostile_site, userinfo):
    hostile_site.op.userinfo_claims = userinfo
    assert_refused(hostile_site, hostile_site.sign_in())


@pytest.mark.parametrize(
    ("userinfo", "displayable"),
    [
        ({"nickname": "x\x00y"}, True),
        ({"score": float("nan")}, True),
        ({"nickname": "\ud800"}, False),
        ({"deep": "DEEP"}, False),
    ],
    ids=["NUL", "NaN", "surrogate", "nested too deeply"],
)
def test_unusable_userinfo_is_ignored(hostile_site, userinfo, displayable):
    """Userinfo only adds claims: an answer that cannot be stored is dropped, the ID token alone signs in. The
    profile page asks the userinfo endpoint again to show it: what cannot be shown (lone surrogates, absurd
    nesting) is reported as unusable there, never a 500."""
    hostile_site.op.userinfo_claims = userinfo
    resp = hostile_site.sign_in(next_url="/account/")
    assert_signed_in(hostile_site, resp)
    assert OAuthSession.objects.get().userinfo == {}
    assert ("did not answer with JSON" in resp.text) is not displayable


# -- token response ------------------------------------------------------------------------------------


def _body(**changes):
    def reply(body):
        new = {**body, **changes}
        return Reply(200, {k: v for k, v in new.items() if v is not OMIT}, {"Content-Type": "application/json"})

    return lambda op: setattr(op, "token_reply", reply)


def _raw(status: int, body: bytes, content_type: str = "application/json", **kwargs):
    return lambda op: setattr(
        op, "token_reply", lambda _: Reply(status, body, {"Content-Type": content_type}, **kwargs)
    )


def _padded(chunked: bool):
    def reply(body):
        return Reply(200, {**body, "padding": "x" * MB}, {"Content-Type": "application/json"}, chunked=chunked)

    return lambda op: setattr(op, "token_reply", reply)


REFUSED_TOKEN_RESPONSES = {
    "token_type missing": _body(token_type=OMIT),
    "token_type MAC": _body(token_type="mac"),
    "token_type DPoP": _body(token_type="DPoP"),
    "token_type not a string": _body(token_type=["Bearer"]),
    "access_token missing": _body(access_token=OMIT),
    "id_token missing": _body(id_token=OMIT),
    "id_token not a string": _body(id_token={"alg": "none"}),
    "expires_in negative": _body(expires_in=-5),
    "expires_in not a number": _body(expires_in="soon"),
    "expires_in beyond year 9999": _body(expires_in=10**12),
    "JSON nested too deeply": _raw(200, b"[" * 200_000 + b"]" * 200_000),
    "scope with a NUL character": _body(scope="openid\x00admin"),
    "NaN in the response": _body(expires_in=float("nan")),
    "not JSON (HTML)": _raw(200, b"<html><body>Welcome!</body></html>", "text/html"),
    "JSON array": _raw(200, b"[1, 2, 3]"),
    "JSON string": _raw(200, b'"token"'),
    "empty body": _raw(200, b""),
    "error JSON, HTTP 400": _raw(400, b'{"error": "invalid_request", "error_description": "nope"}'),
    "error JSON, HTTP 401": _raw(401, b'{"error": "invalid_client"}'),
    "error JSON, HTTP 200": _raw(200, b'{"error": "access_denied"}'),
    "HTTP 400 without JSON": _raw(400, b"Bad Request", "text/plain"),
    "HTTP 302": _raw(302, b"", "text/plain"),
    "1 MB response": _padded(chunked=False),
    "1 MB response without Content-Length": _padded(chunked=True),
}


@pytest.mark.parametrize("case", list(REFUSED_TOKEN_RESPONSES))
def test_bad_token_response_is_refused(hostile_site, case):
    REFUSED_TOKEN_RESPONSES[case](hostile_site.op)
    started = time.monotonic()
    resp = hostile_site.sign_in()
    assert time.monotonic() - started < 10
    assert_refused(hostile_site, resp)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_token_endpoint_down_is_a_503_not_a_500(hostile_site, status):
    hostile_site.op.token_outage = Reply(status, b"Unavailable", {"Content-Type": "text/plain"})
    resp = hostile_site.sign_in()
    assert_refused(hostile_site, resp, status=503)
    assert "cannot be reached" in resp.text


@pytest.mark.parametrize("endpoint", ["token", "jwks"])
def test_hanging_provider_is_a_503_in_bounded_time(hostile_site, endpoint):
    """Read timeout 2 s, retry budget 3 s (hostile settings): the code exchange is not retried (a code is
    single-use), the JWKS fetch is, within the budget; either way the person gets an answer in seconds."""
    setattr(hostile_site.op, f"{endpoint}_delay", 8.0)
    started = time.monotonic()
    resp = hostile_site.sign_in()
    elapsed = time.monotonic() - started
    assert_refused(hostile_site, resp, status=503)
    assert elapsed < 7  # the 3 s budget plus slack for a busy machine; waiting for the provider takes 8 s+
    if endpoint == "token":
        assert hostile_site.op.grants == ["authorization_code"]


def test_token_endpoint_failing_after_using_the_code_is_refused(hostile_site):
    """The provider spent the code, then answered 500: whatever the retry meets, a clear page, never a 500."""
    hostile_site.op.token_reply = lambda body: Reply(500, b"Internal Server Error", {"Content-Type": "text/plain"})
    resp = hostile_site.sign_in()
    assert resp.status_code in (400, 503)
    assert_refused(hostile_site, resp, status=resp.status_code)


def test_no_supported_client_authentication_is_a_503_not_a_500(hostile_site):
    """A provider that only takes private_key_jwt: a configuration problem, shown as such, never a 500."""
    hostile_site.op.discovery_overrides = {"token_endpoint_auth_methods_supported": ["private_key_jwt"]}
    resp = hostile_site.sign_in()
    assert_refused(hostile_site, resp, status=503, title="Sign-in is unavailable")
    assert hostile_site.op.grants == []  # the code was never sent


# -- authorization response ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        "access_denied",
        "login_required",
        "consent_required",
        "interaction_required",
        "server_error",
        "temporarily_unavailable",
        "invalid_scope",
        "unauthorized_client",
        "invalid_request_uri",
        "something_new",
    ],
)
def test_authorization_error_responses(hostile_site, error):
    hostile_site.op.authorize_params = {"error": error, "error_description": "Provider says no", "code": OMIT}
    resp = hostile_site.sign_in()
    assert_refused(hostile_site, resp)
    assert error in resp.text
    assert hostile_site.op.grants == []


def test_authorization_error_with_a_code_is_still_an_error(hostile_site):
    hostile_site.op.authorize_params = {"error": "access_denied"}
    assert_refused(hostile_site, hostile_site.sign_in())
    assert hostile_site.op.grants == []


def test_authorization_error_for_another_browser_does_not_echo_provider_text(hostile_site):
    """An error response that answers no sign-in of this browser (forged link, phishing text): refused, and the
    attacker's error text is not shown on the site."""
    browser = Browser()
    browser.get(hostile_site.url + "/oauth/login/", allow_redirects=False)
    resp = browser.get(
        hostile_site.url + "/oauth/callback/",
        params={
            "error": "access_denied",
            "error_description": "Your account is locked: call +1 555 0100",
            "state": "x",
        },
    )
    assert_refused(hostile_site, resp)
    assert "invalid, expired or was already used" in resp.text
    assert "call +1 555 0100" not in resp.text and "Provider error code" not in resp.text
    resp = browser.get(hostile_site.url + "/oauth/callback/", params={"error": "please_call_us"})
    assert_refused(hostile_site, resp)
    assert "Provider error code" not in resp.text and "<code>please_call_us" not in resp.text


@pytest.mark.parametrize(
    ("advertised", "iss"),
    [(True, "https://evil.example"), (True, OMIT), (True, ""), (False, "https://evil.example")],
    ids=["advertised, wrong", "advertised, missing", "advertised, empty", "not advertised, wrong"],
)
def test_rfc9207_iss_parameter(hostile_site, advertised, iss):
    hostile_site.op.advertise_iss = advertised
    hostile_site.op.authorize_params = {"iss": iss}
    assert_refused(hostile_site, hostile_site.sign_in())
    # Mix-up defence: the code never went to a token endpoint.
    assert hostile_site.op.grants == []


def test_sign_in_without_refresh_token_is_reported_to_staff_and_log(hostile_site, caplog):
    """No refresh token: the sign-in works, and the site says why the session will not last."""
    browser = Browser()
    assert_signed_in(hostile_site, hostile_site.sign_in(browser, next_url="/account/"))
    user = OAuthSession.objects.get().user
    user.is_staff = True
    user.save()
    _no_refresh_token(hostile_site.op)
    with caplog.at_level("WARNING", logger="oauth_client"):
        resp = hostile_site.sign_in(browser, next_url="/account/")
    assert resp.status_code == 200 and resp.url == hostile_site.url + "/account/"
    assert "issued no refresh token" in resp.text and "offline_access" in resp.text
    assert any("offline_access" in r.getMessage() and "refresh token" in r.getMessage() for r in caplog.records)
    assert not OAuthSession.objects.get(ended_at__isnull=True).refresh_token
