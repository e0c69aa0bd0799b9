"""The end-to-end flows against two independent providers: the embedded django-oauth-toolkit (`site`) and node
`oidc-provider` 9, OpenID Certified (`node_site`: 12-second access and ID tokens, rotation with reuse detection,
offline_access only with prompt=consent, profile/email only from userinfo, back-channel logout).

Grants, revocations and back-channel deliveries are counted at the provider, through a small neutral interface
(`Referee`): DOT's database rows, node's own events.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.db import connection

from bench import harness
from oauth_client.models import OAuthSession
from tests.browser import Browser, forms
from tests.conftest import Site, requires_postgres
from tests.helpers import active_record, expire_tokens, stampede
from tests.node_provider import NodeProvider
from tests.provider import EmbeddedProvider

pytestmark = pytest.mark.django_db(transaction=True)


# --- counting at the provider, whichever it is -------------------------------------------------------------------


class Referee(Protocol):
    """What a test needs to know from the provider itself."""

    site: Site
    account_name: str
    account_email: str

    def code_grants(self) -> int: ...

    def refresh_grants(self) -> int: ...

    def refresh_token_active(self, token: str) -> bool: ...


class DotReferee:
    """django-oauth-toolkit: every grant writes a RefreshToken row; a code grant starts a new token family."""

    account_name = "Demo User"  # idp_setup's demo user
    account_email = "demo@example.com"

    def __init__(self, site: Site) -> None:
        assert isinstance(site.provider, EmbeddedProvider)
        self.site, self.provider = site, site.provider

    def code_grants(self) -> int:
        return len({row["token_family"] for row in self.provider.refresh_token_rows()})

    def refresh_grants(self) -> int:
        return self.provider.count_refresh_tokens() - self.code_grants()

    def refresh_token_active(self, token: str) -> bool:
        return not self.provider.is_refresh_token_revoked(token)


class NodeReferee:
    """node oidc-provider: its own events (`grant.success` by grant type), and RFC 7662 introspection."""

    def __init__(self, site: Site) -> None:
        assert isinstance(site.provider, NodeProvider)
        self.site, self.provider = site, site.provider
        self.account_name, self.account_email = self.provider.account_name, self.provider.account_email

    def counts(self) -> dict[str, int]:
        return self.provider.counts(self.site.client_id)

    def code_grants(self) -> int:
        return self.counts()["authorization_code_grants"]

    def refresh_grants(self) -> int:
        return self.counts()["refresh_grants"]

    def refresh_token_active(self, token: str) -> bool:
        resp = requests.post(
            self.provider.metadata()["introspection_endpoint"],
            data={"token": token, "token_type_hint": "refresh_token"},
            auth=(self.site.client_id, self.site.client_secret),
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        return bool(resp.json()["active"])


@pytest.fixture(params=["dot", "node"])
def op(request: pytest.FixtureRequest) -> Referee:
    """The same flow against each provider: the site configured for it, and its referee."""
    if request.param == "dot":
        return DotReferee(request.getfixturevalue("site"))
    return NodeReferee(request.getfixturevalue("node_site"))


@pytest.fixture
def node(node_site: Site) -> NodeReferee:
    return NodeReferee(node_site)


def present_refresh_token(site: Site, token: str) -> requests.Response:
    """A refresh grant with `token`, as a buggy client (or a thief) would send it."""
    metadata = requests.get(site.provider.discovery_url, timeout=10).json()
    return requests.post(
        metadata["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": token},
        auth=(site.client_id, site.client_secret),
        timeout=10,
    )


def finish_provider_logout(site: Site, browser: Browser, resp: requests.Response) -> requests.Response:
    """Follow RP-initiated logout to its end: DOT gets our auto-submitted POST form; node oidc-provider (GET) asks
    the person to confirm, and "Yes, sign me out" ends the whole provider session."""
    for _ in range(3):
        page_forms = forms(resp.text)
        if any("id_token_hint" in f.fields for f in page_forms):
            resp = browser.submit(resp, browser.find_form(resp, with_field="id_token_hint"))
        elif any("logout" in f.buttons for f in page_forms) and not resp.url.startswith(site.url):
            resp = browser.submit(resp, browser.find_form(resp, with_field="logout"), button="logout")
        else:
            break
    return resp


def asks_for_password(site: Site, browser: Browser) -> bool:
    resp = browser.get(site.url + "/oauth/login/")
    return any("password" in f.fields for f in forms(resp.text))


# --- the flows, against both providers -------------------------------------------------------------------------


def test_sign_in_makes_only_the_code_grant(op: Referee):
    site = op.site
    codes, refreshes = op.code_grants(), op.refresh_grants()
    browser = site.signed_in_browser(next_url="/account/")
    # Sign-in, the redirect and the profile page (which calls userinfo) made one grant: the code exchange.
    # With node's 12-second tokens this holds only if refresh-ahead fits short lifetimes (issue 11).
    for _ in range(3):
        assert browser.get(site.url + "/account/", allow_redirects=False).status_code == 200
    assert op.code_grants() == codes + 1
    assert op.refresh_grants() == refreshes
    record = active_record()
    assert record.refresh_token and record.refresh_count == 0
    assert record.issuer == site.provider.issuer
    assert op.refresh_token_active(record.refresh_token)


def test_userinfo_claims_reach_the_site(op: Referee):
    site = op.site
    browser = Browser()
    page = browser.sign_in(site.url, site.provider.username, site.provider.password, "/account/")
    assert page.status_code == 200 and page.url == site.url + "/account/"
    assert op.account_email in page.text and op.account_name in page.text
    record = active_record()
    assert record.user.email == op.account_email
    if isinstance(op, NodeReferee):
        # conformIdTokenClaims: node keeps profile and email out of the ID token; they came from userinfo.
        assert "email" not in record.claims and "name" not in record.claims
        assert record.userinfo["email"] == op.account_email


def test_expiry_refreshes_once_and_rotates(op: Referee):
    site = op.site
    browser = site.signed_in_browser()
    before = active_record()
    refreshes = op.refresh_grants()
    expire_tokens()

    assert browser.get(site.url + "/account/", allow_redirects=False).status_code == 200
    after = active_record()
    assert op.refresh_grants() == refreshes + 1  # exactly one grant at the provider
    assert after.pk == before.pk and after.refresh_count == 1
    assert after.refresh_token != before.refresh_token  # rotated
    assert not op.refresh_token_active(before.refresh_token)
    assert op.refresh_token_active(after.refresh_token)
    assert after.subject == before.subject
    # The new tokens are fresh: the next requests make no grant.
    for _ in range(3):
        assert browser.get(site.url + "/account/", allow_redirects=False).status_code == 200
    assert op.refresh_grants() == refreshes + 1


def test_spent_refresh_token_revokes_the_grant(op: Referee):
    """Reuse detection, as at Auth0: presenting a rotated-out refresh token revokes the whole grant."""
    site = op.site
    browser = site.signed_in_browser()
    spent = active_record().refresh_token
    expire_tokens()
    assert browser.get(site.url + "/account/", allow_redirects=False).status_code == 200
    current = active_record().refresh_token

    resp = present_refresh_token(site, spent)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    assert not op.refresh_token_active(current)  # the newest token went with the grant
    if isinstance(op, NodeReferee):
        assert op.counts()["refresh_token_reuse"] == 1

    # The site learns it at its next refresh: the person signs in again.
    expire_tokens()
    resp = browser.get(site.url + "/account/", allow_redirects=False)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/oauth/login/")
    assert OAuthSession.objects.get().ended_reason == OAuthSession.EndReason.REFRESH_REJECTED


def test_sensitive_page_always_refreshes(op: Referee):
    site = op.site
    browser = site.signed_in_browser()
    refreshes = op.refresh_grants()
    page = browser.get(site.url + "/account/sensitive/")
    assert page.status_code == 200 and page.url == site.url + "/account/sensitive/"
    assert op.refresh_grants() == refreshes + 1
    assert browser.get(site.url + "/account/sensitive/").status_code == 200
    assert op.refresh_grants() == refreshes + 2
    assert active_record().refresh_count == 2


def test_logout_revokes_and_ends_the_provider_session(op: Referee):
    site = op.site
    browser = site.signed_in_browser()
    refresh_token = active_record().refresh_token
    profile = browser.get(site.url + "/account/")

    resp = browser.submit(profile, browser.find_form(profile, action="/oauth/logout/"))
    # RFC 7009 revocation happened server-side before the browser left the site.
    assert not op.refresh_token_active(refresh_token)
    assert OAuthSession.objects.get().ended_reason == OAuthSession.EndReason.LOGOUT

    final = finish_provider_logout(site, browser, resp)
    assert final.url == site.url + "/"
    assert 'href="/oauth/login/"' in final.text
    # RP-initiated logout ended the provider session: signing in again asks for the password.
    assert asks_for_password(site, browser)
    if isinstance(op, NodeReferee):
        counts = op.counts()
        assert counts["revocations"] == 1 and counts["end_session"] == 1
        # Node also tells our back-channel endpoint (for a session the site already ended): it must accept it.
        assert counts["backchannel_error"] == 0, op.provider.backchannel_errors()


# --- what only node oidc-provider does -------------------------------------------------------------------------


def test_backchannel_logout_from_the_provider_ends_that_session(node: NodeReferee):
    """The provider session ends at the provider (the person signs out there directly): node oidc-provider POSTs a
    logout token (with its sid) to our back-channel endpoint, and that browser's site session ends with it."""
    site = node.site
    leaving, staying = site.signed_in_browser(), site.signed_in_browser()  # two provider sessions, two sids
    leaving_record, staying_record = OAuthSession.objects.order_by("created_at")
    assert leaving_record.sid and staying_record.sid and leaving_record.sid != staying_record.sid
    leaving_refresh_token = leaving_record.refresh_token

    confirm = leaving.get(node.provider.metadata()["end_session_endpoint"])
    done = leaving.submit(confirm, leaving.find_form(confirm, with_field="logout"), button="logout")
    assert done.status_code == 200, done.text[:500]

    assert node.provider.counts()["end_session"] == 1  # no client named: counted for the provider only
    counts = node.counts()
    assert counts["backchannel_success"] == 1 and counts["backchannel_error"] == 0, node.provider.backchannel_errors()
    leaving_record.refresh_from_db()
    assert leaving_record.ended_reason == OAuthSession.EndReason.BACKCHANNEL
    assert not node.refresh_token_active(leaving_refresh_token)
    resp = leaving.get(site.url + "/account/", allow_redirects=False)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/oauth/login/")
    # The other session (another provider session) is untouched.
    assert staying.get(site.url + "/account/", allow_redirects=False).status_code == 200
    staying_record.refresh_from_db()
    assert staying_record.is_active and node.refresh_token_active(staying_record.refresh_token)


def test_offline_access_needs_prompt_consent(node: NodeReferee, settings):
    """Without prompt=consent node drops offline_access: no refresh token, as the site warns in its log."""
    settings.OAUTH_CLIENT = {**settings.OAUTH_CLIENT, "EXTRA_AUTH_PARAMS": {}}
    node.site.signed_in_browser()
    record = active_record()
    assert not record.refresh_token
    assert "offline_access" not in record.scope.split()


def test_node_requires_pkce(node: NodeReferee):
    """The referee is strict: an authorization request without PKCE goes back to the client as an error."""
    site = node.site
    resp = requests.get(
        node.provider.metadata()["authorization_endpoint"],
        params={
            "client_id": site.client_id,
            "response_type": "code",
            "scope": "openid",
            "redirect_uri": site.url + "/oauth/callback/",
            "state": "no-pkce",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert resp.status_code in (302, 303)
    location = resp.headers["Location"]
    assert location.startswith(site.url + "/oauth/callback/")
    assert parse_qs(urlsplit(location).query)["error"] == ["invalid_request"]


# --- concurrency across processes (PostgreSQL) -----------------------------------------------------------------


@pytest.fixture
def two_gunicorn_sites(node_site: Site) -> Iterator[list[str]]:
    """The site twice more, as two gunicorn servers (2 workers each) on the test database, clients of node."""
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "OIDC_ISSUER": node_site.provider.issuer,
        "OIDC_CLIENT_ID": node_site.client_id,
        "OIDC_CLIENT_SECRET": node_site.client_secret,
        "OIDC_EXTRA_AUTH_PARAMS": "prompt=consent",
        "OIDC_END_SESSION_METHOD": "GET",
    }
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(harness.gunicorn_site(database_url, env, workers=2)) for _ in range(2)]


@requires_postgres
def test_forty_requests_over_two_servers_make_one_grant(node: NodeReferee, two_gunicorn_sites: list[str]):
    site = node.site
    browser = site.signed_in_browser()
    for url in two_gunicorn_sites:
        assert browser.get(url + "/account/", allow_redirects=False).status_code == 200
    node.provider.reset_counts()
    expire_tokens()

    responses = stampede([url + "/account/" for url in two_gunicorn_sites], browser.cookies, 40)
    assert [r.status_code for r in responses] == [200] * 40
    counts = node.counts()
    assert counts["refresh_grants"] == 1, counts
    assert counts["refresh_token_reuse"] == 0 and counts["refresh_errors"] == 0, counts
    record = active_record()
    assert record.refresh_count == 1
    assert node.refresh_token_active(record.refresh_token)
