"""Fuzzing and bad input: Hypothesis over the callback query, `next` and the back-channel logout token, plus
oversized inputs. Never a 500, never an open redirect, never a session that the genuine provider answer did
not earn.

The site runs in-process (Django's test client, fast enough for hundreds of examples); the provider is the
hostile one over real HTTP, so a fuzzed callback with a valid state really exchanges its code. The logout token
is fuzzed twice: through `validation.validate_logout_token` (every rule re-checked on what it accepts) and
through the back-channel endpoint (which sessions it ends, and that a refused token ends none).
"""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urljoin, urlsplit

import pytest
import requests
from django.core.cache import cache
from django.test import Client
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from oauth_client import providers
from oauth_client.conf import oauth_settings
from oauth_client.exceptions import TokenValidationError, TransientProviderError
from oauth_client.models import OAuthSession
from oauth_client.validation import BACKCHANNEL_LOGOUT_EVENT, validate_logout_token
from tests.browser import Browser
from tests.hostile import b64, json_b64, new_key, sign

FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SITE = "http://testserver"


@pytest.fixture
def op(hostile, settings):  # type: ignore[no-untyped-def]
    """The hostile provider (behaving correctly), with the in-process site configured against it."""
    settings.OAUTH_CLIENT = hostile.client_settings()
    cache.clear()
    return hostile


# -- oracles ----------------------------------------------------------------------------------------------


# Code points a WHATWG URL host cannot contain (after percent-decoding): such a Location is an invalid URL,
# which a browser refuses to follow at all.
FORBIDDEN_IN_HOST = set(" #%/:<>?@[\\]^|\x7f") | {chr(c) for c in range(0x20)}


def browser_target(location: str) -> tuple[str, str] | None:
    """(scheme, host) a browser would go to for this Location, resolved as WHATWG URL parsing does: leading and
    trailing C0 controls and spaces stripped, tabs and newlines removed, backslashes read as slashes; None when
    the host is not a valid host (the browser shows an error instead of navigating)."""
    cleaned = "".join(c for c in location if c not in "\t\n\r").strip("".join(map(chr, range(0x21))))
    target = urlsplit(urljoin(SITE + "/oauth/callback/", cleaned.replace("\\", "/")))
    host = unquote(target.hostname or "")
    # (Unicode spaces map to U+0020 in host parsing (UTS 46), so a host of spaces of any kind is invalid too.)
    if not host.strip() or set(host) & FORBIDDEN_IN_HOST:
        return None
    return target.scheme, target.netloc


def assert_same_site(response) -> None:
    if 300 <= response.status_code < 400:
        assert browser_target(response["Location"]) in (("http", "testserver"), None), response["Location"]


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def start_sign_in(client: Client, **params: str) -> dict[str, str]:
    """/oauth/login/ on the site, then the provider's /authorize over HTTP: the genuine callback parameters."""
    login = client.get("/oauth/login/", params)
    assert login.status_code == 302
    answer = requests.get(login["Location"], allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["Location"])
    assert location.path == "/oauth/callback/"
    return dict(parse_qsl(location.query))


# -- the callback query -----------------------------------------------------------------------------------

GENUINE = object()  # stands for the genuine value of that parameter in this example
NASTY = [
    "",
    " ",
    "\x00",
    "%00",
    "null",
    "[]",
    "{}",
    "<script>alert(1)</script>",
    "\r\nSet-Cookie: pwned=1",
    "../../../etc/passwd",
    "https://evil.example",
    "ｅｖｉｌ",
    "\u202e\u2066",
    "😀" * 50,
    "a" * 2048,
    "a" * 2049,
]
VALUES = st.one_of(
    st.just(GENUINE),
    st.sampled_from(NASTY),
    st.text(max_size=60),
    st.text(min_size=2000, max_size=2100),
)
NAMES = st.sampled_from(["code", "state", "error", "error_description", "iss", "session_state", "error_uri", "x"])
PAIRS = st.lists(st.tuples(NAMES, VALUES), max_size=8)


def _mutated(parts: tuple[list[tuple[str, Any]], set[int], list[tuple[str, Any]], bool]) -> list[tuple[str, Any]]:
    genuine, keep, extra, extra_first = parts
    kept = [pair for i, pair in enumerate(genuine) if i in keep]
    return extra + kept if extra_first else kept + extra


# The provider's genuine answer (in any order), perhaps missing a parameter, with junk before or after it: the
# examples that get close to a sign-in, where a wrong decision would matter.
NEAR_GENUINE = st.tuples(
    st.permutations([("code", GENUINE), ("state", GENUINE), ("iss", GENUINE)]),
    st.sets(st.integers(0, 2), min_size=2),
    st.lists(st.tuples(NAMES, VALUES), max_size=3),
    st.booleans(),
).map(_mutated)
QUERIES = st.one_of(PAIRS, NEAR_GENUINE)


@pytest.mark.django_db
@FUZZ
@given(query=QUERIES)
def test_fuzzed_callback_query(op, query):
    client = Client()
    genuine = start_sign_in(client)
    pairs = [(name, genuine.get(name, "") if value is GENUINE else value) for name, value in query]
    before = OAuthSession.objects.count()

    resp = client.get("/oauth/callback/", QUERY_STRING=urlencode(pairs))

    assert resp.status_code < 500, resp.content[:500]
    assert_same_site(resp)
    assert b"<script>alert" not in resp.content
    last = dict(pairs)  # what the view reads: the last value of each parameter
    event(f"HTTP {resp.status_code}")
    if signed_in(client) or OAuthSession.objects.count() != before:
        # A session only from the provider's own answer, as it was sent.
        assert resp.status_code == 302
        assert last.get("state") == genuine["state"] and last.get("code") == genuine["code"]
        assert last.get("iss") == op.issuer and not last.get("error")
    else:
        assert 400 <= resp.status_code < 500


@pytest.mark.django_db
@FUZZ
@given(raw=st.text(alphabet=st.sampled_from("abcdestiorq=&%;+?#/\\0123456789ABCDEF\x7f é"), max_size=200))
def test_fuzzed_raw_callback_query_string(op, raw):
    """Malformed percent-escapes, stray separators, bytes that are not UTF-8 once decoded."""
    client = Client()
    start_sign_in(client)
    resp = client.get("/oauth/callback/", QUERY_STRING=raw)
    assert 400 <= resp.status_code < 500, resp.content[:500]
    assert not signed_in(client) and not OAuthSession.objects.exists()


# -- next ---------------------------------------------------------------------------------------------------

NASTY_NEXT = [
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    " //evil.example",
    "\x00//evil.example",
    "/%2F/evil.example",
    "/%5Cevil.example",
    "https://evil.example",
    "https:evil.example",
    "//testserver@evil.example",
    "/@evil.example",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "http://testserver/account/",
    "/account/?next=//evil.example",
    "/account/#//evil.example",
    "/\u3002evil.example",
    "//evil。example",
    "/" + "a" * 3000,
]
NEXT = st.one_of(
    st.sampled_from(NASTY_NEXT),
    st.text(max_size=40),
    st.builds(lambda a, b: a + b, st.sampled_from(["/", "//", "/\\", "\\", "http:", "https://", " /"]), st.text()),
)


@pytest.mark.django_db
@FUZZ
@given(next_url=NEXT)
def test_fuzzed_next_never_redirects_off_site(op, next_url):
    client = Client()
    genuine = start_sign_in(client, next=next_url)
    resp = client.get("/oauth/callback/", QUERY_STRING=urlencode(genuine))
    assert resp.status_code == 302, resp.content[:500]
    assert_same_site(resp)
    assert signed_in(client)  # the sign-in itself was genuine

    # Where else the site takes a `next`: the language switcher and sign-out.
    resp = client.post("/i18n/setlang/", {"language": "en", "next": next_url})
    assert resp.status_code == 302
    assert_same_site(resp)
    resp = client.get("/oauth/login/", {"next": next_url})
    assert resp.status_code == 302


# -- the back-channel logout token --------------------------------------------------------------------------

ABSENT = object()
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@dataclass(frozen=True)
class Ago:
    """A time relative to when the token is made (not to when the strategy was built, so that Hypothesis can
    replay an example later and get the same choices)."""

    offset: int


def claims_strategy(issuer: str, client_id: str) -> st.SearchStrategy[dict[str, Any]]:
    """A valid logout token's claims with up to three fields dropped, replaced by any JSON, or nudged to a
    near-miss value, so examples reach every rule, not just the first one."""
    valid = {
        "iss": issuer,
        "aud": client_id,
        "iat": Ago(0),
        "exp": Ago(120),
        "jti": "jti-1",
        "sid": "sid-1",
        "sub": "alice-0001",
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    near_misses = {
        "iss": st.sampled_from([issuer + "/", issuer.upper(), "", [issuer]]),
        "aud": st.sampled_from([[client_id], [client_id, "other"], ["other"], [], "other", client_id + " "]),
        "azp": st.sampled_from([client_id, "other", ""]),
        "iat": st.one_of(st.builds(Ago, st.integers(-4000, 4000)), st.floats(), st.just(True)),
        "exp": st.one_of(st.builds(Ago, st.integers(-4000, 4000)), st.floats(), st.just(False)),
        "jti": st.sampled_from(["", "x"]),
        "events": st.sampled_from(
            [{BACKCHANNEL_LOGOUT_EVENT: "x"}, {}, {"other": {}}, {BACKCHANNEL_LOGOUT_EVENT: {}, "x": 1}]
        ),
        "sid": st.sampled_from(["", "sid-2"]),
        "sub": st.sampled_from(["", "bob"]),
        "nonce": st.sampled_from(["n", ""]),
    }
    mutation = st.sampled_from(sorted(near_misses)).flatmap(
        lambda name: st.tuples(st.just(name), st.one_of(st.just(ABSENT), JSON, near_misses[name]))
    )

    def apply(mutations: list[tuple[str, Any]]) -> dict[str, Any]:
        claims = dict(valid)
        for name, value in mutations:
            claims[name] = value
        now = int(time.time())
        return {k: now + v.offset if isinstance(v, Ago) else v for k, v in claims.items() if v is not ABSENT}

    return st.lists(mutation, max_size=3).map(apply)


def assert_valid_logout_claims(claims: dict[str, Any], issuer: str, client_id: str) -> None:
    """OIDC Back-Channel Logout 1.0 §2.4 and §2.6, restated independently of the code under test (plus our
    LOGOUT_TOKEN_MAX_AGE, which bounds how long a jti must be remembered)."""
    now, leeway = time.time(), oauth_settings.CLOCK_LEEWAY
    assert claims["iss"] == issuer
    aud = claims["aud"]
    audiences = [aud] if isinstance(aud, str) else aud
    assert isinstance(audiences, list) and client_id in audiences
    if len(audiences) > 1 or "azp" in claims:
        assert claims.get("azp") == client_id
    iat = claims["iat"]
    assert isinstance(iat, int | float) and not isinstance(iat, bool) and math.isfinite(iat)
    assert now - oauth_settings.LOGOUT_TOKEN_MAX_AGE - leeway - 5 <= iat <= now + leeway
    if "exp" in claims:  # REQUIRED only since errata set 1; validated when present
        exp = claims["exp"]
        assert isinstance(exp, int | float) and not isinstance(exp, bool) and math.isfinite(exp)
        assert exp >= now - leeway
    assert isinstance(claims["jti"], str) and claims["jti"]
    assert isinstance(claims["events"], dict) and isinstance(claims["events"][BACKCHANNEL_LOGOUT_EVENT], dict)
    assert "nonce" not in claims
    assert "sid" in claims or "sub" in claims
    for name in ("sid", "sub"):
        assert name not in claims or (isinstance(claims[name], str) and claims[name])


HEADERS = st.fixed_dictionaries(
    {"alg": st.one_of(st.sampled_from(["none", "HS256", "RS256", "ES256", "PS256", "EdDSA", "RS1", ""]), JSON)},
    optional={
        "kid": st.one_of(st.sampled_from(["KID", "unknown"]), JSON),
        "crit": st.one_of(st.just(["b64"]), JSON),
        "b64": st.booleans(),
        "jku": st.just("JKU"),
        "x5u": st.just("JKU"),
        "jwk": JSON,
        "typ": st.sampled_from(["logout+jwt", "JWT"]),
    },
)


def _resolve(value: Any, kid: str, jku: str) -> Any:
    if isinstance(value, dict):
        return {k: _resolve(v, kid, jku) for k, v in value.items()}
    return {"KID": kid, "JKU": jku}.get(value, value) if isinstance(value, str) else value


def draw_logout_token(data: st.DataObject, op, kinds=("text", "jws-like", "signed")) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """(kind, token): random text, a JWS-like string with a hostile header, or a token signed by the provider's
    real key whose claims are a valid set with up to three near misses (each with a fresh jti)."""
    issuer, client_id, kid = op.issuer, op.client_id, op.signing_key.get("kid")
    jku = op.base_url + "/attacker-jwks"
    kind = data.draw(st.sampled_from(kinds))
    if kind == "text":
        raw = data.draw(st.text(max_size=300) | st.from_regex(r"\A[A-Za-z0-9_=-]*\.[A-Za-z0-9_=-]*\.[A-Za-z0-9_=-]*\Z"))
    elif kind == "jws-like":
        header = _resolve(data.draw(HEADERS), kid, jku)
        payload = data.draw(st.one_of(claims_strategy(issuer, client_id), JSON))
        raw = f"{json_b64(header)}.{json_b64(payload)}.{b64(data.draw(st.binary(max_size=300)))}"
    else:
        claims = data.draw(claims_strategy(issuer, client_id))
        if claims.get("jti") == "jti-1":
            claims["jti"] = f"jti-{uuid.uuid4()}"  # fresh for every example: a replay is its own test
        raw = sign(claims, op.signing_key)
    return kind, raw


def payload_of(raw: str) -> dict[str, Any]:
    segment = raw.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


@pytest.mark.django_db
@FUZZ
@given(data=st.data())
def test_fuzzed_logout_token(op, data):
    """Validation either returns claims that meet every rule of the spec, or raises TokenValidationError (or
    TransientProviderError for an unknown kid while the JWKS refetch is rate-limited); any other outcome (another
    exception, a fetch from a URL named in the token) is a bug."""
    issuer, client_id = op.issuer, op.client_id
    kind, raw = draw_logout_token(data, op)
    try:
        claims = validate_logout_token(providers.get(), raw)
    except (TokenValidationError, TransientProviderError) as exc:
        event(f"{kind}: {exc}")
    else:
        event(f"{kind}: accepted")
        assert kind == "signed"
        assert_valid_logout_claims(claims, issuer, client_id)
    assert op.hits["/attacker-jwks"] == 0


@pytest.mark.django_db
@FUZZ
@given(data=st.data())
def test_fuzzed_backchannel_logout_endpoint(op, data):
    """POST /oauth/backchannel-logout/: 200, 400 or 503 (JSON, never cached), never another 5xx; a refused token ends no
    session; an accepted one ends exactly the sessions it names (this issuer, its sid and sub when present)."""
    op.id_token_claims = {"sid": data.draw(st.sampled_from(["sid-1", "sid-2"]))}
    browser = Client()
    assert browser.get("/oauth/callback/", start_sign_in(browser)).status_code == 302
    active_before = {r.pk: r for r in OAuthSession.objects.active()}
    kind, raw = draw_logout_token(data, op, kinds=("text", "jws-like", "signed", "signed", "signed"))
    how = data.draw(st.sampled_from(["form", "form", "form", "repeated", "json", "junk body"]))
    endpoint = "/oauth/backchannel-logout/"
    if how == "form":
        resp = Client().post(endpoint, {"logout_token": raw})
    elif how == "repeated":
        resp = Client().post(endpoint, {"logout_token": ["x.y.z", raw]})
    elif how == "json":
        resp = Client().post(endpoint, {"logout_token": raw}, content_type="application/json")
    else:
        resp = Client().post(endpoint, raw.encode(), content_type="application/x-www-form-urlencoded")

    # 503 only for a signed token naming a key we do not know while the JWKS refetch is rate-limited (it may be
    # a key rotated in moments ago: the provider retries; Back-Channel Logout §2.5 allows retransmission).
    assert resp.status_code in (200, 400, 503), resp.content[:500]
    if resp.status_code == 503:
        assert resp["Retry-After"] and resp.json() == {"error": "temporarily_unavailable"}
    assert "no-store" in resp["Cache-Control"] and resp["Content-Type"] == "application/json"
    active_after = set(OAuthSession.objects.active().values_list("pk", flat=True))
    ended = set(active_before) - active_after
    event(f"{kind}/{how}: HTTP {resp.status_code}, {len(ended)} ended {resp.json().get('error_description', '')}")
    if resp.status_code in (400, 503):
        assert not ended
    else:
        assert kind == "signed" and how in ("form", "repeated")
        claims = payload_of(raw)
        assert_valid_logout_claims(claims, op.issuer, op.client_id)

        def named(record: OAuthSession) -> bool:
            return (
                record.issuer == claims["iss"]
                and ("sid" not in claims or record.sid == claims["sid"])
                and ("sub" not in claims or record.subject == claims["sub"])
            )

        assert ended == {pk for pk, record in active_before.items() if named(record)}
        assert resp.json() == {"sessions_ended": len(ended)}
    assert signed_in(browser) == (
        OAuthSession.objects.filter(pk__in=active_after, session_key=browser.session.session_key).exists()
    )
    assert op.hits["/attacker-jwks"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize("sid", [True, 1, "", ["sid-1"], None], ids=["true", "number", "empty", "list", "null"])
def test_malformed_sid_does_not_widen_a_logout(op, sid):
    """Found by the fuzzer above: a logout token with a malformed sid was read as having none, and so ended
    every session of its sub instead of the one it meant. It is refused now."""
    op.id_token_claims = {"sid": "sid-1"}
    browser = Client()
    assert browser.get("/oauth/callback/", start_sign_in(browser)).status_code == 302
    now = int(time.time())
    claims = {
        "iss": op.issuer,
        "aud": op.client_id,
        "iat": now,
        "exp": now + 120,
        "jti": str(uuid.uuid4()),
        "sub": op.subject,
    }
    token = sign({**claims, "sid": sid, "events": {BACKCHANNEL_LOGOUT_EVENT: {}}}, op.signing_key)
    resp = Client().post("/oauth/backchannel-logout/", {"logout_token": token})
    assert resp.status_code == 400 and "sid is malformed" in resp.json()["error_description"]
    assert signed_in(browser) and OAuthSession.objects.active().count() == 1


def test_fuzzed_logout_tokens_cannot_hammer_the_jwks_endpoint(op):
    """Hypothesis above sends many unknown kids; here the bound is checked on its own: 200 forged tokens with
    fresh kids in one window cost at most one JWKS refetch."""
    rogue = new_key()
    now = int(time.time())
    base = {"iss": op.issuer, "aud": op.client_id, "iat": now, "exp": now + 120, "jti": "j", "sub": "s"}
    tokens = [
        sign({**base, "events": {BACKCHANNEL_LOGOUT_EVENT: {}}}, rogue, header={"alg": "RS256", "kid": f"k{i}"})
        for i in range(200)
    ]
    for token in tokens:
        # Refused (400) while a refetch is allowed, "try again later" (503) once the window's refetch is spent.
        with pytest.raises((TokenValidationError, TransientProviderError)):
            validate_logout_token(providers.get(), token)
    assert op.hits["/jwks"] <= 2  # the first fetch, then one refetch (the window is 60 s)


# -- oversized input ----------------------------------------------------------------------------------------

KB = 1024


@pytest.mark.django_db(transaction=True)
def test_100_kb_state_over_real_http_is_refused(hostile_site):
    browser = Browser()
    browser.get(hostile_site.url + "/oauth/login/", allow_redirects=False)
    resp = browser.get(hostile_site.url + "/oauth/callback/", params={"code": "x", "state": "s" * 100 * KB})
    # The server refuses a request line this long before Django sees it (as gunicorn and nginx do).
    assert 400 <= resp.status_code < 500
    assert not OAuthSession.objects.exists()
    assert hostile_site.op.grants == []


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["state", "code", "error", "iss"])
def test_100_kb_parameter_is_refused_by_the_site(op, name):
    client = Client()
    genuine = start_sign_in(client)
    resp = client.get("/oauth/callback/", {**genuine, name: "x" * 100 * KB})
    assert resp.status_code == 400
    assert b"too large" in resp.content
    assert not signed_in(client) and not OAuthSession.objects.exists()
    assert op.grants == []


@pytest.mark.django_db
def test_100_kb_next_is_ignored(op):
    client = Client()
    genuine = start_sign_in(client, next="/" + "a" * 100 * KB)
    resp = client.get("/oauth/callback/", genuine)
    assert resp.status_code == 302 and resp["Location"] == "/account/"


@pytest.mark.django_db
def test_oversized_logout_token_is_refused(op):
    with pytest.raises(TokenValidationError):
        validate_logout_token(providers.get(), "a" * 100 * KB + ".b.c")
    with pytest.raises(TokenValidationError):
        validate_logout_token(providers.get(), sign({"iss": op.issuer, "pad": "x" * 100 * KB}, op.signing_key))
    assert op.hits["/jwks"] == 0  # refused before any key lookup
