"""Back-channel logout: the provider ends our sessions server to server, with tokens signed by its real key."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests
from django.utils import timezone
from jwcrypto import jwk

from oauth_client.models import OAuthSession, UsedLogoutToken
from oauth_client.validation import BACKCHANNEL_LOGOUT_EVENT
from tests.session_helpers import is_signed_in, newest_record, sign_logout_token, signed_in_as

pytestmark = pytest.mark.django_db(transaction=True)

ENDPOINT = "/oauth/backchannel-logout/"


def post_logout(site, token: str | None) -> requests.Response:
    data = {"logout_token": token} if token is not None else {}
    return requests.post(site.url + ENDPOINT, data=data, timeout=30)


def assert_refused(resp: requests.Response) -> None:
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "invalid_request"
    assert "no-store" in resp.headers["Cache-Control"]


def foreign_session(site, record: OAuthSession, **fields) -> OAuthSession:
    """A session of the same user at another issuer (it must never be ended by this provider's tokens)."""
    values = {
        "user": record.user,
        "issuer": "https://other-issuer.example",
        "subject": record.subject,
        "sid": record.sid,
        "session_key": "elsewhere",
        "access_expires_at": timezone.now(),
        **fields,
    }
    return OAuthSession.objects.create(**values)


def test_idp_command_ends_every_session_of_the_user(site):
    """End to end: the embedded provider signs a logout token for `sub` and POSTs it to the live site."""
    first, second = signed_in_as(site), signed_in_as(site)
    records = list(OAuthSession.objects.order_by("created_at"))
    tokens = [r.refresh_token for r in records]
    elsewhere = foreign_session(site, records[0])

    result = site.provider.manage(
        "idp_backchannel_logout",
        "--username",
        site.provider.username,
        "--client-id",
        site.provider.client_id,
        "--uri",
        site.url + ENDPOINT,
    )
    assert "HTTP 200" in result.stdout and '"sessions_ended": 2' in result.stdout

    assert not is_signed_in(site, first) and not is_signed_in(site, second)
    for record, token in zip(records, tokens, strict=True):
        record.refresh_from_db()
        assert record.ended_reason == OAuthSession.EndReason.BACKCHANNEL and record.ended_by == "provider"
        assert site.provider.is_refresh_token_revoked(token)
    elsewhere.refresh_from_db()
    assert elsewhere.is_active


def test_by_sid_ends_only_that_session(site):
    """DOT issues no `sid`, so the records get one here, as a provider with sessions would have sent."""
    first, second = signed_in_as(site), signed_in_as(site)
    r1, r2 = OAuthSession.objects.order_by("created_at")
    OAuthSession.objects.filter(pk=r1.pk).update(sid="op-session-1")
    OAuthSession.objects.filter(pk=r2.pk).update(sid="op-session-2")
    elsewhere = foreign_session(site, r1, sid="op-session-1")

    resp = post_logout(site, sign_logout_token(site.provider, sid="op-session-1"))
    assert resp.status_code == 200 and resp.json() == {"sessions_ended": 1}
    assert "no-store" in resp.headers["Cache-Control"]
    assert not is_signed_in(site, first)
    assert is_signed_in(site, second)
    assert OAuthSession.objects.get(pk=r1.pk).ended_reason == OAuthSession.EndReason.BACKCHANNEL
    elsewhere.refresh_from_db()
    assert elsewhere.is_active


def test_sid_and_sub_together_must_both_match(site):
    browser = signed_in_as(site)
    record = newest_record()
    OAuthSession.objects.filter(pk=record.pk).update(sid="op-session")
    resp = post_logout(site, sign_logout_token(site.provider, sid="op-session", sub="somebody-else"))
    assert resp.status_code == 200 and resp.json() == {"sessions_ended": 0}
    assert is_signed_in(site, browser)
    resp = post_logout(site, sign_logout_token(site.provider, sid="op-session", sub=record.subject))
    assert resp.json() == {"sessions_ended": 1}
    assert not is_signed_in(site, browser)


def test_unknown_subject_is_accepted_and_ends_nothing(site):
    browser = signed_in_as(site)
    resp = post_logout(site, sign_logout_token(site.provider, sub="nobody-here"))
    assert resp.status_code == 200 and resp.json() == {"sessions_ended": 0}
    assert is_signed_in(site, browser)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _unsigned(site, sub: str) -> str:
    now = int(time.time())
    claims = {
        "iss": site.provider.issuer,
        "aud": site.provider.client_id,
        "iat": now,
        "jti": "unsigned",
        "sub": sub,
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    return f"{_b64({'alg': 'none'})}.{_b64(claims)}."


INVALID = {
    "bad signature": lambda site, sub: sign_logout_token(
        site.provider, sub=sub, key=jwk.JWK.generate(kty="RSA", size=2048)
    ),
    "unknown key": lambda site, sub: sign_logout_token(
        site.provider, sub=sub, key=(k := jwk.JWK.generate(kty="RSA", size=2048)), kid=k.thumbprint()
    ),
    "alg none": _unsigned,
    "wrong aud": lambda site, sub: sign_logout_token(site.provider, sub=sub, aud="another-client"),
    "wrong iss": lambda site, sub: sign_logout_token(site.provider, sub=sub, iss="https://evil.example/o"),
    "nonce present": lambda site, sub: sign_logout_token(site.provider, sub=sub, nonce="n-0S6_WzA2Mj"),
    "missing events": lambda site, sub: sign_logout_token(site.provider, sub=sub, events=None),
    "other event": lambda site, sub: sign_logout_token(
        site.provider, sub=sub, events={"http://schemas.openid.net/event/other": {}}
    ),
    "expired iat": lambda site, sub: sign_logout_token(
        site.provider, sub=sub, iat=int(time.time()) - 3600, exp=int(time.time()) - 3480
    ),
    "old iat, distant exp": lambda site, sub: sign_logout_token(
        site.provider, sub=sub, iat=int(time.time()) - 3600, exp=int(time.time()) + 3600
    ),
    "old iat, no exp": lambda site, sub: sign_logout_token(
        site.provider, sub=sub, iat=int(time.time()) - 3600, exp=None
    ),
    # §4.1 (cross-JWT confusion): a token typed as another kind of JWT is not a logout token.
    "typed as an access token": lambda site, sub: sign_logout_token(site.provider, sub=sub, typ="at+jwt"),
    "event URI with an underscore": lambda site, sub: sign_logout_token(
        site.provider, sub=sub, events={"http://schemas.openid.net/event/backchannel_logout": {}}
    ),
    "iat in the future": lambda site, sub: sign_logout_token(site.provider, sub=sub, iat=int(time.time()) + 3600),
    "no jti": lambda site, sub: sign_logout_token(site.provider, sub=sub, jti=None),
    "neither sid nor sub": lambda site, sub: sign_logout_token(site.provider),
    "not a JWT": lambda site, sub: "not-a-jwt",
    "empty": lambda site, sub: "",
    "missing": lambda site, sub: None,
}


@pytest.mark.parametrize("variant", list(INVALID))
def test_invalid_logout_token_is_400_and_ends_nothing(site, variant):
    browser = signed_in_as(site)
    record = newest_record()
    resp = post_logout(site, INVALID[variant](site, record.subject))
    assert_refused(resp)
    assert is_signed_in(site, browser)
    record.refresh_from_db()
    assert record.is_active and not site.provider.is_refresh_token_revoked(record.refresh_token)


def test_token_without_exp_is_accepted(site):
    """Back-Channel Logout 1.0 (2022) has no exp; errata set 1 made it REQUIRED. A provider following the approved
    text must still sign people out (iat + LOGOUT_TOKEN_MAX_AGE bounds the token: "old iat, no exp" above)."""
    browser = signed_in_as(site)
    resp = post_logout(site, sign_logout_token(site.provider, sub=newest_record().subject, exp=None))
    assert resp.status_code == 200 and resp.json() == {"sessions_ended": 1}
    assert not is_signed_in(site, browser)


@pytest.mark.parametrize("typ", ["logout+jwt", "application/logout+jwt", "JWT", None])
def test_explicit_and_plain_typ_are_accepted(site, typ):
    """Certified providers send typ logout+jwt (§2.4); older ones send JWT or nothing."""
    browser = signed_in_as(site)
    resp = post_logout(site, sign_logout_token(site.provider, sub=newest_record().subject, typ=typ))
    assert resp.status_code == 200 and resp.json() == {"sessions_ended": 1}
    assert not is_signed_in(site, browser)


def test_replayed_token_is_refused(site):
    signed_in_as(site)
    sub = newest_record().subject
    token = sign_logout_token(site.provider, sub=sub)
    assert post_logout(site, token).json() == {"sessions_ended": 1}
    # The same person signs in again; a replay of the old logout token must not sign them out.
    browser = signed_in_as(site)
    assert_refused(post_logout(site, token))
    assert is_signed_in(site, browser)
    assert UsedLogoutToken.objects.count() == 1


def test_only_post(site):
    resp = requests.get(site.url + ENDPOINT, timeout=30)
    assert resp.status_code == 405


def test_json_body_is_refused_not_a_crash(site):
    resp = requests.post(site.url + ENDPOINT, json={"logout_token": "x"}, timeout=30)
    assert_refused(resp)
