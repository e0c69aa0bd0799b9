"""A rotated refresh token is never lost, and nobody is signed out for a fault that is not theirs.

Against the hostile provider (tests/hostile.py), which rotates refresh tokens, refuses spent ones and records
every reuse, as Auth0 does before it revokes the whole token family. Faults are injected at the network edge
(the provider's JWKS answer) or the database edge (Django's public `connection.execute_wrapper`).
"""

from __future__ import annotations

import logging
import time

import pytest
from django.db import DatabaseError, connection

from oauth_client import signals, store
from oauth_client.exceptions import TokenRefreshUnavailable
from oauth_client.models import OAuthSession
from tests.browser import Browser
from tests.helpers import active_record, expire_tokens
from tests.hostile import OMIT, Reply

pytestmark = pytest.mark.django_db(transaction=True)


def signed_in(hostile_site) -> Browser:
    browser = Browser()
    resp = hostile_site.sign_in(browser, next_url="/account/")
    assert resp.status_code == 200 and resp.url.startswith(hostile_site.url), resp.text[:500]
    return browser


def is_signed_in(hostile_site, browser: Browser) -> bool:
    return browser.get(hostile_site.url + "/account/", allow_redirects=False).status_code == 200


def newest_refresh_token(op) -> str:
    return op.issued["refresh_token"][-1]


# -- 1. once the provider answered 200, its new refresh token is kept ---------------------------------------


def test_jwks_outage_after_the_provider_rotated_keeps_the_new_refresh_token(hostile_site):
    """The refresh answer's ID token is signed with a new key and the JWKS cannot be fetched: the new refresh
    token is stored, the page is served in grace, and the next refresh presents the new token, not the spent one."""
    op = hostile_site.op
    browser = signed_in(hostile_site)
    before = active_record()
    op.rotate_signing_key(keep_old=True)
    op.jwks_outage = Reply(503, b"", {"Retry-After": "0"})
    expire_tokens()

    assert is_signed_in(hostile_site, browser)  # served with the last tokens (REFRESH_GRACE)
    kept = active_record()
    assert op.grants.count("refresh_token") == 1
    assert kept.refresh_token == newest_refresh_token(op) != before.refresh_token
    assert kept.access_token == before.access_token and kept.id_token == before.id_token
    assert kept.version > before.version and kept.refresh_count == 0

    # The sensitive page needs fresh tokens: 503 while the keys are unreachable, the session still kept.
    assert browser.get(hostile_site.url + "/account/sensitive/", allow_redirects=False).status_code == 503

    op.jwks_outage = None
    assert is_signed_in(hostile_site, browser)
    after = active_record()
    assert after.refresh_count == 1 and after.access_token != before.access_token
    assert op.reused == [], "a spent refresh token was presented"


def test_database_error_at_the_write_keeps_the_new_refresh_token(hostile_site):
    """The provider answered, then the UPDATE failed: the new refresh token is saved in a transaction of its own."""
    op = hostile_site.op
    signed_in(hostile_site)
    record = active_record()
    expire_tokens()
    record.refresh_from_db()
    failed = []

    def fail_first_token_write(execute, sql, params, many, context):
        if not failed and sql.lstrip().upper().startswith("UPDATE") and "access_token" in sql:
            failed.append(sql)
            raise DatabaseError("simulated failure at the write")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail_first_token_write), pytest.raises(TokenRefreshUnavailable):
        store.token_store().refresh(record)
    assert failed
    kept = active_record()
    assert kept.refresh_token == newest_refresh_token(op) != record.refresh_token
    assert kept.access_token == record.access_token

    refreshed = store.token_store().refresh(kept)
    assert refreshed.refresh_count == 1 and refreshed.refresh_token == newest_refresh_token(op)
    assert op.reused == []


@pytest.mark.parametrize(
    "claims",
    [
        lambda now: {"exp": now - 3600, "iat": now - 7200},
        lambda now: {"iat": now + 3600, "exp": now + 7200},
    ],
    ids=["already expired", "issued in the future"],
)
def test_clock_skew_in_a_refreshed_id_token_keeps_the_session_and_the_new_token(hostile_site, claims):
    """A clock wrong beyond CLOCK_LEEWAY (ours or the provider's) is nobody's fault who is signed in."""
    op = hostile_site.op
    browser = signed_in(hostile_site)
    before = active_record()
    op.id_token_claims = claims(int(time.time()))
    expire_tokens()
    assert is_signed_in(hostile_site, browser)  # grace
    kept = active_record()
    assert kept.refresh_token == newest_refresh_token(op) != before.refresh_token
    assert kept.access_token == before.access_token and op.revoked == []
    op.id_token_claims = {}
    assert is_signed_in(hostile_site, browser)
    assert active_record().refresh_count == 1 and op.reused == []


def test_original_auth_time_is_kept_when_a_refresh_omits_it(hostile_site):
    """§12.2 compares with the original authentication: a refresh that leaves auth_time out must not let the next
    one change it."""
    op = hostile_site.op
    browser = signed_in(hostile_site)
    original = active_record().claims["auth_time"]
    op.id_token_claims = {"auth_time": OMIT}
    expire_tokens()
    assert is_signed_in(hostile_site, browser)
    assert active_record().claims["auth_time"] == original
    # A provider that moves auth_time (to the person's latest sign-in elsewhere) does not end the session, and the
    # session keeps the original authentication time.
    op.id_token_claims = {"auth_time": original - 60}
    expire_tokens()
    assert is_signed_in(hostile_site, browser)
    assert active_record().claims["auth_time"] == original and active_record().refresh_count == 2


def test_commit_failure_after_the_provider_answered_keeps_the_new_refresh_token(hostile_site, monkeypatch):
    """The UPDATE went through and then the COMMIT failed (a dropped connection): the rotation is still kept."""
    op = hostile_site.op
    signed_in(hostile_site)
    record = active_record()
    expire_tokens()
    record.refresh_from_db()
    real_commit, failed = connection.commit, []

    def commit_fails_once() -> None:
        if not failed:
            failed.append(True)
            connection.rollback()
            raise DatabaseError("simulated failure at COMMIT")
        real_commit()

    # Django's atomic() commits through the connection's public commit(); the first one fails.
    monkeypatch.setattr(connection, "commit", commit_fails_once)
    with pytest.raises(TokenRefreshUnavailable):
        store.token_store().refresh(record)
    monkeypatch.undo()
    assert failed
    kept = active_record()
    assert kept.refresh_token == newest_refresh_token(op) != record.refresh_token
    assert store.token_store().refresh(kept).refresh_count == 1 and op.reused == []


# -- 1c and 2. a refresh answer rejected for good: session ended, new refresh token revoked --------------------


REJECTED_REFRESHES = {
    # OIDC Core §12.2: iss, sub, aud and azp as at sign-in; a nonce, if any, the original. (A changed auth_time is
    # not taken, and does not end the session: test_original_auth_time_is_kept_when_a_refresh_omits_it.)
    "other subject": {"sub": "mallory-0002"},
    "other audience added": lambda op: {"aud": [op.client_id, "another-client"], "azp": op.client_id},
    "azp appears": lambda op: {"azp": op.client_id},
    "nonce differs": {"nonce": "a-nonce-we-never-sent"},
}


@pytest.mark.parametrize("case", list(REJECTED_REFRESHES))
def test_refresh_rejected_for_good_ends_the_session_and_revokes_the_new_token(hostile_site, case):
    op = hostile_site.op
    browser = signed_in(hostile_site)
    record = active_record()
    change = REJECTED_REFRESHES[case]
    op.id_token_claims = change(op) if callable(change) else change
    expire_tokens()

    resp = browser.get(hostile_site.url + "/account/", allow_redirects=False)
    assert resp.status_code == 302 and "/oauth/login/" in resp.headers["Location"]
    ended = OAuthSession.objects.get(pk=record.pk)
    expected = OAuthSession.EndReason.SUBJECT_CHANGED if case == "other subject" else "refresh_rejected"
    assert ended.ended_reason == expected and ended.refresh_token == ""
    # The token the provider just issued is not left alive at the provider.
    assert newest_refresh_token(op) in op.revoked


@pytest.mark.parametrize(
    "claims",
    [{}, {"sid": "kept-sid"}],
    ids=["auth_time and no nonce, as at sign-in", "other claims may change"],
)
def test_refreshed_id_token_that_keeps_the_original_claims_is_accepted(hostile_site, claims):
    op = hostile_site.op
    browser = signed_in(hostile_site)
    op.id_token_claims = claims
    expire_tokens()
    assert is_signed_in(hostile_site, browser)
    assert active_record().refresh_count == 1


def test_repeated_original_nonce_is_accepted(hostile_site):
    op = hostile_site.op
    browser = signed_in(hostile_site)
    op.id_token_claims = {"nonce": active_record().claims["nonce"]}
    expire_tokens()
    assert is_signed_in(hostile_site, browser)
    assert active_record().refresh_count == 1


# -- 3. the provider refuses our client: a configuration fault, not the user's --------------------------------


@pytest.mark.parametrize("error", ["invalid_client", "unauthorized_client"])
def test_client_rejected_at_refresh_keeps_every_session(hostile_site, error, caplog):
    """An expired client secret (Entra ID secrets expire by design) must not sign the user base out one request
    at a time: grace for pages, 503 for sensitive ones, one ERROR line, a signal; fixed → everybody carries on."""
    op = hostile_site.op
    browser = signed_in(hostile_site)
    before = active_record()
    op.token_outage = Reply(
        401 if error == "invalid_client" else 400, {"error": error}, {"Content-Type": "application/json"}
    )
    rejected = []

    def receiver(sender, error, request, **kwargs):
        rejected.append(error.error)

    signals.client_rejected.connect(receiver)
    caplog.set_level(logging.ERROR, logger="oauth_client.store")
    try:
        expire_tokens()
        assert is_signed_in(hostile_site, browser)
        assert browser.get(hostile_site.url + "/account/sensitive/", allow_redirects=False).status_code == 503
    finally:
        signals.client_rejected.disconnect(receiver)
    kept = active_record()
    assert kept.pk == before.pk and kept.refresh_token == before.refresh_token
    assert rejected and set(rejected) == {error}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name.startswith("oauth_client")]
    assert errors and all("rejected this client" in r.getMessage() for r in errors)
    assert all(before.refresh_token[:16] not in r.getMessage() for r in caplog.records)

    op.token_outage = None  # the secret is renewed
    assert is_signed_in(hostile_site, browser)
    assert active_record().refresh_count == 1 and op.reused == []


def test_client_rejected_past_grace_answers_503_not_sign_in(hostile_site, settings):
    op = hostile_site.op
    browser = signed_in(hostile_site)
    op.token_outage = Reply(401, {"error": "invalid_client"}, {"Content-Type": "application/json"})
    expire_tokens(seconds_ago=3600)  # far past REFRESH_GRACE
    resp = browser.get(hostile_site.url + "/account/", allow_redirects=False)
    assert resp.status_code == 503
    assert active_record().is_active
