"""The site as deployed, under an ASGI server (uvicorn, `project.asgi:application`) and a WSGI one (gunicorn), each
configured by the environment alone: sign-in through the embedded provider's real pages, the async demo view
(userinfo through the async API client), a transparent refresh and a sensitive one counted at the provider,
sign-out; one expired session stampeded over two uvicorn workers; a slow token endpoint that must not hold up
another person's request. PostgreSQL only: the servers are other processes and must see the test database."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.db import connection

from bench import harness
from oauth_client.models import OAuthSession
from tests.browser import Browser
from tests.conftest import Site, requires_postgres
from tests.faults import RelayServer
from tests.helpers import clear_due_hints, expire_tokens, stampede
from tests.stub_server import Answer, Seen

pytestmark = [pytest.mark.django_db(transaction=True), requires_postgres]


def database_url_of_the_tests() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def site_env(site: Site, **extra: str) -> dict[str, str]:
    """The environment of a deployment that is a client of the embedded provider (as README describes)."""
    provider = site.provider
    return {
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "OIDC_ISSUER": provider.issuer,
        "OIDC_CLIENT_ID": provider.client_id,
        "OIDC_CLIENT_SECRET": provider.client_secret,
        "OIDC_REVOCATION_ENDPOINT": f"{provider.base_url}/o/revoke_token/",
        **extra,
    }


@pytest.fixture(params=["uvicorn", "gunicorn"])
def server_url(request: pytest.FixtureRequest, site: Site) -> Iterator[str]:
    """The site under each server: ASGI (uvicorn) and WSGI (gunicorn), one worker each."""
    launch = harness.uvicorn_site if request.param == "uvicorn" else harness.gunicorn_site
    with launch(database_url_of_the_tests(), site_env(site), workers=1) as url:
        yield url


def test_sign_in_refresh_sensitive_async_view_and_sign_out(site: Site, server_url: str):
    browser = Browser()
    resp = browser.sign_in(server_url, site.provider.username, site.provider.password, "/account/")
    assert resp.status_code == 200 and resp.url == server_url + "/account/", resp.text[:500]
    record = OAuthSession.objects.get(ended_at__isnull=True)

    userinfo = browser.get(server_url + "/account/userinfo.json")
    assert userinfo.status_code == 200 and userinfo.json()["sub"] == record.subject

    issued = site.provider.count_refresh_tokens()
    expire_tokens()
    assert browser.get(server_url + "/account/", allow_redirects=False).status_code == 200
    assert site.provider.count_refresh_tokens() == issued + 1
    assert OAuthSession.objects.get(pk=record.pk).refresh_count == 1

    # The sensitive page always refreshes first (@refresh_tokens, done in the middleware's process_view).
    assert browser.get(server_url + "/account/sensitive/", allow_redirects=False).status_code == 200
    assert site.provider.count_refresh_tokens() == issued + 2
    assert OAuthSession.objects.get(pk=record.pk).refresh_count == 2

    page = browser.get(server_url + "/account/")
    browser.submit(page, browser.find_form(page, action="/oauth/logout/"))
    assert OAuthSession.objects.get(pk=record.pk).ended_reason == OAuthSession.EndReason.LOGOUT
    resp = browser.get(server_url + "/account/", allow_redirects=False)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/oauth/login/")


@pytest.fixture
def two_uvicorn_workers(site: Site) -> Iterator[str]:
    with harness.uvicorn_site(database_url_of_the_tests(), site_env(site), workers=2) as url:
        yield url


def test_forty_concurrent_requests_over_two_uvicorn_workers_make_one_grant(site: Site, two_uvicorn_workers: str):
    """The refresh under ASGI keeps the row lock's guarantee across processes: one grant, no reuse."""
    browser = Browser()
    resp = browser.sign_in(two_uvicorn_workers, site.provider.username, site.provider.password, "/account/")
    assert resp.status_code == 200
    issued = site.provider.count_refresh_tokens()
    expire_tokens()
    responses = stampede([two_uvicorn_workers + "/account/"], browser.cookies, 40)
    assert [r.status_code for r in responses] == [200] * 40
    assert site.provider.count_refresh_tokens() == issued + 1
    record = OAuthSession.objects.get(ended_at__isnull=True)
    assert record.refresh_count == 1 and not site.provider.is_refresh_token_revoked(record.refresh_token)


class SlowTokenEndpoint(RelayServer):
    """A forward proxy to the provider whose token endpoint answers `delay` seconds late once `slow` is set."""

    def __init__(self, upstream: str, delay: float) -> None:
        super().__init__(upstream)
        self.delay, self.slow = delay, threading.Event()
        self.default = self._maybe_slow

    def _maybe_slow(self, seen: Seen) -> Answer:
        if self.slow.is_set() and urlsplit(seen.path).path.endswith("/token/"):
            time.sleep(self.delay)
        return self._relay(seen)


def test_a_slow_refresh_does_not_hold_up_another_persons_request(site: Site):
    """One uvicorn worker: while one person's refresh waits on a token endpoint that answers 2 s late, another
    signed-in person's request is answered in well under that: the refresh waits in a worker thread, not on the
    event loop nor in Django's shared sync thread."""
    provider = site.provider
    with SlowTokenEndpoint(provider.base_url, delay=2.0) as proxy:
        env = site_env(site, HTTP_PROXY=proxy.url, http_proxy=proxy.url, NO_PROXY="", no_proxy="")
        with harness.uvicorn_site(database_url_of_the_tests(), env, workers=1) as url:
            waiting, other = Browser(), Browser()
            for browser in (waiting, other):
                resp = browser.sign_in(url, provider.username, provider.password, "/account/")
                assert resp.status_code == 200
            assert other.get(url + "/").status_code == 200
            waiting_record = OAuthSession.objects.get(session_key=waiting.cookies.get("sessionid"))
            past = waiting_record.created_at - timedelta(seconds=1)
            OAuthSession.objects.filter(pk=waiting_record.pk).update(access_expires_at=past, id_token_expires_at=past)
            clear_due_hints()
            proxy.slow.set()

            result: dict[str, float | int] = {}

            def refresh() -> None:
                started = time.monotonic()
                result["status"] = waiting.get(url + "/", allow_redirects=False, timeout=30).status_code
                result["seconds"] = time.monotonic() - started

            thread = threading.Thread(target=refresh)
            thread.start()
            time.sleep(0.5)  # the refresh is now waiting on the token endpoint
            started = time.monotonic()
            assert other.get(url + "/", allow_redirects=False, timeout=30).status_code == 200
            other_seconds = time.monotonic() - started
            thread.join(timeout=30)
    # The refreshing request waited on the token endpoint (2 s), and meanwhile the other person was answered at once.
    assert result["seconds"] >= 2.0, result
    assert other_seconds < 1.0, other_seconds
    # And the refresh itself went through. (Both people are the provider's one demo user: when their sign-ins fell
    # in different seconds, django-oauth-toolkit's refreshed ID token carried the second one's auth_time, which
    # used to end the first session; see test_refresh.py::test_signing_in_on_another_device_...)
    assert result["status"] == 200, result
    waiting_record.refresh_from_db()
    assert waiting_record.ended_at is None and waiting_record.refresh_count == 1
