"""The hostile provider during refresh (tests/hostile.py): what it may legitimately do (rotate its signing key,
drop the ID token) keeps the person signed in; what it must not do (another subject, a forged or unusable ID
token) ends the session cleanly; outages never sign anybody out. Never a 500, always bounded in time.

Refused/hang/500/503/junk/reset/invalid_grant at the token endpoint are in test_refresh_faults.py against the
real provider; this file adds what needs a provider that lies."""

from __future__ import annotations

import time

import pytest
import requests
from django.core.cache import cache

from oauth_client import discovery, providers
from oauth_client.exceptions import TokenValidationError, TransientProviderError
from oauth_client.models import OAuthSession
from oauth_client.validation import BACKCHANNEL_LOGOUT_EVENT, validate_logout_token
from tests.browser import Browser
from tests.helpers import active_record, expire_tokens
from tests.hostile import Reply, new_key, sign, unsigned

pytestmark = pytest.mark.django_db(transaction=True)

MB = 1024 * 1024


def signed_in(site) -> Browser:
    browser = Browser()
    resp = site.sign_in(browser, next_url="/account/")
    assert resp.status_code == 200 and resp.url == site.url + "/account/", resp.text[:500]
    return browser


def assert_signed_out_to_sign_in(resp, reason: str) -> None:
    assert resp.status_code == 302, resp.text[:500]
    assert resp.headers["Location"].startswith("/oauth/login/?next=")
    record = OAuthSession.objects.get()
    assert record.ended_reason == reason
    assert not record.refresh_token and not record.access_token and not record.id_token


# -- the refreshed ID token -------------------------------------------------------------------------------


def test_refreshed_id_token_for_another_subject_ends_the_session(hostile_site):
    op = hostile_site.op
    browser = signed_in(hostile_site)
    op.id_token_claims = {"sub": "mallory-0666"}
    expire_tokens()
    resp = browser.get(hostile_site.url + "/account/", allow_redirects=False)
    assert_signed_out_to_sign_in(resp, OAuthSession.EndReason.SUBJECT_CHANGED)
    assert op.grants == ["authorization_code", "refresh_token"]
    # The browser is signed out, and nothing of Mallory's was stored.
    assert browser.get(hostile_site.url + "/account/", allow_redirects=False).status_code == 302
    assert OAuthSession.objects.get().subject == op.subject


def test_refreshed_id_token_for_another_subject_gives_json_401(hostile_site):
    browser = signed_in(hostile_site)
    hostile_site.op.id_token_claims = {"sub": "mallory-0666"}
    expire_tokens()
    resp = browser.get(hostile_site.url + "/account/", headers={"Accept": "application/json"})
    assert resp.status_code == 401 and resp.json()["error"] == "reauthentication_required"
    assert OAuthSession.objects.get().ended_reason == OAuthSession.EndReason.SUBJECT_CHANGED


def test_sensitive_action_with_another_subject_ends_the_session(hostile_site):
    browser = signed_in(hostile_site)
    hostile_site.op.id_token_claims = {"sub": "mallory-0666"}
    resp = browser.get(hostile_site.url + "/account/sensitive/", allow_redirects=False)
    assert_signed_out_to_sign_in(resp, OAuthSession.EndReason.SUBJECT_CHANGED)


@pytest.mark.parametrize(
    "forge",
    [
        lambda op: setattr(op, "id_token_claims", {"iss": "https://evil.example"}),
        lambda op: setattr(op, "id_token_claims", {"aud": "someone-else"}),
        lambda op: setattr(op, "id_token_claims", {"sub": "alice-0001\x00"}),
        lambda op: setattr(op, "id_token_forger", lambda claims: unsigned(claims, op.signing_key.get("kid"))),
        lambda op: setattr(op, "id_token_forger", lambda claims: sign(claims, new_key(kid=op.signing_key.get("kid")))),
    ],
    ids=["wrong iss", "wrong aud", "NUL in sub", "alg none", "bad signature"],
)
def test_untrustworthy_refreshed_id_token_ends_the_session(hostile_site, forge):
    browser = signed_in(hostile_site)
    forge(hostile_site.op)
    expire_tokens()
    resp = browser.get(hostile_site.url + "/account/", allow_redirects=False)
    assert_signed_out_to_sign_in(resp, OAuthSession.EndReason.REFRESH_REJECTED)


def test_refresh_without_id_token_keeps_the_claims(hostile_site):
    browser = signed_in(hostile_site)
    before = active_record()
    hostile_site.op.omit_id_token = True
    expire_tokens()
    assert browser.get(hostile_site.url + "/account/").status_code == 200
    after = active_record()
    assert after.refresh_count == 1 and after.claims == before.claims and after.id_token == before.id_token
    assert after.id_token_expires_at is None and after.access_token != before.access_token


# -- signing key rotation and the JWKS refetch ---------------------------------------------------------------


@pytest.mark.parametrize("keep_old", [False, True], ids=["old key withdrawn", "old key still published"])
def test_key_rotation_between_sign_in_and_refresh(hostile_site, keep_old):
    op = hostile_site.op
    browser = signed_in(hostile_site)
    assert op.hits["/jwks"] == 1
    old_kid = op.signing_key.get("kid")
    new = op.rotate_signing_key(keep_old=keep_old)
    expire_tokens()

    resp = browser.get(hostile_site.url + "/account/", allow_redirects=False)
    assert resp.status_code == 200
    record = active_record()
    assert record.refresh_count == 1 and record.id_token_expires_at is not None
    assert old_kid != new.get("kid")
    assert op.hits["/jwks"] == 2  # one refetch, for the unknown kid

    # The new key is cached now: the next refresh does not fetch the JWKS again.
    expire_tokens()
    assert browser.get(hostile_site.url + "/account/", allow_redirects=False).status_code == 200
    assert active_record().refresh_count == 2
    assert op.hits["/jwks"] == 2


_ROGUE = new_key()


def forged_logout_token(op, kid: str) -> str:
    """A logout token as an attacker would send it: well-formed, signed by a key the provider never had."""
    now = int(time.time())
    claims = {
        "iss": op.issuer,
        "aud": op.client_id,
        "iat": now,
        "jti": f"jti-{kid}",
        "sub": op.subject,
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    return sign(claims, _ROGUE, header={"alg": "RS256", "kid": kid})


def test_forged_kids_cannot_make_us_hammer_the_jwks_endpoint(hostile, settings):
    """Logout tokens can be sent by anyone: a stream of unknown kids costs the provider one JWKS fetch per
    JWKS_MIN_REFETCH_SECONDS, not one per token."""
    window = 2
    settings.OAUTH_CLIENT = hostile.client_settings(JWKS_MIN_REFETCH_SECONDS=window)
    cache.clear()
    discovery.get_jwks(providers.get())
    assert hostile.hits["/jwks"] == 1
    forged = [forged_logout_token(hostile, f"forged-{i}") for i in range(50)]

    def burst(tokens: list[str]) -> tuple[int, float]:
        before, started = hostile.hits["/jwks"], time.monotonic()
        for token in tokens:
            with pytest.raises((TokenValidationError, TransientProviderError)):
                validate_logout_token(providers.get(), token)
        return hostile.hits["/jwks"] - before, time.monotonic() - started

    # At most one refetch per started window, however slow a shared machine makes the burst.
    refetches, elapsed = burst(forged[:25])
    assert 1 <= refetches <= 1 + int(elapsed // window)
    time.sleep(window + 0.5)  # the window has passed: the next unknown kid may refetch again, once
    refetches, elapsed = burst(forged[25:])
    assert 1 <= refetches <= 1 + int(elapsed // window)


def test_forged_kid_just_before_a_key_rotation_signs_nobody_out(hostile_site):
    """An attacker spends the refetch allowance with a forged logout token; the provider rotates its key within
    that minute: its own refreshed ID token (new kid) must still validate, not end the session. (This used to
    end it with refresh_rejected: the refetch for the real new kid was rate-limited away.)"""
    op = hostile_site.op
    browser = signed_in(hostile_site)
    endpoint = hostile_site.url + "/oauth/backchannel-logout/"
    forged = requests.post(endpoint, data={"logout_token": forged_logout_token(op, "forged")}, timeout=30)
    assert forged.status_code == 400
    assert op.hits["/jwks"] == 2
    op.rotate_signing_key()
    expire_tokens()
    resp = browser.get(hostile_site.url + "/account/", allow_redirects=False)
    assert resp.status_code == 200
    assert active_record().refresh_count == 1
    # The rate limit still holds for logout tokens: an unknown kid within the window cannot be checked now, so
    # "try again later", and no fetch.
    again = requests.post(endpoint, data={"logout_token": forged_logout_token(op, "forged-again")}, timeout=30)
    assert again.status_code == 503 and again.headers["Retry-After"]
    assert op.hits["/jwks"] == 3


def test_genuine_logout_token_with_a_just_rotated_key_is_retried_not_refused(hostile_site, settings):
    """Issue 12 item 7: the provider rotates its key and signs a logout token with it while the JWKS refetch is
    rate-limited (a forged kid spent the allowance): 503 + Retry-After, the session kept; the provider's retry
    after the window ends the session."""
    op = hostile_site.op
    settings_window = 2
    settings.OAUTH_CLIENT = op.client_settings(JWKS_MIN_REFETCH_SECONDS=settings_window)
    cache.clear()
    browser = signed_in(hostile_site)
    endpoint = hostile_site.url + "/oauth/backchannel-logout/"
    assert (
        requests.post(endpoint, data={"logout_token": forged_logout_token(op, "forged")}, timeout=30).status_code == 400
    )
    new = op.rotate_signing_key(keep_old=True)
    now = int(time.time())
    claims = {
        "iss": op.issuer,
        "aud": op.client_id,
        "iat": now,
        "exp": now + 120,
        "jti": "genuine-after-rotation",
        "sub": op.subject,
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    genuine = sign(claims, new, header={"alg": "RS256", "kid": new.get("kid"), "typ": "logout+jwt"})

    first = requests.post(endpoint, data={"logout_token": genuine}, timeout=30)
    assert first.status_code == 503 and int(first.headers["Retry-After"]) == settings_window
    assert browser.get(hostile_site.url + "/account/", allow_redirects=False).status_code == 200  # not ended

    time.sleep(settings_window + 0.5)
    retry = requests.post(endpoint, data={"logout_token": genuine}, timeout=30)
    assert retry.status_code == 200 and retry.json() == {"sessions_ended": 1}
    assert browser.get(hostile_site.url + "/account/", allow_redirects=False).status_code == 302


# -- outages and junk during refresh: never a logout, never a 500, bounded time ---------------------------------


def _outage(status: int, body: object, headers: dict[str, str] | None = None, chunked: bool = False):
    # Answered before the provider looks at the request (a proxy, a WAF, maintenance): the refresh token is
    # not spent, so once the provider is back the same session refreshes. (A provider that rotates the token
    # and then loses its answer cannot be recovered from by any client, short of a reuse grace period.)
    return lambda op: setattr(op, "token_outage", Reply(status, body, headers or {}, chunked=chunked))


ONE_MB_OF_JSON = {"access_token": "a", "token_type": "Bearer", "padding": "x" * MB}

OUTAGES = {
    "503 with Retry-After longer than our budget": _outage(503, {"error": "x"}, {"Retry-After": "120"}),
    "429 with an HTTP-date Retry-After": _outage(429, b"", {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}),
    "1 MB response": _outage(200, ONE_MB_OF_JSON),
    "1 MB response without Content-Length": _outage(200, ONE_MB_OF_JSON, chunked=True),
    "HTML instead of JSON": _outage(200, b"<html>maintenance", {"Content-Type": "text/html"}),
    "JSON nested too deeply": _outage(200, b"[" * 100_000 + b"]" * 100_000),
}


@pytest.mark.parametrize("case", list(OUTAGES))
def test_outage_during_refresh_keeps_the_session(hostile_site, case):
    op = hostile_site.op
    browser = signed_in(hostile_site)
    before = active_record()
    OUTAGES[case](op)
    expire_tokens(seconds_ago=10)

    started = time.monotonic()
    resp = browser.get(hostile_site.url + "/account/", allow_redirects=False)
    elapsed = time.monotonic() - started
    assert resp.status_code == 200  # within grace: served with the last tokens
    assert elapsed < 3.0 + 4  # HTTP_RETRY_BUDGET of the hostile settings, plus slack for a busy machine
    after = active_record()
    assert after.is_active and after.refresh_token == before.refresh_token and after.refresh_count == 0

    sensitive = browser.get(hostile_site.url + "/account/sensitive/", allow_redirects=False)
    assert sensitive.status_code == 503 and sensitive.headers["Retry-After"]
    assert active_record().is_active

    # The provider recovers: the same session refreshes and goes on.
    op.reset()
    assert browser.get(hostile_site.url + "/account/", allow_redirects=False).status_code == 200
    assert active_record().refresh_count == 1


def test_refresh_token_rejected_by_the_hostile_provider_signs_out(hostile_site):
    browser = signed_in(hostile_site)
    hostile_site.op.token_outage = Reply(400, {"error": "invalid_grant"}, {"Content-Type": "application/json"})
    expire_tokens()
    resp = browser.get(hostile_site.url + "/account/", allow_redirects=False)
    assert_signed_out_to_sign_in(resp, OAuthSession.EndReason.REFRESH_REJECTED)
