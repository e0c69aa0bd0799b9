"""Exactly one refresh per expiry, whatever the concurrency: threads of one server and separate worker
processes (gunicorn) sharing the PostgreSQL database. Grants are counted at the provider."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from bench import harness
from tests.conftest import requires_postgres
from tests.helpers import active_record, expire_tokens

pytestmark = [pytest.mark.django_db(transaction=True), requires_postgres]


def hammer(url: str, cookies, n: int) -> list[requests.Response]:
    """n requests of one session at once (released together by a barrier)."""
    barrier = threading.Barrier(n)

    def one(_: int) -> requests.Response:
        s = requests.Session()
        s.cookies.update(cookies)
        barrier.wait(timeout=30)
        return s.get(url, headers={"Accept": "text/html"}, allow_redirects=False, timeout=60)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


def assert_one_refresh_all_served(site, responses, issued_before: int) -> None:
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * len(responses), statuses
    assert site.provider.count_refresh_tokens() == issued_before + 1
    record = active_record()
    assert record.refresh_count == 1
    # Every response was rendered with the new tokens.
    new_expiry = record.access_expires_at.isoformat(timespec="seconds")
    for r in responses:
        assert record.access_expires_at.strftime("%Y-%m-%dT%H:%M:%S") in r.text or new_expiry[:19] in r.text


def test_twenty_threads_one_refresh(site):
    browser = site.signed_in_browser()
    issued = site.provider.count_refresh_tokens()
    expire_tokens()
    responses = hammer(site.url + "/account/", browser.cookies, 20)
    assert_one_refresh_all_served(site, responses, issued)
    # The session is still valid afterwards, and the token it holds is the provider's only live one.
    assert browser.get(site.url + "/account/").url == site.url + "/account/"
    assert not site.provider.is_refresh_token_revoked(active_record().refresh_token)


@pytest.fixture
def gunicorn_site(site):
    """The same site in 4 gunicorn worker processes, on the test database."""
    db = connection.settings_dict
    env = {
        "OIDC_ISSUER": site.provider.issuer,
        "OIDC_CLIENT_ID": site.provider.client_id,
        "OIDC_CLIENT_SECRET": site.provider.client_secret,
        "OIDC_REVOCATION_ENDPOINT": f"{site.provider.base_url}/o/revoke_token/",
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
    }
    database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    with harness.gunicorn_site(database_url, env, workers=4) as url:
        yield url


def test_four_worker_processes_one_refresh(site, gunicorn_site):
    browser = site.signed_in_browser()
    assert browser.get(gunicorn_site + "/account/").url == gunicorn_site + "/account/"
    issued = site.provider.count_refresh_tokens()
    expire_tokens()
    responses = hammer(gunicorn_site + "/account/", browser.cookies, 20)
    assert_one_refresh_all_served(site, responses, issued)
    # Both servers (live server and gunicorn) keep serving the session.
    assert browser.get(site.url + "/account/").status_code == 200
    assert browser.get(gunicorn_site + "/account/").status_code == 200


def test_concurrent_sensitive_requests_share_one_refresh(site):
    browser = site.signed_in_browser()
    issued = site.provider.count_refresh_tokens()
    responses = hammer(site.url + "/account/sensitive/", browser.cookies, 10)
    assert [r.status_code for r in responses] == [200] * 10
    # Each sensitive request needs a refresh newer than its own start; concurrent ones can share one.
    grants = site.provider.count_refresh_tokens() - issued
    assert 1 <= grants <= 10
    assert active_record().refresh_count == grants
    assert not site.provider.is_refresh_token_revoked(active_record().refresh_token)
