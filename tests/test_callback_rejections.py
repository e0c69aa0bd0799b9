"""Every way a callback can be wrong gets a clear 4xx page and no session."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from oauth_client.models import OAuthSession
from tests.browser import Browser

pytestmark = pytest.mark.django_db(transaction=True)


def start(site, browser: Browser) -> dict[str, str]:
    """Begin a sign-in on the site; return the authorize parameters (state, nonce, …)."""
    resp = browser.get(site.url + "/oauth/login/", allow_redirects=False)
    return {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["Location"]).query).items()}


def approve(site, browser: Browser, button: str | None = "allow") -> str:
    """Go through the provider's pages and return the callback URL instead of following it (button=None: Cancel,
    the consent form sent without its "allow" button)."""
    resp = browser.get(site.url + "/oauth/login/")
    resp = browser.submit(
        resp,
        browser.find_form(resp, with_field="password"),
        {"username": site.provider.username, "password": site.provider.password},
    )
    form = browser.find_form(resp, with_field="allow")
    resp = browser.submit(resp, form, button=button, allow_redirects=False)
    while not resp.headers["Location"].startswith(site.url + "/oauth/callback/"):
        resp = browser.get(resp.headers["Location"], allow_redirects=False)
    return resp.headers["Location"]


def assert_refused(resp, status=400):
    assert resp.status_code == status, resp.text[:500]
    assert "Sign-in failed" in resp.text
    assert not OAuthSession.objects.exists()


def test_missing_state(site):
    b = Browser()
    start(site, b)
    assert_refused(b.get(site.url + "/oauth/callback/?code=abc"))


def test_unknown_state(site):
    b = Browser()
    start(site, b)
    assert_refused(b.get(site.url + "/oauth/callback/?code=abc&state=forged"))


def test_state_from_another_browser(site):
    attacker = Browser()
    params = start(site, attacker)
    victim = Browser()
    start(site, victim)
    assert_refused(victim.get(site.url + f"/oauth/callback/?code=abc&state={params['state']}"))


def test_replayed_callback(site):
    b = Browser()
    callback = approve(site, b)
    assert b.get(callback).url == site.url + "/account/"
    OAuthSession.objects.all().delete()
    assert_refused(b.get(callback))


def test_provider_error(site):
    b = Browser()
    params = start(site, b)
    # With the provider's issuer, as RFC 9207 §2.4 has a provider that advertises it send errors.
    error = {"error": "access_denied", "state": params["state"], "iss": site.provider.issuer}
    resp = b.get(site.url + "/oauth/callback/", params=error)
    assert_refused(resp)
    assert "access_denied" in resp.text
    # The state was used up by the error response.
    assert_refused(b.get(site.url + "/oauth/callback/", params={"code": "x", "state": params["state"]}))


def test_cancelling_at_the_provider_without_iss_is_refused_as_unattributable(site):
    """The real Cancel button of django-oauth-toolkit: it advertises RFC 9207 (authorization_response_iss_parameter_
    supported) but puts `iss` on success redirects only. §2.4: an answer without `iss` from such a provider is
    rejected, error responses included, so the page does not present the error as the provider's."""
    b = Browser()
    location = approve(site, b, button=None)
    callback = parse_qs(urlsplit(location).query)
    assert callback["error"] == ["access_denied"] and "iss" not in callback
    resp = b.get(location)
    assert_refused(resp)
    assert "could not be accepted" in resp.text and "access_denied" not in resp.text


def test_provider_error_is_escaped(site):
    b = Browser()
    params = start(site, b)
    resp = b.get(
        site.url + "/oauth/callback/",
        params={
            "error": "<script>alert(1)</script>",
            "error_description": "<b>x</b>",
            "state": params["state"],
            "iss": site.provider.issuer,
        },
    )
    assert_refused(resp)
    assert "<script>alert(1)</script>" not in resp.text and "&lt;script&gt;" in resp.text


def test_token_endpoint_error(site):
    b = Browser()
    params = start(site, b)
    resp = b.get(site.url + "/oauth/callback/", params={"code": "not-a-real-code", "state": params["state"]})
    assert_refused(resp)
    assert "not-a-real-code" not in resp.text  # not even in the language switcher's return address


def test_missing_code(site):
    b = Browser()
    params = start(site, b)
    assert_refused(b.get(site.url + "/oauth/callback/", params={"state": params["state"]}))


def test_mismatched_iss_parameter(site):
    b = Browser()
    callback = approve(site, b)
    assert_refused(b.get(callback + "&iss=https%3A%2F%2Fevil.example%2F"))


def test_oversized_state(site):
    b = Browser()
    start(site, b)
    assert_refused(b.get(site.url + "/oauth/callback/", params={"code": "x", "state": "s" * 10_000}))


def test_json_client_gets_json_error(site):
    b = Browser()
    start(site, b)
    resp = b.get(site.url + "/oauth/callback/?code=abc&state=forged", headers={"Accept": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_state"
