"""Calls to the provider are bounded in time and stateless (issue 12, items 5 and 6).

- A provider or gateway that drips its answer (body, status line and headers, or a TLS handshake) one byte at a
  time, each byte well within the read timeout, is cut at HTTP_DEADLINE: the refresh fails transiently in
  bounded time, the session is kept (grace), a sensitive page answers 503 in bounded time.
- The provider's cookies never travel with the next call (made for another user), `~/.netrc` never replaces our
  `Authorization` header, and proxies from the environment still apply.
- PostgreSQL: the refresh transaction carries `idle_in_transaction_session_timeout` as a backstop.

Faults come from real local servers (tests/faults.py); everything else is the real embedded provider."""

from __future__ import annotations

import base64
import time
from urllib.parse import quote

import pytest
from django.core.cache import cache
from django.db import connection

from oauth_client import client, discovery, http, providers
from oauth_client.conf import oauth_settings
from oauth_client.exceptions import TransientProviderError
from oauth_client.models import OAuthSession
from tests.browser import Browser
from tests.conftest import client_settings, requires_postgres
from tests.faults import DripSocketServer, FaultServer, RelayServer, self_signed_certificate
from tests.helpers import active_record, client_for, expire_tokens
from tests.stub_server import Answer, StubServer

DEADLINE = 1.0
SLACK = 1.5  # a page around the call, a loaded CI machine
CALL_SLACK = 0.75  # one call alone
# Per-read timeout (1 s) well above the drip interval (0.1 s): only a deadline on the whole exchange ends it.
DRIP = {"HTTP_TIMEOUT": (0.5, 1.0), "HTTP_RETRIES": 2, "HTTP_RETRY_BUDGET": 4.0, "HTTP_DEADLINE": DEADLINE}


def use_endpoints(**urls: str) -> None:
    """Point endpoints of the cached discovery metadata (token_endpoint=..., userinfo_endpoint=...) elsewhere."""
    metadata = {**discovery.get_metadata(providers.get()), **urls}
    cache.set(discovery._cache_key("metadata", providers.get()), metadata, 3600)
    discovery._memo.clear()


@pytest.fixture
def drip_site(site, settings):
    settings.OAUTH_CLIENT = client_settings(site.provider, **DRIP)
    return site


@pytest.fixture
def fresh_session():
    """Each test starts with a new per-thread provider session (no state from earlier tests)."""
    http._local.session = None
    yield
    http._local.session = None


# -- a hard deadline per call ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["drip", "drip_headers"])
def test_drip_fed_token_response_is_cut_at_the_deadline(drip_site, mode):
    site = drip_site
    browser = site.signed_in_browser()
    before = active_record()
    with FaultServer(mode, drip_seconds=0.1) as server:
        use_endpoints(token_endpoint=server.url)
        expire_tokens(seconds_ago=10)

        started = time.monotonic()
        resp = browser.get(site.url + "/account/", allow_redirects=False)
        elapsed = time.monotonic() - started
        assert resp.status_code == 200  # grace: served with the last tokens
        assert elapsed < DEADLINE + SLACK, elapsed
        assert server.hits == 1  # the provider may have rotated already: never resent

        started = time.monotonic()
        resp = browser.get(site.url + "/account/sensitive/", allow_redirects=False)
        elapsed = time.monotonic() - started
        assert resp.status_code == 503 and resp.headers["Retry-After"]
        assert elapsed < DEADLINE + SLACK, elapsed
        assert server.hits == 2

    after = active_record()
    assert after.is_active and after.refresh_token == before.refresh_token  # nobody signed out, nothing lost
    assert after.refresh_count == 0


def test_drip_fed_headers_cannot_stretch_one_call(settings, fresh_session):
    settings.OAUTH_CLIENT = {**DRIP, "HTTP_RETRIES": 0}
    with FaultServer("drip_headers", drip_seconds=0.05) as server:
        started = time.monotonic()
        with pytest.raises(TransientProviderError, match="did not answer within"):
            http.request("GET", server.url, what="JWKS")
        elapsed = time.monotonic() - started
    assert DEADLINE - 0.05 <= elapsed < DEADLINE + CALL_SLACK, elapsed


def test_a_body_ending_with_the_connection_is_not_taken_as_complete_when_cut(settings, fresh_session):
    settings.OAUTH_CLIENT = {**DRIP, "HTTP_RETRIES": 0}
    with FaultServer("drip_unframed", drip_seconds=0.05) as server:
        started = time.monotonic()
        with pytest.raises(TransientProviderError, match="did not answer within"):
            http.request("POST", server.url, idempotent=False, what="token endpoint")
        elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + CALL_SLACK, elapsed


def test_retries_of_a_dripping_endpoint_stay_within_the_budget(settings, fresh_session):
    settings.OAUTH_CLIENT = {**DRIP, "HTTP_RETRY_BUDGET": 2.5}
    with FaultServer("drip", drip_seconds=0.05) as server:
        started = time.monotonic()
        with pytest.raises(TransientProviderError):
            http.request("GET", server.url, what="discovery")  # idempotent: retried
        elapsed = time.monotonic() - started
    assert server.hits >= 2
    assert elapsed < 2.5 + CALL_SLACK, elapsed


def test_drip_fed_headers_over_tls_are_cut_at_the_deadline(settings, fresh_session, tmp_path, monkeypatch):
    # Over TLS every byte comes in its own record. The test's own CA through REQUESTS_CA_BUNDLE: the
    # environment settings requests honours still apply.
    cert, key = self_signed_certificate(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    settings.OAUTH_CLIENT = {**DRIP, "HTTP_RETRIES": 0}
    with FaultServer("drip_headers", drip_seconds=0.05, tls=(cert, key)) as server:
        started = time.monotonic()
        with pytest.raises(TransientProviderError, match="did not answer within"):
            http.request("POST", server.url, idempotent=False, what="token endpoint")
        elapsed = time.monotonic() - started
        assert server.hits == 1
        # The same server, answering at once: verified against that CA.
        server.mode = "ok"
        server.body = {"ok": True}
        assert http.request("GET", server.url).json() == {"ok": True}
    assert elapsed < DEADLINE + CALL_SLACK, elapsed


def test_drip_fed_tls_handshake_is_cut_at_the_deadline(settings, fresh_session):
    # CPython bounds a whole TLS handshake by the socket timeout, which is never more than what is left of the
    # deadline: pinned here, whatever the connect timeout says.
    settings.OAUTH_CLIENT = {**DRIP, "HTTP_TIMEOUT": (5.0, 5.0), "HTTP_RETRIES": 0}
    with DripSocketServer(pause=0.1) as server:
        started = time.monotonic()
        with pytest.raises(TransientProviderError):
            http.request("POST", server.url, idempotent=False, what="token endpoint")
        elapsed = time.monotonic() - started
    assert server.connections == 1
    assert elapsed < DEADLINE + CALL_SLACK, elapsed


def test_deadline_holds_through_an_environment_proxy(settings, fresh_session, monkeypatch):
    settings.OAUTH_CLIENT = {**DRIP, "HTTP_RETRIES": 0}
    with FaultServer("drip_headers", drip_seconds=0.05) as proxy:
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy.url.removesuffix("/token"))
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.setenv(name, "")
        started = time.monotonic()
        with pytest.raises(TransientProviderError):
            http.request("GET", "http://provider.test/o/jwks/", what="JWKS")
        elapsed = time.monotonic() - started
    assert [s.path for s in proxy.seen] == ["http://provider.test/o/jwks/"]
    assert elapsed < DEADLINE + CALL_SLACK, elapsed


def test_a_slow_answer_within_the_deadline_is_read_in_full(settings, fresh_session):
    settings.OAUTH_CLIENT = {**DRIP, "HTTP_DEADLINE": 5.0}
    with FaultServer("drip_headers", drip_seconds=0.002) as server:
        server.body = {"keys": [], "padding": "x" * 100}
        resp = http.request("GET", server.url, what="JWKS")
    assert resp.status == 200 and resp.json() == server.body


# -- no cookies ------------------------------------------------------------------------------------------------


def test_provider_cookies_are_never_sent_back(settings, fresh_session):
    settings.OAUTH_CLIENT = DRIP
    with StubServer() as server:
        server.routes["/first"] = Answer(200, {}, {"Set-Cookie": "sid=user-a-secret; Path=/"})
        server.routes["/second"] = Answer(200, {})
        http.request("GET", server.url + "/first")
        http.request("GET", server.url + "/second")
    assert "Cookie" not in server.seen[1].headers
    assert len(http.session().cookies) == 0


def second_provider_user(provider) -> tuple[str, str]:
    username, password = "second-user", "second-user-password"
    provider.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model\n"
        f"u, _ = get_user_model().objects.get_or_create(username={username!r})\n"
        f"u.set_password({password!r}); u.save()",
    )
    return username, password


@pytest.mark.django_db(transaction=True)
def test_one_users_provider_cookies_never_reach_the_next_users_refresh(site, fresh_session):
    alice = site.signed_in_browser()
    bob = Browser()
    resp = bob.sign_in(site.url, *second_provider_user(site.provider))
    assert resp.status_code == 200 and resp.url.startswith(site.url)
    records = {r.user.username: r for r in OAuthSession.objects.select_related("user")}
    assert len(records) == 2

    # The real token endpoint behind a gateway that sets a cookie on every answer.
    with RelayServer(site.provider.base_url, {"Set-Cookie": "gw_session=alice-secret; Path=/"}) as gateway:
        use_endpoints(token_endpoint=gateway.url + "/o/token/")
        expire_tokens()
        # In this thread, one after the other, as one worker serves them.
        assert client_for(alice).get("/account/").status_code == 200
        assert client_for(bob).get("/account/").status_code == 200

    token_calls = gateway.requests_to("/o/token/")
    assert len(token_calls) == 2
    assert all("Cookie" not in call.headers for call in token_calls)
    assert all(r.refresh_count == 1 for r in OAuthSession.objects.all())


# -- no netrc --------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_netrc_never_replaces_our_authorization(site, settings, tmp_path, monkeypatch, fresh_session, method):
    settings.OAUTH_CLIENT = client_settings(site.provider, TOKEN_AUTH_METHOD=method)
    browser = site.signed_in_browser()
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login intruder password from-netrc\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    netrc_basic = "Basic " + base64.b64encode(b"intruder:from-netrc").decode()

    with RelayServer(site.provider.base_url) as relay:
        use_endpoints(token_endpoint=relay.url + "/o/token/", userinfo_endpoint=relay.url + "/o/userinfo/")
        expire_tokens()
        assert client_for(browser).get("/account/").status_code == 200
        record = active_record()
        assert record.refresh_count == 1  # the real provider accepted our client authentication
        claims = client.userinfo(providers.get(), record.access_token)  # and our Bearer token

    (token_call,) = relay.requests_to("/o/token/")
    if method == "client_secret_basic":
        ours = f"{quote(site.client_id, safe='')}:{quote(site.client_secret, safe='')}"
        assert token_call.headers["Authorization"] == "Basic " + base64.b64encode(ours.encode()).decode()
    else:
        assert "Authorization" not in token_call.headers
        assert b"client_secret=" in token_call.body
    assert claims["sub"] == record.subject
    userinfo_calls = relay.requests_to("/o/userinfo/")
    assert userinfo_calls and all(c.headers.get("Authorization") != netrc_basic for c in userinfo_calls)
    assert userinfo_calls[-1].headers["Authorization"] == f"Bearer {record.access_token}"


# -- proxies from the environment still apply ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_environment_proxy_carries_provider_calls(site, monkeypatch, fresh_session):
    browser = site.signed_in_browser()
    with RelayServer(site.provider.base_url) as proxy:
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.setenv(name, "127.0.0.1,localhost")
        # A host only the proxy can reach (it does not resolve here); discovery and JWKS stay on 127.0.0.1.
        use_endpoints(token_endpoint="http://provider.test/o/token/")
        expire_tokens()
        assert client_for(browser).get("/account/").status_code == 200
    assert active_record().refresh_count == 1
    assert [(s.method, s.path) for s in proxy.seen] == [("POST", "http://provider.test/o/token/")]


# -- PostgreSQL: a backstop for a worker stuck inside the refresh transaction -------------------------------------


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_refresh_transaction_has_an_idle_in_transaction_timeout(site):
    browser = site.signed_in_browser()
    seen: list[int] = []

    def observe(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if "FOR UPDATE" in sql and "oauth_client_oauthsession" in sql:
            with context["connection"].cursor() as cursor:
                cursor.execute("SELECT setting FROM pg_settings WHERE name = 'idle_in_transaction_session_timeout'")
                seen.append(int(cursor.fetchone()[0]))
        return result

    expire_tokens()
    with connection.execute_wrapper(observe):
        assert client_for(browser).get("/account/").status_code == 200
    assert active_record().refresh_count == 1
    assert seen, "no locked refresh seen"
    # Set for the transaction only, and long enough that only a worker stuck past its own deadlines trips it.
    assert all(ms >= 2 * oauth_settings.HTTP_RETRY_BUDGET * 1000 for ms in seen), seen
    with connection.cursor() as cursor:
        cursor.execute("SHOW idle_in_transaction_session_timeout")
        assert cursor.fetchone()[0] == "0"
