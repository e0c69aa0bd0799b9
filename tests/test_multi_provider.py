"""Two real providers at once, over real HTTP: the embedded django-oauth-toolkit (named "default", so it keeps the
short URLs /oauth/callback/) and node `oidc-provider` (named "node": /oauth/callback/node/). Each provider counts its
own grants, revocations and back-channel deliveries; the site must keep their sessions, tokens and endpoints apart,
and refuse an authorization response delivered to the other provider's callback (mix-up, RFC 9700 §4.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
from django.core.cache import cache

from oauth_client import client
from oauth_client.models import OAuthSession
from tests.browser import Browser, forms
from tests.conftest import client_settings, node_client_settings, register_node_client
from tests.helpers import expire_tokens
from tests.node_provider import NodeProvider
from tests.provider import EmbeddedProvider

pytestmark = pytest.mark.django_db(transaction=True)

SHARED = {"HTTP_TIMEOUT": (2.0, 5.0)}


@dataclass
class TwoProviders:
    url: str
    dot: EmbeddedProvider
    node: NodeProvider
    node_client_id: str
    node_client_secret: str

    def sign_in(self, name: str, browser: Browser | None = None, next_url: str | None = None) -> Browser:
        browser = browser or Browser()
        op = self.dot if name == "default" else self.node
        resp = browser.sign_in(self.url, op.username, op.password, next_url, provider=name)
        assert resp.status_code == 200 and resp.url.startswith(self.url), (resp.url, resp.text[:500])
        return browser

    def node_counts(self) -> dict[str, int]:
        return self.node.counts(self.node_client_id)

    def dot_code_grants(self) -> int:
        return len({row["token_family"] for row in self.dot.refresh_token_rows()})


@pytest.fixture
def two(live_server, provider: EmbeddedProvider, node_provider: NodeProvider, settings) -> TwoProviders:  # type: ignore[no-untyped-def]
    node_id, node_secret = register_node_client(node_provider, live_server.url, "node")
    node_provider.reset_counts()
    dot_settings = {k: v for k, v in client_settings(provider).items() if k not in SHARED}
    node_settings = {
        k: v for k, v in node_client_settings(node_provider, node_id, node_secret).items() if k not in SHARED
    }
    settings.OAUTH_CLIENT = {
        **SHARED,
        "PROVIDERS": {
            "default": {**dot_settings, "LABEL": "Demo provider"},
            "node": {**node_settings, "LABEL": "Node OP"},
        },
    }
    cache.clear()
    return TwoProviders(live_server.url, provider, node_provider, node_id, node_secret)


def test_the_chooser_offers_every_provider_in_both_languages(two: TwoProviders):
    for language in ("en", "fr-ca"):
        resp = Browser(language).get(two.url + "/oauth/login/", params={"next": "/account/"})
        assert resp.status_code == 200
        assert 'href="/oauth/login/default/?next=%2Faccount%2F"' in resp.text, resp.text[:2000]
        assert 'href="/oauth/login/node/?next=%2Faccount%2F"' in resp.text
        assert "Demo provider" in resp.text and "Node OP" in resp.text
        assert f'lang="{language.split("-")[0]}' in resp.text


def test_each_provider_signs_in_refreshes_and_revokes_with_its_own_client(two: TwoProviders):
    dot_grants = two.dot_code_grants()
    dot_browser, node_browser = two.sign_in("default"), two.sign_in("node")
    records = {r.provider: r for r in OAuthSession.objects.filter(ended_at__isnull=True)}
    assert set(records) == {"default", "node"}
    assert records["default"].issuer == two.dot.issuer and records["node"].issuer == two.node.issuer
    assert two.node_counts()["authorization_code_grants"] == 1 and two.dot_code_grants() == dot_grants + 1

    dot_before, node_before = two.dot.count_refresh_tokens(), two.node_counts()["refresh_grants"]
    expire_tokens()
    assert dot_browser.get(two.url + "/account/").status_code == 200
    assert two.dot.count_refresh_tokens() == dot_before + 1 and two.node_counts()["refresh_grants"] == node_before
    assert node_browser.get(two.url + "/account/").status_code == 200
    assert two.node_counts()["refresh_grants"] == node_before + 1 and two.dot.count_refresh_tokens() == dot_before + 1

    # Signing out revokes at the session's own provider.
    dot_token = OAuthSession.objects.get(provider="default", ended_at__isnull=True).refresh_token
    page = dot_browser.get(two.url + "/account/")
    dot_browser.submit(page, dot_browser.find_form(page, action="/oauth/logout/"))
    assert two.dot.is_refresh_token_revoked(dot_token)
    assert two.node_counts()["revocations"] == 0
    page = node_browser.get(two.url + "/account/")
    node_browser.submit(page, node_browser.find_form(page, action="/oauth/logout/"))
    assert two.node_counts()["revocations"] == 1
    assert not OAuthSession.objects.filter(ended_at__isnull=True).exists()


def test_backchannel_logout_from_one_provider_leaves_the_other_signed_in(two: TwoProviders):
    dot_browser, node_browser = two.sign_in("default"), two.sign_in("node")
    confirm = node_browser.get(two.node.metadata()["end_session_endpoint"])
    done = node_browser.submit(confirm, node_browser.find_form(confirm, with_field="logout"), button="logout")
    assert done.status_code == 200
    assert two.node_counts()["backchannel_success"] == 1, two.node.backchannel_errors()
    node_record = OAuthSession.objects.get(provider="node")
    assert node_record.ended_reason == OAuthSession.EndReason.BACKCHANNEL
    assert node_browser.get(two.url + "/account/", allow_redirects=False).status_code == 302
    assert dot_browser.get(two.url + "/account/", allow_redirects=False).status_code == 200
    assert OAuthSession.objects.get(provider="default").is_active


def test_a_logout_token_from_one_provider_at_the_others_endpoint_is_refused(two: TwoProviders):
    """node's logout token delivered to the default provider's endpoint is validated against the default provider
    (its issuer and keys), so refused: no session ends."""
    two.sign_in("default")
    two.node.register_client(  # node now delivers to the wrong endpoint
        two.node_client_id,
        two.node_client_secret,
        redirect_uris=[f"{two.url}/oauth/callback/node/"],
        post_logout_redirect_uris=[f"{two.url}/"],
        backchannel_logout_uri=f"{two.url}/oauth/backchannel-logout/",
    )
    browser = two.sign_in("node")
    confirm = browser.get(two.node.metadata()["end_session_endpoint"])
    browser.submit(confirm, browser.find_form(confirm, with_field="logout"), button="logout")
    counts = two.node_counts()
    assert counts["backchannel_success"] == 0 and counts["backchannel_error"] == 1
    assert OAuthSession.objects.filter(ended_at__isnull=True).count() == 2


def authorization_response(browser: Browser, two: TwoProviders, name: str) -> str:
    """Sign in at provider `name` up to its redirect back to the site, without following it: the callback URL."""
    op = two.dot if name == "default" else two.node
    resp = browser.get(f"{two.url}/oauth/login/{name}/", allow_redirects=False)
    for _ in range(20):
        if resp.is_redirect:
            location = urljoin(resp.url, resp.headers["Location"])
            if location.startswith(two.url + "/oauth/callback"):
                return location
            resp = browser.get(location, allow_redirects=False)
        elif any("password" in f.fields for f in forms(resp.text)):
            form = browser.find_form(resp, with_field="password")
            credentials = {"username": op.username, "password": op.password}
            resp = browser.submit(resp, form, credentials, allow_redirects=False)
        elif any("allow" in f.buttons for f in forms(resp.text)):
            resp = browser.submit(
                resp, browser.find_form(resp, with_field="allow"), button="allow", allow_redirects=False
            )
        else:
            break
    raise AssertionError(f"no redirect back to the site: {resp.url}\n{resp.text[:1000]}")


def test_mix_up_an_answer_from_one_provider_at_the_others_callback_is_refused(two: TwoProviders, monkeypatch):
    """A code and state obtained from node, delivered to the default provider's callback: a clear 4xx, no session,
    and no token endpoint called (neither provider saw the code)."""
    exchanges: list[str] = []
    real_exchange = client.exchange_code
    monkeypatch.setattr(
        client, "exchange_code", lambda p, *a, **k: exchanges.append(p.name) or real_exchange(p, *a, **k)
    )
    browser = Browser()
    callback = authorization_response(browser, two, "node")
    assert urlsplit(callback).path == "/oauth/callback/node/"
    query = urlsplit(callback).query
    assert "code" in parse_qs(query) and "state" in parse_qs(query)
    dot_grants = two.dot.count_refresh_tokens()

    resp = browser.get(f"{two.url}/oauth/callback/?{query}", allow_redirects=False)
    assert resp.status_code == 400
    assert "does not belong to this identity provider" in resp.text
    assert not OAuthSession.objects.exists()
    assert two.dot.count_refresh_tokens() == dot_grants
    assert two.node_counts()["authorization_code_grants"] == 0
    # The attempt is spent: the genuine callback cannot use it afterwards either.
    assert browser.get(callback, allow_redirects=False).status_code == 400
    assert two.node_counts()["authorization_code_grants"] == 0
    assert exchanges == []  # no token endpoint was called, of either provider


def test_an_iss_parameter_naming_another_provider_is_refused(two: TwoProviders):
    """RFC 9207: node sends `iss`; an answer at the default provider's callback carrying node's issuer is refused
    before the code is sent anywhere."""
    browser = Browser()
    resp = browser.get(f"{two.url}/oauth/login/default/", allow_redirects=False)
    state = parse_qs(urlsplit(resp.headers["Location"]).query)["state"][0]
    grants = two.dot.count_refresh_tokens()
    resp = browser.get(
        f"{two.url}/oauth/callback/",
        params={"code": "x", "state": state, "iss": two.node.issuer},
        allow_redirects=False,
    )
    assert resp.status_code == 400 and not OAuthSession.objects.exists()
    assert two.dot.count_refresh_tokens() == grants


def test_signing_in_with_another_provider_ends_and_revokes_the_old_session(two: TwoProviders):
    browser = two.sign_in("default")
    old = OAuthSession.objects.get(provider="default")
    old_refresh_token = old.refresh_token
    two.sign_in("node", browser)
    old.refresh_from_db()
    assert old.ended_reason == OAuthSession.EndReason.LOGOUT
    assert two.dot.is_refresh_token_revoked(old_refresh_token)
    new = OAuthSession.objects.get(ended_at__isnull=True)
    assert new.provider == "node" and new.session_key != old.session_key
    assert browser.get(two.url + "/account/", allow_redirects=False).status_code == 200


def test_users_are_found_by_issuer_and_subject_never_merged_by_email(two: TwoProviders):
    two.sign_in("default")
    two.sign_in("node")
    records = list(OAuthSession.objects.select_related("user"))
    assert len({r.user_id for r in records}) == 2
    assert len({(r.issuer, r.subject) for r in records}) == 2


def test_an_error_response_naming_another_provider_is_not_shown_as_this_ones(two: TwoProviders):
    """RFC 9207 §2.4: for error responses too, the client must not assume the error came from the intended
    provider: an `access_denied` carrying node's `iss` at the default provider's callback is refused as such."""
    browser = Browser()
    resp = browser.get(f"{two.url}/oauth/login/default/", allow_redirects=False)
    state = parse_qs(urlsplit(resp.headers["Location"]).query)["state"][0]
    params = {"error": "access_denied", "state": state, "iss": two.node.issuer}
    resp = browser.get(f"{two.url}/oauth/callback/", params=params, allow_redirects=False)
    assert resp.status_code == 400
    assert "could not be accepted" in resp.text and "cancelled" not in resp.text


def test_a_provider_removed_from_the_settings_ends_its_sessions_instead_of_failing(two: TwoProviders, settings):
    """Its tokens can be used with no configured client: the next refresh ends the session (no provider is called,
    no 503 until someone edits the settings), and the person signs in again; the other provider's session lives on."""
    dot_browser, node_browser = two.sign_in("default"), two.sign_in("node")
    settings.OAUTH_CLIENT = {
        **settings.OAUTH_CLIENT,
        "PROVIDERS": {"default": settings.OAUTH_CLIENT["PROVIDERS"]["default"]},
    }
    dot_grants = two.dot.count_refresh_tokens()
    expire_tokens()
    resp = node_browser.get(two.url + "/account/", allow_redirects=False)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/oauth/login/")
    assert OAuthSession.objects.get(provider="node").ended_reason == OAuthSession.EndReason.PROVIDER_GONE
    assert two.node_counts()["refresh_grants"] == 0
    assert dot_browser.get(two.url + "/account/", allow_redirects=False).status_code == 200
    assert two.dot.count_refresh_tokens() == dot_grants + 1
