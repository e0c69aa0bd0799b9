"""Sign-in, tokens at rest and sign-out, end to end against the real embedded provider over HTTP."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection

from oauth_client.models import OAuthIdentity, OAuthSession
from tests.browser import Browser, forms

pytestmark = pytest.mark.django_db(transaction=True)


def test_home_offers_sign_in(site):
    resp = Browser().get(site.url + "/")
    assert resp.status_code == 200
    assert 'href="/oauth/login/"' in resp.text


def test_authorize_request_has_every_required_parameter(site):
    resp = Browser().get(site.url + "/oauth/login/?next=/account/", allow_redirects=False)
    assert resp.status_code == 302
    location = urlsplit(resp.headers["Location"])
    assert location.netloc == urlsplit(site.provider.base_url).netloc
    params = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert params["response_type"] == "code"
    assert params["client_id"] == site.provider.client_id
    assert params["redirect_uri"] == site.url + "/oauth/callback/"
    assert set(params["scope"].split()) >= {"openid", "offline_access", "profile", "email"}
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 32 and len(params["nonce"]) >= 32
    assert params["ui_locales"] == "en"


def test_full_sign_in_shows_profile_and_keeps_tokens_on_the_server(site):
    browser = Browser()
    resp = browser.sign_in(site.url, site.provider.username, site.provider.password, "/account/")
    assert resp.status_code == 200 and resp.url == site.url + "/account/"
    assert "Demo User" in resp.text or "demo@example.com" in resp.text
    assert "demo@example.com" in resp.text  # claims shown

    record = OAuthSession.objects.get()
    assert record.is_active and record.refresh_token and record.access_token and record.id_token
    assert record.subject == OAuthIdentity.objects.get().subject
    assert record.issuer == site.provider.issuer
    assert record.user.email == "demo@example.com"

    # Nowhere in the browser: cookies hold only opaque session ids.
    for cookie in browser.cookies:
        for token in (record.access_token, record.refresh_token, record.id_token):
            assert token not in (cookie.value or "")
    # Encrypted at rest: the raw column is not the token.
    with connection.cursor() as cursor:
        cursor.execute("SELECT refresh_token, access_token, id_token FROM oauth_client_oauthsession")
        raw = cursor.fetchone()
    assert record.refresh_token not in raw[0] and raw[0].startswith("gAAAA")
    assert record.access_token not in raw[1] and record.id_token not in raw[2]
    # And not in the session dict either.
    with connection.cursor() as cursor:
        cursor.execute("SELECT session_data FROM django_session")
        for (data,) in cursor.fetchall():
            assert record.refresh_token not in data


def test_anonymous_profile_redirects_to_sign_in_with_next(site):
    resp = Browser().get(site.url + "/account/", allow_redirects=False)
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/oauth/login/?next=%2Faccount%2F"


def test_second_sign_in_reuses_the_user(site):
    site.signed_in_browser()
    site.signed_in_browser()
    assert OAuthIdentity.objects.count() == 1
    assert OAuthSession.objects.count() == 2


@pytest.mark.parametrize("next_url", ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:x"])
def test_unsafe_next_is_ignored(site, next_url):
    resp = site.signed_in_browser(next_url=next_url).get(site.url + "/")
    assert resp.url.startswith(site.url)
    b = Browser()
    resp = b.sign_in(site.url, site.provider.username, site.provider.password, next_url)
    assert resp.url == site.url + "/account/"


def test_logout_revokes_at_provider_and_ends_provider_session(site):
    browser = site.signed_in_browser()
    record = OAuthSession.objects.get()
    refresh_token = record.refresh_token
    assert not site.provider.is_refresh_token_revoked(refresh_token)

    profile = browser.get(site.url + "/account/")
    form = browser.find_form(profile, action="/oauth/logout/")
    resp = browser.submit(profile, form)
    # The RP-initiated logout form posts the id_token_hint to the provider (never in a URL).
    assert resp.status_code == 200
    end_session = browser.find_form(resp, with_field="id_token_hint")
    assert end_session.action.startswith(site.provider.base_url)
    assert end_session.fields["post_logout_redirect_uri"] == site.url + "/"
    assert refresh_token not in resp.text

    assert site.provider.is_refresh_token_revoked(refresh_token)
    record.refresh_from_db()
    assert record.ended_reason == OAuthSession.EndReason.LOGOUT and not record.refresh_token

    final = browser.submit(resp, end_session)
    assert final.url == site.url + "/"
    assert 'href="/oauth/login/"' in final.text
    # Signed out at the provider too: signing in again asks for the password.
    again = browser.get(site.url + "/oauth/login/")
    assert "password" in browser.find_form(again, with_field="password").fields


def test_logout_requires_post(site):
    browser = site.signed_in_browser()
    assert browser.get(site.url + "/oauth/logout/").status_code == 405
    assert browser.get(site.url + "/account/").url == site.url + "/account/"


def test_logout_without_csrf_token_is_refused(site):
    browser = site.signed_in_browser()
    assert browser.post(site.url + "/oauth/logout/").status_code == 403
    assert OAuthSession.objects.get().is_active


def test_two_tabs_can_sign_in_at_once(site):
    """Each attempt keeps its own state, nonce and verifier; finishing one does not break the other."""
    browser = Browser()
    # Tab 1 starts signing in: the site sends it to the provider's /authorize (it stops there for now).
    tab1 = browser.get(site.url + "/oauth/login/?next=/account/", allow_redirects=False).headers["Location"]
    # Tab 2 signs in completely.
    resp = browser.sign_in(site.url, site.provider.username, site.provider.password, "/account/sensitive/")
    assert resp.url == site.url + "/account/sensitive/"
    # Tab 1 goes on: the provider session exists now, so only consent is asked, and the site accepts it.
    resp = browser.get(tab1)
    if "allow" in {n for f in forms(resp.text) for n in f.buttons}:
        resp = browser.submit(resp, browser.find_form(resp, with_field="allow"), button="allow")
    assert resp.url == site.url + "/account/", resp.text[:500]
    # The newer sign-in replaced the older record; exactly one is active.
    assert OAuthSession.objects.filter(ended_at__isnull=True).count() == 1


def test_session_auth_hash_is_still_verified(site):
    """The user loaded with the token record still goes through Django's session-hash check."""
    browser = site.signed_in_browser()
    user = OAuthSession.objects.get().user
    user.set_password("changed-elsewhere")  # changes the session auth hash, as a password reset would
    user.save()
    resp = browser.get(site.url + "/account/", allow_redirects=False)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/oauth/login/")
