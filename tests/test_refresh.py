"""Transparent refresh against the real embedded provider (rotation and reuse protection on)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from oauth_client import http, signals
from oauth_client.models import OAuthSession
from tests.helpers import active_record, clear_due_hints, client_for, expire_tokens, revoke_at_provider

pytestmark = pytest.mark.django_db(transaction=True)


def test_expired_tokens_are_refreshed_inside_the_request(site):
    browser = site.signed_in_browser()
    before = active_record()
    issued = site.provider.count_refresh_tokens()
    expire_tokens()

    resp = browser.get(site.url + "/account/", allow_redirects=False)
    assert resp.status_code == 200

    after = active_record()
    assert after.pk == before.pk
    assert site.provider.count_refresh_tokens() == issued + 1  # exactly one grant at the provider
    assert after.refresh_token != before.refresh_token  # rotated
    assert site.provider.is_refresh_token_revoked(before.refresh_token)
    assert not site.provider.is_refresh_token_revoked(after.refresh_token)
    assert after.access_token != before.access_token
    assert after.access_expires_at > timezone.now() + timedelta(seconds=60)
    assert after.refresh_count == 1 and after.last_refreshed_at is not None
    assert after.version > before.version
    assert after.subject == before.subject


def _no_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("fresh tokens must not touch the network")

    monkeypatch.setattr(http, "request", no_network)
    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", no_network)


def _queries(client, path):
    with CaptureQueriesContext(connection) as captured:
        assert client.get(path).status_code == 200
    return [q["sql"] for q in captured.captured_queries]


@pytest.mark.urls("tests.extension")
def test_fresh_tokens_cost_one_read_and_no_network(site, monkeypatch):
    browser = site.signed_in_browser()
    client = client_for(browser)
    _no_network(monkeypatch)
    client.get("/ext/whoami/")  # the first request after sign-in may correct the session's hint
    # A view that reads the tokens (get_tokens) but calls no API (the profile page calls userinfo): Django's
    # session and user reads, plus one indexed read of the token record.
    queries = _queries(client, "/ext/whoami/")
    ours = [sql for sql in queries if "oauth_client_oauthsession" in sql]
    assert len(ours) == 1 and ours[0].lstrip().upper().startswith("SELECT"), queries
    assert len(queries) == 3, queries


@pytest.mark.urls("tests.extension")
def test_a_page_that_reads_no_tokens_costs_what_plain_session_auth_costs(site, monkeypatch, django_user_model):
    browser = site.signed_in_browser()
    oauth_client = client_for(browser)
    _no_network(monkeypatch)
    oauth_client.get("/ext/hello/")
    oauth_queries = _queries(oauth_client, "/ext/hello/")
    assert not [sql for sql in oauth_queries if "oauth_client" in sql], oauth_queries

    plain = django_user_model.objects.create_user("plain-person", password="plain-password-1")
    from django.test import Client

    plain_client = Client()
    plain_client.force_login(plain, backend="django.contrib.auth.backends.ModelBackend")
    plain_client.get("/ext/plain-hello/")
    plain_queries = _queries(plain_client, "/ext/plain-hello/")
    assert len(oauth_queries) == len(plain_queries) == 2, (oauth_queries, plain_queries)


@pytest.mark.parametrize(("expires_in", "grants"), [(50, 1), (70, 0)], ids=["within leeway", "outside leeway"])
def test_hour_long_tokens_are_refreshed_within_the_leeway(site, expires_in, grants):
    """Tokens issued an hour ago are refreshed once they expire within REFRESH_LEEWAY (60 s), not before."""
    browser = site.signed_in_browser()
    now = timezone.now()
    OAuthSession.objects.update(
        created_at=now - timedelta(hours=1),
        access_expires_at=now + timedelta(seconds=expires_in),
        id_token_expires_at=now + timedelta(seconds=expires_in),
    )
    clear_due_hints()
    issued = site.provider.count_refresh_tokens()
    assert browser.get(site.url + "/").status_code == 200
    assert site.provider.count_refresh_tokens() == issued + grants


def test_refresh_sends_signal(site):
    browser = site.signed_in_browser()
    received = []

    def receiver(sender, record, request, **kwargs):
        received.append(record.refresh_count)

    signals.tokens_refreshed.connect(receiver)
    try:
        expire_tokens()
        browser.get(site.url + "/account/")
    finally:
        signals.tokens_refreshed.disconnect(receiver)
    assert received == [1]


def test_sensitive_page_always_refreshes(site):
    browser = site.signed_in_browser()
    issued = site.provider.count_refresh_tokens()
    page = browser.get(site.url + "/account/sensitive/")
    assert page.status_code == 200 and "Last refreshed" in page.text
    assert site.provider.count_refresh_tokens() == issued + 1
    browser.get(site.url + "/account/sensitive/")
    assert site.provider.count_refresh_tokens() == issued + 2

    form = browser.find_form(page, with_field="display_name")
    done = browser.submit(page, form, {"display_name": "Renamed Person"})
    assert done.status_code == 200 and "Renamed Person" in done.text
    # POST refreshed, then the redirected GET refreshed again.
    assert site.provider.count_refresh_tokens() == issued + 4
    assert active_record().refresh_count == 4


def test_refresh_max_age_is_honoured(site, rf):
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.http import HttpResponse

    from oauth_client import refresh_tokens

    calls = []

    @refresh_tokens(max_age=300)
    def view(request):
        calls.append(1)
        return HttpResponse("ok")

    browser = site.signed_in_browser()
    client = client_for(browser)
    issued = site.provider.count_refresh_tokens()

    def run():
        request = rf.get("/x")
        SessionMiddleware(lambda r: HttpResponse()).process_request(request)
        request.session = client.session
        from django.contrib.auth import get_user

        request.user = get_user(request)
        return view(request)

    assert run().status_code == 200
    assert site.provider.count_refresh_tokens() == issued + 1  # never refreshed yet → refresh
    assert run().status_code == 200
    assert site.provider.count_refresh_tokens() == issued + 1  # refreshed < 300 s ago → not again
    OAuthSession.objects.update(last_refreshed_at=timezone.now() - timedelta(seconds=301))
    assert run().status_code == 200
    assert site.provider.count_refresh_tokens() == issued + 2
    assert len(calls) == 3


def test_site_never_reuses_a_rotated_refresh_token(site):
    browser = site.signed_in_browser()
    first = active_record().refresh_token
    for _ in range(3):
        expire_tokens()
        assert browser.get(site.url + "/account/").status_code == 200
    current = active_record().refresh_token
    user_tokens = [r for r in site.provider.refresh_token_rows() if r["token"] in (first, current)]
    assert len(user_tokens) == 2
    # Of this session's family only the newest token is live, and the session works: nothing was reused.
    live = [r["token"] for r in site.provider.active_refresh_tokens()]
    assert current in live and first not in live

    # Presenting a rotated-out token, as a buggy client would, is refused by the provider…
    resp = requests.post(
        site.provider.issuer + "/token/",
        data={"grant_type": "refresh_token", "refresh_token": first},
        auth=(site.provider.client_id, site.provider.client_secret),
        timeout=10,
    )
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    # …and revokes the whole family (reuse protection), so the user would be signed out.
    assert site.provider.is_refresh_token_revoked(current)


def test_revoked_refresh_token_sends_html_to_sign_in_with_next(site):
    browser = site.signed_in_browser()
    revoke_at_provider(site.provider, active_record().refresh_token)
    expire_tokens()
    resp = browser.get(site.url + "/account/?tab=1", allow_redirects=False)
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/oauth/login/?next=%2Faccount%2F%3Ftab%3D1"
    record = OAuthSession.objects.get()
    assert record.ended_reason == OAuthSession.EndReason.REFRESH_REJECTED and not record.refresh_token
    # The session is signed out: the home page offers sign-in, with the message.
    home = browser.get(site.url + "/")
    assert 'href="/oauth/login/"' in home.text and "Please sign in again" in home.text


def test_revoked_refresh_token_gives_json_401(site):
    browser = site.signed_in_browser()
    revoke_at_provider(site.provider, active_record().refresh_token)
    expire_tokens()
    resp = browser.get(site.url + "/account/", headers={"Accept": "application/json"}, allow_redirects=False)
    assert resp.status_code == 401
    body = resp.json()
    assert body["error"] == "reauthentication_required"
    assert body["login_url"] == "/oauth/login/?next=%2Faccount%2F"
    resp = browser.get(site.url + "/account/", headers={"X-Requested-With": "XMLHttpRequest"}, allow_redirects=False)
    assert resp.status_code == 401


def test_no_refresh_token_ends_session_at_expiry(site):
    browser = site.signed_in_browser()
    OAuthSession.objects.update(refresh_token="")
    expire_tokens()
    resp = browser.get(site.url + "/account/", allow_redirects=False)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/oauth/login/")
    assert OAuthSession.objects.get().ended_reason == OAuthSession.EndReason.NO_REFRESH_TOKEN


def test_signing_in_on_another_device_does_not_end_the_first_session(site):
    """The embedded provider (django-oauth-toolkit) puts the user's latest sign-in anywhere (`last_login`) in every
    ID token's auth_time, refreshed ones included. The same person signing in on a second device a second later
    must not end the first device's session at its next refresh; it keeps its own authentication time."""
    first = site.signed_in_browser()
    original = active_record().claims["auth_time"]
    time.sleep(1.1)  # auth_time has one-second resolution
    site.signed_in_browser()
    first_record = OAuthSession.objects.order_by("created_at").first()
    assert first_record is not None
    past = timezone.now() - timedelta(seconds=1)
    OAuthSession.objects.filter(pk=first_record.pk).update(access_expires_at=past, id_token_expires_at=past)
    clear_due_hints()
    assert first.get(site.url + "/account/", allow_redirects=False).status_code == 200
    first_record.refresh_from_db()
    assert first_record.ended_at is None and first_record.refresh_count == 1
    assert first_record.claims["auth_time"] == original
