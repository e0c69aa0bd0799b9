"""The public API against the real embedded provider: get_tokens / get_access_token, and api_session calling the
provider's userinfo endpoint, including 401 invalid_token → one refresh → one retry."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest
import requests
from django.contrib.auth import get_user
from django.contrib.sessions.backends.db import SessionStore
from django.core.cache import cache
from django.http import HttpRequest
from django.test import RequestFactory

import oauth_client
from oauth_client import (
    ReauthenticationRequired,
    TokenRefreshUnavailable,
    TokenSet,
    api_session,
    discovery,
    get_access_token,
    get_tokens,
    provider_metadata,
    providers,
)
from oauth_client.models import OAuthSession
from tests.browser import Browser
from tests.conftest import client_settings, requires_postgres
from tests.faults import FaultServer, closed_port_url
from tests.helpers import active_record, expire_access_token_at_provider, expire_tokens, use_token_endpoint
from tests.stub_server import Answer, StubServer

pytestmark = pytest.mark.django_db(transaction=True)

INVALID_TOKEN = {"WWW-Authenticate": 'Bearer error="invalid_token", error_description="expired"'}


def request_for(browser: Browser) -> HttpRequest:
    """A request object for the browser's session, as a view or a service would get it."""
    request = RequestFactory().get("/")
    request.session = SessionStore(browser.cookies.get("sessionid"))
    request.user = get_user(request)
    return request


def userinfo_table(html: str) -> str:
    assert 'id="userinfo"' in html, html[:3000]
    return html.split('id="userinfo"', 1)[1].split("</table>", 1)[0]


# --- tokens --------------------------------------------------------------------------------------------------


def test_get_tokens_is_an_immutable_snapshot_without_the_refresh_token(site):
    browser = site.signed_in_browser()
    request = request_for(browser)
    tokens = get_tokens(request)
    record = active_record()

    assert isinstance(tokens, TokenSet)
    assert tokens.access_token == record.access_token == get_access_token(request)
    assert tokens.claims["sub"] == record.subject and tokens.claims["iss"] == site.provider.issuer
    assert tokens.scopes >= {"openid", "offline_access"}
    assert tokens.expires_at == record.expires_at and tokens.has_refresh_token
    assert not hasattr(tokens, "refresh_token")
    with pytest.raises(dataclasses.FrozenInstanceError):
        tokens.access_token = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        tokens.claims["sub"] = "someone else"  # type: ignore[index]
    for secret in (record.access_token, record.id_token, record.refresh_token):
        assert secret not in repr(tokens)


def test_get_tokens_refreshes_when_due(site):
    browser = site.signed_in_browser()
    before = active_record()
    issued = site.provider.count_refresh_tokens()
    expire_tokens()
    token = get_access_token(request_for(browser))
    assert site.provider.count_refresh_tokens() == issued + 1
    assert token != before.access_token and token == active_record().access_token


def test_get_access_token_without_a_provider_session_raises(site):
    request = RequestFactory().get("/")
    request.session = SessionStore()
    request.user = get_user(request)
    with pytest.raises(ReauthenticationRequired) as excinfo:
        get_access_token(request)
    assert excinfo.value.reason == "not_signed_in"


def test_get_access_token_after_a_refused_refresh_raises(site):
    browser = site.signed_in_browser()
    OAuthSession.objects.update(refresh_token="")
    expire_tokens()
    with pytest.raises(ReauthenticationRequired) as excinfo:
        get_access_token(request_for(browser))
    assert excinfo.value.reason == OAuthSession.EndReason.NO_REFRESH_TOKEN


def test_provider_metadata_is_the_read_only_discovery_document(site):
    metadata = provider_metadata()
    assert metadata["issuer"] == site.provider.issuer
    assert metadata["userinfo_endpoint"] == site.provider.issuer + "/userinfo/"
    with pytest.raises(TypeError):
        metadata["issuer"] = "https://evil.example"  # type: ignore[index]


def test_public_api_is_exported():
    for name in oauth_client.__all__:
        assert getattr(oauth_client, name) is not None
    with pytest.raises(AttributeError):
        oauth_client.no_such_thing  # noqa: B018


# --- api_session against the provider's userinfo endpoint ----------------------------------------------------


def test_profile_shows_userinfo_fetched_with_the_access_token(site):
    browser = site.signed_in_browser()
    resp = browser.get(site.url + "/account/")
    assert resp.status_code == 200
    table = userinfo_table(resp.text)
    assert "demo@example.com" in table and "Demo User" in table and "email_verified" in table
    assert active_record().refresh_count == 0  # a valid token needs no refresh


def test_invalid_token_at_the_provider_refreshes_once_and_retries(site):
    browser = site.signed_in_browser()
    before = active_record()
    issued = site.provider.count_refresh_tokens()
    expire_access_token_at_provider(site.provider, before.access_token)
    # The provider really answers as RFC 6750 says.
    raw = requests.get(
        provider_metadata()["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {before.access_token}"},
        timeout=10,
    )
    assert raw.status_code == 401 and 'error="invalid_token"' in raw.headers["WWW-Authenticate"]

    response = api_session(request_for(browser)).get(provider_metadata()["userinfo_endpoint"])

    assert response.status_code == 200 and response.json()["email"] == "demo@example.com"
    assert [r.status_code for r in response.history] == [401]
    after = active_record()
    assert site.provider.count_refresh_tokens() == issued + 1  # exactly one refresh
    assert after.refresh_count == 1 and after.access_token != before.access_token
    assert response.request.headers["Authorization"] == f"Bearer {after.access_token}"
    assert not site.provider.is_refresh_token_revoked(after.refresh_token)


def test_profile_page_recovers_from_an_invalid_token(site):
    browser = site.signed_in_browser()
    expire_access_token_at_provider(site.provider, active_record().access_token)
    resp = browser.get(site.url + "/account/")
    assert resp.status_code == 200 and resp.url == site.url + "/account/"
    assert "demo@example.com" in userinfo_table(resp.text)
    assert active_record().refresh_count == 1


def test_revoked_grant_sends_the_profile_page_to_sign_in(site):
    browser = site.signed_in_browser()
    record = active_record()
    # DOT revokes the bound refresh token together with the access token (RFC 7009 §2.1 allows it).
    resp = requests.post(
        f"{site.provider.base_url}/o/revoke_token/",
        data={"token": record.access_token, "token_type_hint": "access_token"},
        auth=(site.provider.client_id, site.provider.client_secret),
        timeout=10,
    )
    assert resp.status_code == 200
    assert site.provider.is_refresh_token_revoked(record.refresh_token)

    with pytest.raises(ReauthenticationRequired):
        api_session(request_for(browser)).get(provider_metadata()["userinfo_endpoint"])
    assert OAuthSession.objects.get().ended_reason == OAuthSession.EndReason.REFRESH_REJECTED


def test_revoked_grant_on_the_profile_page_redirects_to_sign_in(site):
    browser = site.signed_in_browser()
    record = active_record()
    requests.post(
        f"{site.provider.base_url}/o/revoke_token/",
        data={"token": record.access_token, "token_type_hint": "access_token"},
        auth=(site.provider.client_id, site.provider.client_secret),
        timeout=10,
    ).raise_for_status()
    resp = browser.get(site.url + "/account/", allow_redirects=False)
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/oauth/login/?next=%2Faccount%2F"
    home = browser.get(site.url + "/")
    assert 'href="/oauth/login/"' in home.text and "Please sign in again" in home.text


def test_profile_page_survives_a_failing_userinfo_endpoint(site):
    browser = site.signed_in_browser()
    with FaultServer("500") as server:
        metadata = {**provider_metadata(), "userinfo_endpoint": server.url}
        cache.set(discovery._cache_key("metadata", providers.get()), metadata, 3600)
        discovery._memo.clear()
        resp = browser.get(site.url + "/account/")
    assert resp.status_code == 200
    assert "The userinfo endpoint answered HTTP 500." in resp.text


# --- api_session against other APIs (fault injection at the network edge) --------------------------------


def test_a_second_invalid_token_is_returned_not_looped(site):
    browser = site.signed_in_browser()
    first = active_record().access_token
    issued = site.provider.count_refresh_tokens()
    with StubServer() as api:
        api.routes["/api"] = Answer(401, {"error": "invalid_token"}, INVALID_TOKEN)
        response = api_session(request_for(browser)).get(api.url + "/api")
    assert response.status_code == 401
    sent = [s.headers["Authorization"] for s in api.requests_to("/api")]
    assert sent == [f"Bearer {first}", f"Bearer {active_record().access_token}"]  # refreshed once, retried once
    assert site.provider.count_refresh_tokens() == issued + 1


def test_retry_replays_method_and_body(site):
    browser = site.signed_in_browser()
    calls = []

    def api_answer(seen):
        calls.append(seen)
        return Answer(401, {}, INVALID_TOKEN) if len(calls) == 1 else Answer(201, {"created": True})

    with StubServer() as api:
        api.routes["/items"] = api_answer
        response = api_session(request_for(browser)).post(api.url + "/items", json={"name": "thing"})
    assert response.status_code == 201 and response.json() == {"created": True}
    assert [c.method for c in calls] == ["POST", "POST"]
    assert [json.loads(c.body) for c in calls] == [{"name": "thing"}] * 2
    assert calls[0].headers["Authorization"] != calls[1].headers["Authorization"]


@pytest.mark.parametrize(
    "status,headers",
    [
        (401, {"WWW-Authenticate": 'Bearer realm="api"'}),  # no error: the request simply lacked auth
        (401, {}),
        (403, {"WWW-Authenticate": 'Bearer error="insufficient_scope"'}),
        (400, {"WWW-Authenticate": 'Bearer error="invalid_request"'}),
    ],
)
def test_other_refusals_do_not_refresh(site, status, headers):
    browser = site.signed_in_browser()
    issued = site.provider.count_refresh_tokens()
    with StubServer() as api:
        api.routes["/api"] = Answer(status, {"error": "nope"}, headers)
        response = api_session(request_for(browser)).get(api.url + "/api")
        assert response.status_code == status and len(api.requests_to("/api")) == 1
    assert site.provider.count_refresh_tokens() == issued


def test_token_never_follows_a_redirect_to_another_host(site):
    browser = site.signed_in_browser()
    issued = site.provider.count_refresh_tokens()
    with StubServer() as other, StubServer() as api:
        other.routes["/landing"] = Answer(401, {}, INVALID_TOKEN)
        api.routes["/api"] = Answer(302, "", {"Location": other.url + "/landing"})
        response = api_session(request_for(browser)).get(api.url + "/api")
        assert response.status_code == 401
        assert "Authorization" in api.requests_to("/api")[0].headers
        landed = other.requests_to("/landing")
        assert len(landed) == 1 and "Authorization" not in landed[0].headers
    assert site.provider.count_refresh_tokens() == issued  # no refresh, no retry with a token


def test_api_session_has_a_default_timeout(site, settings):
    settings.OAUTH_CLIENT = client_settings(site.provider, HTTP_TIMEOUT=(0.5, 0.5))
    browser = site.signed_in_browser()
    with FaultServer("hang", hang_seconds=5) as server:
        started = time.monotonic()
        with pytest.raises(requests.Timeout):
            api_session(request_for(browser)).get(server.url)
        assert time.monotonic() - started < 4


def test_refresh_unavailable_during_retry_raises(site):
    browser = site.signed_in_browser()
    request = request_for(browser)
    get_access_token(request)  # loads the discovery document before it is pointed elsewhere
    use_token_endpoint(closed_port_url())
    with StubServer() as api:
        api.routes["/api"] = Answer(401, {}, INVALID_TOKEN)
        with pytest.raises(TokenRefreshUnavailable):
            api_session(request).get(api.url + "/api")
    assert active_record().is_active  # a transient failure never signs anybody out


# --- views: exceptions that escape are answered like a failed refresh, never a 500 ---------------------------


@pytest.mark.urls("tests.extension")
def test_escaped_exceptions_become_sign_in_or_503(site):
    anonymous = Browser()
    resp = anonymous.get(site.url + "/ext/token/", allow_redirects=False)
    assert resp.status_code == 302 and resp.headers["Location"] == "/oauth/login/?next=%2Fext%2Ftoken%2F"
    resp = anonymous.get(site.url + "/ext/token/", headers={"Accept": "application/json"})
    assert resp.status_code == 401 and resp.json()["error"] == "login_required"

    browser = site.signed_in_browser()
    assert browser.get(site.url + "/ext/token/").json()["token_length"] > 10


@requires_postgres
def test_concurrent_invalid_token_answers_refresh_once(site):
    """Two API calls of one session both hear invalid_token: the row lock makes the second reuse the first's
    refresh instead of refreshing (and rotating) again."""
    browser = site.signed_in_browser()
    issued = site.provider.count_refresh_tokens()
    old = f"Bearer {active_record().access_token}"
    barrier = threading.Barrier(2)
    with StubServer() as api:

        def answer(seen):
            if seen.headers["Authorization"] == old:
                return Answer(401, {}, INVALID_TOKEN)
            return Answer(200, {"ok": True})

        api.routes["/api"] = answer

        def call(_: int) -> int:
            from django.db import connection

            try:
                request = request_for(browser)
                get_access_token(request)
                barrier.wait(timeout=30)
                return api_session(request).get(api.url + "/api").status_code
            finally:
                connection.close()

        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(call(i))) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert [s.headers["Authorization"] for s in api.requests_to("/api")].count(old) == 2
    assert results == [200, 200]
    assert site.provider.count_refresh_tokens() == issued + 1
    assert active_record().refresh_count == 1
