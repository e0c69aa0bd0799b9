"""Fast unit tests of the pure parsers: the token endpoint's answer (oauth_client.client) and the ID and logout
token claim checks (oauth_client.validation). No server, no network, no database: tokens are signed with keys
made here, and the provider's metadata and key set are stubbed.

Errors are matched by message and by the names of their classes (not by importing them from
oauth_client.exceptions), so these tests follow the exception classes wherever they move.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from jwcrypto import jwk
from requests.structures import CaseInsensitiveDict

from oauth_client import providers, validation
from oauth_client.client import MAX_LIFETIME, _parse_token_response
from oauth_client.http import Response
from tests.hostile import OMIT, new_key, sign

ISSUER = "https://op.example"
CLIENT_ID = "client-1"
NOW = 1_700_000_000
LEEWAY = 60  # CLOCK_LEEWAY's default
MAX_NUMERIC_DATE = 253402300799  # 9999-12-31T23:59:59Z


def raised(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[set[str], str, Exception]:
    """What `call` raised: the names of its class and bases, its message, the exception."""
    with pytest.raises(Exception) as info:
        call(*args, **kwargs)
    return {cls.__name__ for cls in type(info.value).__mro__}, str(info.value), info.value


# --- the token endpoint's answer ----------------------------------------------------------------------------

GOOD = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 3600}


def parse(body: Any, status: int = 200) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return _parse_token_response(Response(status, CaseInsensitiveDict({"Content-Type": "application/json"}), raw))


def refused(body: Any, status: int = 200) -> str:
    names, message, _ = raised(parse, body, status)
    assert "InvalidResponse" in names, (names, message)
    return message


def test_a_complete_answer():
    body = {
        **GOOD,
        "id_token": "idt-1",
        "refresh_token": "rt-1",
        "refresh_expires_in": 86400,
        "scope": "openid offline_access",
        "vendor": {"x": 1},
    }
    tokens = parse(body)
    assert (tokens.access_token, tokens.id_token, tokens.refresh_token) == ("at-1", "idt-1", "rt-1")
    assert (tokens.expires_in, tokens.refresh_expires_in, tokens.scope) == (3600, 86400, "openid offline_access")
    # Everything but the tokens themselves, as the provider sent it.
    assert tokens.extra == {
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_expires_in": 86400,
        "scope": "openid offline_access",
        "vendor": {"x": 1},
    }
    assert "at-1" not in repr(tokens) and "rt-1" not in repr(tokens) and "idt-1" not in repr(tokens)


def test_only_the_required_fields():
    tokens = parse({"access_token": "at-1", "token_type": "Bearer"})
    assert tokens.expires_in is None and tokens.refresh_expires_in is None
    assert tokens.id_token is None and tokens.refresh_token is None and tokens.scope is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3600, 3600),
        ("3600", 3600),  # some providers send a string
        (3600.0, 3600),
        (3600.9, 3600),  # truncated
        (1, 1),
        (MAX_LIFETIME, MAX_LIFETIME),
        (None, None),
    ],
)
def test_expires_in_accepted(value, expected):
    assert parse({**GOOD, "expires_in": value}).expires_in == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "not positive"),
        (-1, "not positive"),
        ("-5", "not positive"),
        ("0", "not positive"),
        (0.5, "not positive"),  # truncated to 0
        (False, "not a number"),
        (MAX_LIFETIME + 1, "out of range"),
        (10**30, "out of range"),
        (1e308, "out of range"),
        ("abc", "not a number"),
        ("", "not a number"),
        ("3600.5", "not a number"),
        ("1e3", "not a number"),
        ("9" * 5000, "not a number"),  # beyond int()'s digit limit
        ([3600], "not a number"),
        ({"seconds": 3600}, "not a number"),
        (True, "not a number"),
    ],
)
def test_expires_in_refused(value, message):
    assert f"expires_in is {message}" in refused({**GOOD, "expires_in": value})


@pytest.mark.parametrize("value", [OMIT, None, "", 123, ["at"], {"token": "at"}])
def test_access_token_required(value):
    body = {**GOOD, "access_token": value} if value is not OMIT else {"token_type": "Bearer"}
    assert "no access_token" in refused(body)


@pytest.mark.parametrize("value", ["Bearer", "bearer", "BEARER"])
def test_token_type_bearer_in_any_case(value):
    assert parse({**GOOD, "token_type": value}).access_token == "at-1"


@pytest.mark.parametrize("value", [OMIT, None, "", "DPoP", "mac", "Bearer ", 1, ["Bearer"]])
def test_token_type_other_than_bearer(value):
    body = {**GOOD, "token_type": value} if value is not OMIT else {"access_token": "at-1"}
    assert "token_type is not Bearer" in refused(body)


@pytest.mark.parametrize("value", ["DPoP", "dpop", "DPOP"])
def test_token_type_dpop_only_when_this_client_sent_a_proof(value):
    """RFC 9449 §5: a DPoP-bound token is accepted only from a call that carried a proof (DPOP on)."""
    assert "token_type is not Bearer" in refused({**GOOD, "token_type": value})
    raw = json.dumps({**GOOD, "token_type": value}).encode()
    headers = CaseInsensitiveDict({"Content-Type": "application/json"})
    tokens = _parse_token_response(Response(200, headers, raw), dpop_bound=True)
    assert tokens.token_type == "DPoP"
    # A Bearer answer to a call that carried a proof is parsed (its refresh token may be a rotated one); the callers
    # refuse it (test_high_security.py: sign-in fails, a refresh ends the session and revokes it).
    bearer = _parse_token_response(Response(200, headers, json.dumps(GOOD).encode()), dpop_bound=True)
    assert bearer.token_type == "Bearer"


@pytest.mark.parametrize("name", ["id_token", "refresh_token", "scope"])
@pytest.mark.parametrize("value", [1, True, ["x"], {"x": 1}])
def test_optional_strings_must_be_strings(name, value):
    assert f"{name} is not a string" in refused({**GOOD, name: value})


def test_empty_optional_strings():
    tokens = parse({**GOOD, "id_token": "", "refresh_token": "", "scope": ""})
    assert tokens.id_token is None and tokens.refresh_token is None
    assert tokens.scope == ""


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"refresh_expires_in": 86400}, 86400),
        ({"refresh_expires_in": "86400"}, 86400),
        ({"refresh_token_expires_in": 86400}, 86400),  # Microsoft's name
        ({"refresh_expires_in": 0, "refresh_token_expires_in": 60}, 60),
        ({"refresh_expires_in": MAX_LIFETIME}, MAX_LIFETIME),
        # Advisory only: anything else is ignored, never refused.
        ({"refresh_expires_in": 0}, None),
        ({"refresh_expires_in": -1}, None),
        ({"refresh_expires_in": "-1"}, None),
        ({"refresh_expires_in": True}, None),
        ({"refresh_expires_in": 86400.5}, None),
        ({"refresh_expires_in": 86400.0}, None),
        ({"refresh_expires_in": " 86400"}, None),
        ({"refresh_expires_in": "1e5"}, None),
        ({"refresh_expires_in": "\u0668\u0666\u0664\u0660\u0660"}, None),  # non-ASCII digits
        ({"refresh_expires_in": MAX_LIFETIME + 1}, None),
        ({"refresh_expires_in": "abc"}, None),
        ({"refresh_expires_in": None}, None),
    ],
)
def test_refresh_expires_in(fields, expected):
    assert parse({**GOOD, **fields}).refresh_expires_in == expected


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, {"error": "invalid_grant", "error_description": "revoked"}, "InvalidGrant"),
        (401, {"error": "invalid_client"}, "InvalidClient"),
        (400, {"error": "unauthorized_client"}, "InvalidClient"),
        (400, {"error": "invalid_request"}, "ProviderError"),
        (400, {"error": "unsupported_grant_type"}, "ProviderError"),
        (200, {"error": "invalid_grant"}, "InvalidGrant"),  # an error is an error, whatever the status
    ],
)
def test_oauth_error_responses(status, body, kind):
    names, _, exc = raised(parse, body, status)
    assert kind in names and "ProviderError" in names, names
    assert not ({"InvalidGrant", "InvalidClient"} - {kind}) & names, names
    assert (getattr(exc, "error", None), getattr(exc, "status", None)) == (body["error"], status)


def test_oauth_error_fields_are_bounded():
    _, _, exc = raised(parse, {"error": "x" * 500, "error_description": "d" * 1000}, 400)
    assert len(exc.error) == 100 and len(exc.description) == 300  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, b"<html>not JSON", "not JSON"),
        (200, b"", "not JSON"),
        (200, b'{"access_token": NaN}', "not JSON"),
        (200, b'{"access_token": "a\\u0000b", "token_type": "Bearer"}', "not JSON"),
        (200, b'{"access_token": "\\ud800", "token_type": "Bearer"}', "not JSON"),
        (200, b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (200, [GOOD], "not a JSON object"),
        (200, "at-1", "not a JSON object"),
        (500, b"Internal Server Error", "HTTP 500 without a JSON error"),
        (400, {"error": 5}, "HTTP 400 without an error code"),
        (400, {"message": "bad"}, "HTTP 400 without an error code"),
        (400, ["invalid_grant"], "HTTP 400 without an error code"),
        (200, b'{"access_token": "at-1", "token_type": "Bearer", "n": 1e400}', "not JSON"),
    ],
)
def test_malformed_answers(status, body, message):
    assert message in refused(body, status)


# --- ID token claims --------------------------------------------------------------------------------------------


@pytest.fixture
def op_key(settings, monkeypatch: pytest.MonkeyPatch) -> jwk.JWK:
    """The provider's signing key (EC: fast to make); its metadata and published key set are stubbed."""
    settings.OAUTH_CLIENT = {"ISSUER": ISSUER, "CLIENT_ID": CLIENT_ID, "CLIENT_SECRET": "secret"}
    key = new_key("EC")
    keyset = jwk.JWKSet()
    keyset.add(jwk.JWK(**key.export_public(as_dict=True)))

    def no_refetch(provider: Any, **kwargs: Any) -> Any:
        raise AssertionError("these tokens name the published key: no refetch")

    monkeypatch.setattr(validation.discovery, "get_metadata", lambda provider: {"issuer": ISSUER})
    monkeypatch.setattr(validation.discovery, "get_jwks", lambda provider: keyset)
    monkeypatch.setattr(validation.discovery, "refetch_jwks", no_refetch)
    return key


def id_claims(**changes: Any) -> dict[str, Any]:
    claims = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": CLIENT_ID,
        "iat": NOW,
        "exp": NOW + 300,
        "auth_time": NOW - 10,
        "nonce": "n-1",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not OMIT}


def id_token(key: jwk.JWK, typ: Any = "JWT", **changes: Any) -> str:
    header = {"alg": "ES256", "kid": key.get("kid"), **({"typ": typ} if typ is not OMIT else {})}
    return sign(id_claims(**changes), key, header=header)


def validate(key: jwk.JWK, expect_nonce: str | None = "n-1", typ: Any = "JWT", **changes: Any) -> dict[str, Any]:
    return validation.validate_id_token(providers.get(), id_token(key, typ, **changes), nonce=expect_nonce, now=NOW)


def rejected(call: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    names, message, _ = raised(call, *args, **kwargs)
    assert "TokenValidationError" in names, (names, message)
    return message


def test_a_genuine_id_token(op_key):
    assert validate(op_key) == id_claims()


@pytest.mark.parametrize(
    "changes",
    [
        {"aud": [CLIENT_ID]},
        {"aud": [CLIENT_ID, "api"], "azp": CLIENT_ID},
        {"azp": CLIENT_ID},
        {"iat": NOW + LEEWAY},  # within the leeway
        {"iat": NOW + 0.5},
        {"iat": 0},
        {"exp": NOW - LEEWAY},  # within the leeway
        {"exp": MAX_NUMERIC_DATE},
        {"sub": "s" * 255},
        {"auth_time": OMIT},
        {"nonce": "n-1", "extra": {"deep": [1, 2]}},
    ],
)
def test_id_token_accepted(op_key, changes):
    assert validate(op_key, **changes) == id_claims(**changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"iss": "https://evil.example"}, "issuer does not match"),
        ({"iss": ISSUER + "/"}, "issuer does not match"),
        ({"iss": OMIT}, "issuer does not match"),
        ({"aud": "someone-else"}, "audience does not include this client"),
        ({"aud": ["someone-else", "api"], "azp": CLIENT_ID}, "audience does not include this client"),
        ({"aud": OMIT}, "audience does not include this client"),
        ({"aud": {CLIENT_ID: True}}, "audience does not include this client"),
        ({"aud": [CLIENT_ID, "api"]}, "several audiences and no azp"),
        ({"aud": [CLIENT_ID, "api"], "azp": "api"}, "azp is not this client"),
        ({"azp": "someone-else"}, "azp is not this client"),
        ({"azp": None}, "azp is not this client"),
        ({"iat": OMIT}, "no valid iat"),
        ({"iat": None}, "iat is not a valid date"),
        ({"iat": "1700000000"}, "iat is not a valid date"),
        ({"iat": True}, "iat is not a valid date"),
        ({"iat": -1}, "iat is not a valid date"),
        ({"iat": MAX_NUMERIC_DATE + 1}, "iat is not a valid date"),
        ({"exp": OMIT}, "no valid exp"),
        ({"exp": None}, "exp is not a valid date"),
        ({"exp": str(NOW + 300)}, "exp is not a valid date"),
        ({"exp": MAX_NUMERIC_DATE + 1}, "exp is not a valid date"),
        ({"sub": OMIT}, "no valid sub"),
        ({"sub": ""}, "no valid sub"),
        ({"sub": 42}, "no valid sub"),
        ({"sub": "s" * 256}, "no valid sub"),
        ({"nonce": "n-2"}, "nonce does not match"),
        ({"nonce": OMIT}, "nonce does not match"),
        ({"nonce": 1}, "nonce does not match"),
        ({"nonce": ["n-1"]}, "nonce does not match"),
    ],
)
def test_id_token_refused(op_key, changes, message):
    assert message in rejected(validate, op_key, **changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"iat": NOW + LEEWAY + 1}, "issued in the future"),
        ({"exp": NOW - LEEWAY - 1}, "has expired"),
    ],
)
def test_clock_skew(op_key, changes, message):
    names, got, _ = raised(validate, op_key, **changes)
    assert "ClockSkew" in names and "TokenValidationError" in names and message in got, (names, got)


def test_no_nonce_expected_on_refresh(op_key):
    assert "nonce" not in validate(op_key, expect_nonce=None, nonce=OMIT)
    assert validate(op_key, expect_nonce=None)["nonce"] == "n-1"  # compared with the original by the refresh check


@pytest.mark.parametrize("typ", [OMIT, None, "JWT", "jwt", "application/jwt", "at+jwt"])
def test_id_token_typ_accepted(op_key, typ):
    assert validate(op_key, typ=typ)["sub"] == "alice"


@pytest.mark.parametrize("typ", ["logout+jwt", "application/logout+jwt", " Logout+JWT ", 1, ["JWT"]])
def test_id_token_typed_as_another_kind(op_key, typ):
    assert "typed as another kind of JWT" in rejected(validate, op_key, typ=typ)


# --- a refreshed ID token against the signed-in one (OIDC Core §12.2) ----------------------------------------------


def refreshed(key: jwk.JWK, original: dict[str, Any], **changes: Any) -> dict[str, Any]:
    raw = id_token(key, **{"nonce": OMIT, "iat": NOW + 100, "exp": NOW + 400, **changes})
    return validation.validate_refreshed_id_token(providers.get(), raw, original, now=NOW + 100)


@pytest.mark.parametrize(
    ("original", "changes"),
    [
        ({}, {}),
        ({}, {"nonce": "n-1"}),  # the original nonce repeated
        ({}, {"auth_time": OMIT}),  # a provider may omit auth_time on refresh
        ({"auth_time": OMIT}, {"auth_time": NOW + 50}),
        ({"aud": [CLIENT_ID, "api"], "azp": CLIENT_ID}, {"aud": ["api", CLIENT_ID], "azp": CLIENT_ID}),
    ],
)
def test_refreshed_id_token_accepted(op_key, original, changes):
    claims = refreshed(op_key, id_claims(**original), **changes)
    assert claims["sub"] == "alice" and claims["iat"] == NOW + 100


def test_a_changed_auth_time_is_not_taken_and_does_not_end_the_session(op_key, caplog):
    """A provider that sends the user's latest sign-in anywhere (django-oauth-toolkit: user.last_login) moves
    auth_time when the person signs in on another device; the session keeps the original one."""
    original = id_claims()
    claims = refreshed(op_key, original, auth_time=NOW + 50)
    assert claims["auth_time"] == original["auth_time"] != NOW + 50
    assert "auth_time differs" in caplog.text


@pytest.mark.parametrize(
    ("original", "changes", "message"),
    [
        ({"sub": "bob"}, {}, "subject differs"),
        ({"iss": "https://old-issuer.example"}, {}, "issuer differs"),
        ({}, {"aud": [CLIENT_ID, "api"], "azp": CLIENT_ID}, "audience differs"),
        ({"aud": [CLIENT_ID, "api"], "azp": CLIENT_ID}, {}, "audience differs"),
        ({}, {"azp": CLIENT_ID}, "azp differs"),
        ({"azp": CLIENT_ID}, {}, "azp differs"),
        ({}, {"nonce": "n-2"}, "nonce differs"),
        ({"nonce": OMIT}, {"nonce": "n-1"}, "nonce differs"),
        (
            {"aud": [CLIENT_ID, {"x": 1}], "azp": CLIENT_ID},
            {"aud": [CLIENT_ID, {"x": 1}], "azp": CLIENT_ID},
            "audience",
        ),
    ],
)
def test_refreshed_id_token_refused(op_key, original, changes, message):
    assert message in rejected(refreshed, op_key, id_claims(**original), **changes)


def test_another_subject_is_its_own_error(op_key):
    subject_changed = raised(refreshed, op_key, id_claims(sub="bob"))[2]
    other = raised(refreshed, op_key, id_claims(azp=CLIENT_ID))[2]
    assert type(subject_changed) is not type(other) and isinstance(subject_changed, type(other))


# --- back-channel logout tokens -----------------------------------------------------------------------------------


def logout_token(key: jwk.JWK, typ: Any = "logout+jwt", **changes: Any) -> str:
    claims = {
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "iat": NOW,
        "exp": NOW + 120,
        "jti": "jti-1",
        "sub": "alice",
        "sid": "sid-1",
        "events": {validation.BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    claims.update(changes)
    header = {"alg": "ES256", "kid": key.get("kid"), **({"typ": typ} if typ is not OMIT else {})}
    return sign({k: v for k, v in claims.items() if v is not OMIT}, key, header=header)


def validate_logout(key: jwk.JWK, typ: Any = "logout+jwt", **changes: Any) -> dict[str, Any]:
    return validation.validate_logout_token(providers.get(), logout_token(key, typ, **changes), now=NOW)


@pytest.mark.parametrize(
    ("typ", "changes"),
    [
        ("logout+jwt", {}),
        ("application/logout+jwt", {}),
        ("JWT", {}),  # older providers
        (OMIT, {}),
        ("logout+jwt", {"exp": OMIT}),  # Back-Channel Logout 1.0 as approved (2022) has no exp
        ("logout+jwt", {"sid": OMIT}),
        ("logout+jwt", {"sub": OMIT}),
        ("logout+jwt", {"iat": NOW - 600 - LEEWAY}),  # as old as LOGOUT_TOKEN_MAX_AGE allows
    ],
)
def test_logout_token_accepted(op_key, typ, changes):
    assert validate_logout(op_key, typ, **changes)["jti"] == "jti-1"


@pytest.mark.parametrize(
    ("typ", "changes", "message"),
    [
        ("at+jwt", {}, "typ is not logout+jwt"),
        (1, {}, "typ is not logout+jwt"),
        ("logout+jwt", {"iss": "https://evil.example"}, "issuer does not match"),
        ("logout+jwt", {"aud": "someone-else"}, "audience does not include this client"),
        ("logout+jwt", {"iat": OMIT}, "no valid iat"),
        ("logout+jwt", {"exp": NOW - LEEWAY - 1}, "has expired"),
        ("logout+jwt", {"exp": "soon"}, "exp is not a valid date"),
        ("logout+jwt", {"iat": NOW - 600 - LEEWAY - 1}, "too old"),
        ("logout+jwt", {"jti": OMIT}, "no jti"),
        ("logout+jwt", {"jti": ""}, "no jti"),
        ("logout+jwt", {"jti": 7}, "no jti"),
        ("logout+jwt", {"events": OMIT}, "lacks the back-channel logout event"),
        ("logout+jwt", {"events": {}}, "lacks the back-channel logout event"),
        ("logout+jwt", {"events": {validation.BACKCHANNEL_LOGOUT_EVENT: "yes"}}, "lacks the back-channel"),
        ("logout+jwt", {"events": [validation.BACKCHANNEL_LOGOUT_EVENT]}, "lacks the back-channel"),
        ("logout+jwt", {"nonce": "n-1"}, "must not contain a nonce"),
        ("logout+jwt", {"sid": ""}, "sid is malformed"),
        ("logout+jwt", {"sid": None}, "sid is malformed"),
        ("logout+jwt", {"sub": 5}, "sub is malformed"),
        ("logout+jwt", {"sid": OMIT, "sub": OMIT}, "neither sid nor sub"),
    ],
)
def test_logout_token_refused(op_key, typ, changes, message):
    assert message in rejected(validate_logout, op_key, typ, **changes)
