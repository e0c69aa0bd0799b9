"""Extension points, end to end against the real provider: the three dotted-path hooks, the CBV mixins and
template overrides (tests/extension.py holds what a developer would write)."""

from __future__ import annotations

from importlib import import_module
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import BACKEND_SESSION_KEY
from django.contrib.auth.signals import user_logged_in, user_login_failed

from oauth_client.models import OAuthIdentity, OAuthSession
from tests.browser import Browser
from tests.conftest import client_settings
from tests.helpers import active_record

pytestmark = pytest.mark.django_db(transaction=True)


def configure(site, settings, **hooks: str) -> None:
    settings.OAUTH_CLIENT = client_settings(site.provider, **hooks)


def test_user_mapper_can_reject_a_sign_in(site, settings):
    configure(site, settings, USER_MAPPER="tests.extension.only_example_org")
    resp = Browser().sign_in(site.url, site.provider.username, site.provider.password)
    assert resp.status_code == 403
    assert "Only example.org accounts may sign in here." in resp.text
    assert not OAuthSession.objects.exists() and not OAuthIdentity.objects.exists()
    # Nobody is signed in on the site.
    assert Browser().get(site.url + "/account/", allow_redirects=False).status_code == 302


def test_user_mapper_can_create_and_update_users(site, settings):
    configure(site, settings, USER_MAPPER="tests.extension.display_name_from_claims")
    browser = site.signed_in_browser(next_url="/account/")
    user = active_record().user
    assert user.display_name == "Demo User (from the provider)"
    assert user.email == "demo@example.com"  # the default mapper's update still ran
    assert "Profile of Demo User (from the provider)" in browser.get(site.url + "/account/").text


def test_a_backend_subclass_maps_users_and_a_refusal_sends_user_login_failed(site, settings):
    settings.AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.ModelBackend",
        "tests.extension.ExampleOrgBackend",
    ]
    failed, logged_in = [], []

    def on_failed(sender, credentials, request, **kwargs):
        failed.append(credentials)

    def on_logged_in(sender, request, user, **kwargs):
        logged_in.append(user)

    user_login_failed.connect(on_failed)
    user_logged_in.connect(on_logged_in)
    try:
        resp = Browser().sign_in(site.url, site.provider.username, site.provider.password)
        assert resp.status_code == 403 and "Only example.org accounts may sign in here." in resp.text
        assert not OAuthSession.objects.exists() and not OAuthIdentity.objects.exists()
        assert len(failed) == 1 and logged_in == []
        # Django's authenticate() sent it, with our backend's credentials masked (the claims are personal data).
        assert set(failed[0]) == {"id_token_claims"} and "example.com" not in repr(failed[0])

        settings.AUTHENTICATION_BACKENDS = ["tests.extension.AnyoneBackend"]
        browser = site.signed_in_browser(next_url="/account/")
    finally:
        user_login_failed.disconnect(on_failed)
        user_logged_in.disconnect(on_logged_in)
    user = active_record().user
    assert logged_in == [user] and len(failed) == 1
    assert user.display_name == "Demo User (from the backend)" and user.email == "demo@example.com"
    # Django remembers which backend signed the person in, and reloads the user through it on every request.
    session = import_module(django_settings.SESSION_ENGINE).SessionStore(browser.cookies.get("sessionid"))
    assert session[BACKEND_SESSION_KEY] == "tests.extension.AnyoneBackend"
    assert browser.get(site.url + "/account/", allow_redirects=False).status_code == 200


def test_error_view_hook_renders_every_sign_in_error(site, settings):
    configure(site, settings, ERROR_VIEW="tests.extension.branded_error")
    browser = Browser()
    browser.get(site.url + "/oauth/login/", allow_redirects=False)
    resp = browser.get(site.url + "/oauth/callback/?code=abc&state=forged")
    assert resp.status_code == 400
    assert "<h1>Branded: Sign-in failed</h1>" in resp.text and "invalid_state" in resp.text
    # JSON clients still get JSON, not the HTML hook.
    resp = browser.get(site.url + "/oauth/callback/?code=abc&state=forged", headers={"Accept": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_state"


def test_default_error_page_uses_the_sites_template_override(site):
    # templates/oauth_client/base.html (the site's) replaces the app's base: the error page has the site's header.
    resp = Browser().get(site.url + "/oauth/callback/?code=abc&state=forged")
    assert resp.status_code == 400
    assert "Sign-in failed" in resp.text and "OIDC refresh demo" in resp.text


def test_login_redirect_hook_decides_where_sign_in_lands(site, settings):
    configure(site, settings, LOGIN_REDIRECT="tests.extension.to_sensitive_page")
    resp = Browser().sign_in(site.url, site.provider.username, site.provider.password)
    assert resp.status_code == 200 and resp.url == site.url + "/account/sensitive/"
    # An explicit, safe `next` still wins over the hook.
    resp = Browser().sign_in(site.url, site.provider.username, site.provider.password, "/")
    assert resp.url == site.url + "/"


def test_a_subclassed_login_view_can_add_parameters(site, rf):
    from oauth_client.views import LoginView

    class LoginWithHint(LoginView):
        def authorization_params(self, request, state, nonce, verifier):
            return {**super().authorization_params(request, state, nonce, verifier), "login_hint": "demo"}

    request = rf.get("/oauth/login/")
    from django.contrib.sessions.backends.db import SessionStore

    request.session = SessionStore()
    resp = LoginWithHint.as_view()(request)
    params = {k: v[0] for k, v in parse_qs(urlsplit(resp["Location"]).query).items()}
    assert params["login_hint"] == "demo" and params["code_challenge_method"] == "S256"


@pytest.mark.urls("tests.extension")
def test_login_required_mixin(site):
    resp = Browser().get(site.url + "/ext/whoami/", allow_redirects=False)
    assert resp.status_code == 302 and resp.headers["Location"] == "/oauth/login/?next=%2Fext%2Fwhoami%2F"
    resp = Browser().get(site.url + "/ext/whoami/", headers={"Accept": "application/json"})
    assert resp.status_code == 401 and resp.json() == {"error": "login_required", "login_url": resp.json()["login_url"]}

    browser = site.signed_in_browser(next_url="/ext/whoami/")
    resp = browser.get(site.url + "/ext/whoami/")
    assert resp.status_code == 200 and resp.json()["sub"] == active_record().subject


@pytest.mark.urls("tests.extension")
def test_refresh_tokens_mixin_with_max_age(site):
    browser = site.signed_in_browser()
    issued = site.provider.count_refresh_tokens()
    page = browser.get(site.url + "/account/")
    csrf = browser.cookies.get("csrftoken")
    headers = {"X-CSRFToken": csrf, "Referer": page.url}
    for _ in range(2):
        resp = browser.post(site.url + "/ext/sensitive/", headers=headers)
        assert resp.status_code == 200 and resp.json() == {"done": True, "refreshed": True}
    # The first POST refreshed; the second was within refresh_max_age (300 s).
    assert site.provider.count_refresh_tokens() == issued + 1


def test_signals_carry_the_documented_arguments(site):
    from oauth_client import signals
    from tests.helpers import expire_tokens, revoke_at_provider

    received: list[tuple[str, dict]] = []

    def recorder(name):
        def receiver(sender, **kwargs):
            assert sender is OAuthSession
            kwargs.pop("signal")
            received.append((name, kwargs))

        return receiver

    receivers = {
        name: recorder(name)
        for name in ("oauth_login", "tokens_refreshed", "token_refresh_failed", "oauth_session_ended")
    }
    for name, receiver in receivers.items():
        getattr(signals, name).connect(receiver)
    try:
        browser = site.signed_in_browser()
        expire_tokens()
        browser.get(site.url + "/")
        revoke_at_provider(site.provider, active_record().refresh_token)
        expire_tokens()
        browser.get(site.url + "/")
    finally:
        for name, receiver in receivers.items():
            getattr(signals, name).disconnect(receiver)

    names = [name for name, _ in received]
    assert names == ["oauth_login", "tokens_refreshed", "token_refresh_failed", "oauth_session_ended"]
    args = dict(received)
    assert set(args["oauth_login"]) == {"record", "request", "user"}
    assert set(args["tokens_refreshed"]) == {"record", "request"}
    assert set(args["token_refresh_failed"]) == {"record", "request", "error", "transient"}
    assert args["token_refresh_failed"]["transient"] is False
    assert set(args["oauth_session_ended"]) == {"record", "reason", "ended_by"}
    assert args["oauth_session_ended"]["reason"] == OAuthSession.EndReason.REFRESH_REJECTED
    # No token in any argument.
    record = args["oauth_login"]["record"]
    for _, kwargs in received:
        assert record.refresh_token not in repr(kwargs)


def _atomic_requests(monkeypatch) -> None:
    from django.db import connections

    monkeypatch.setitem(connections["default"].settings_dict, "ATOMIC_REQUESTS", True)


@pytest.mark.urls("tests.extension")
def test_a_sensitive_refresh_survives_the_views_rollback_under_atomic_requests(site, monkeypatch):
    """@refresh_tokens refreshes before the view's transaction (OAuthSessionMiddleware.process_view): a view that
    then fails rolls back its own work, not the rotated refresh token, or the next refresh would present a spent
    token and the provider would revoke the family."""
    _atomic_requests(monkeypatch)
    browser = site.signed_in_browser()
    before = active_record()
    issued = site.provider.count_refresh_tokens()
    assert browser.get(site.url + "/ext/sensitive-then-fail/", allow_redirects=False).status_code == 500
    after = active_record()
    assert site.provider.count_refresh_tokens() == issued + 1
    assert after.refresh_count == 1 and after.refresh_token != before.refresh_token
    assert not site.provider.is_refresh_token_revoked(after.refresh_token)
    # The kept token works: the next sensitive request refreshes again and the person stays signed in.
    assert browser.get(site.url + "/account/sensitive/", allow_redirects=False).status_code == 200
    assert site.provider.count_refresh_tokens() == issued + 2


@pytest.mark.urls("tests.extension")
def test_a_refresh_inside_a_views_transaction_is_committed_on_its_own(site, monkeypatch):
    """On PostgreSQL a refresh made inside the view's transaction runs in a connection of its own."""
    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("SQLite joins the view's transaction (check W016)")
    _atomic_requests(monkeypatch)
    browser = site.signed_in_browser()
    before = active_record()
    assert browser.get(site.url + "/ext/refresh-inside-then-fail/", allow_redirects=False).status_code == 500
    after = active_record()
    assert after.refresh_count == 1 and after.refresh_token != before.refresh_token
    assert not site.provider.is_refresh_token_revoked(after.refresh_token)
    assert browser.get(site.url + "/account/sensitive/", allow_redirects=False).status_code == 200
