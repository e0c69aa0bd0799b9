"""The site under an ASGI server (uvicorn, `project.asgi:application`), configured by the environment alone like the
gunicorn deployment: sign-in through the embedded provider's real pages, a page read with fresh tokens, the async
demo view (userinfo through the async API client), a transparent refresh counted at the provider, sign-out.
PostgreSQL only: the server is another process and must see the test database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection

from bench import harness
from oauth_client.models import OAuthSession
from tests.browser import Browser
from tests.conftest import Site, requires_postgres
from tests.helpers import expire_tokens, stampede

pytestmark = [pytest.mark.django_db(transaction=True), requires_postgres]


@pytest.fixture
def uvicorn_url(site: Site) -> Iterator[str]:
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    provider = site.provider
    env = {
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "OIDC_ISSUER": provider.issuer,
        "OIDC_CLIENT_ID": provider.client_id,
        "OIDC_CLIENT_SECRET": provider.client_secret,
        "OIDC_REVOCATION_ENDPOINT": f"{provider.base_url}/o/revoke_token/",
    }
    with harness.uvicorn_site(database_url, env, workers=1) as url:
        yield url


def test_sign_in_refresh_async_view_and_sign_out_under_uvicorn(site: Site, uvicorn_url: str):
    browser = Browser()
    resp = browser.sign_in(uvicorn_url, site.provider.username, site.provider.password, "/account/")
    assert resp.status_code == 200 and resp.url == uvicorn_url + "/account/", resp.text[:500]
    record = OAuthSession.objects.get(ended_at__isnull=True)

    userinfo = browser.get(uvicorn_url + "/account/userinfo.json")
    assert userinfo.status_code == 200 and userinfo.json()["sub"] == record.subject

    issued = site.provider.count_refresh_tokens()
    expire_tokens()
    assert browser.get(uvicorn_url + "/account/", allow_redirects=False).status_code == 200
    assert site.provider.count_refresh_tokens() == issued + 1
    assert OAuthSession.objects.get(pk=record.pk).refresh_count == 1

    page = browser.get(uvicorn_url + "/account/")
    browser.submit(page, browser.find_form(page, action="/oauth/logout/"))
    assert OAuthSession.objects.get(pk=record.pk).ended_reason == OAuthSession.EndReason.LOGOUT
    resp = browser.get(uvicorn_url + "/account/", allow_redirects=False)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/oauth/login/")


@pytest.fixture
def two_uvicorn_sites(site: Site) -> Iterator[list[str]]:
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    provider = site.provider
    env = {
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "OIDC_ISSUER": provider.issuer,
        "OIDC_CLIENT_ID": provider.client_id,
        "OIDC_CLIENT_SECRET": provider.client_secret,
        "OIDC_REVOCATION_ENDPOINT": f"{provider.base_url}/o/revoke_token/",
    }
    with harness.uvicorn_site(database_url, env, workers=1) as first, harness.uvicorn_site(database_url, env) as second:
        yield [first, second]


def test_forty_concurrent_requests_over_two_uvicorn_servers_make_one_grant(site: Site, two_uvicorn_sites: list[str]):
    """The refresh under ASGI keeps the row lock's guarantee across processes: one grant, no reuse."""
    browser = Browser()
    first, second = two_uvicorn_sites
    resp = browser.sign_in(first, site.provider.username, site.provider.password, "/account/")
    assert resp.status_code == 200
    assert browser.get(second + "/account/", allow_redirects=False).status_code == 200
    issued = site.provider.count_refresh_tokens()
    expire_tokens()
    responses = stampede([url + "/account/" for url in two_uvicorn_sites], browser.cookies, 40)
    assert [r.status_code for r in responses] == [200] * 40
    assert site.provider.count_refresh_tokens() == issued + 1
    record = OAuthSession.objects.get(ended_at__isnull=True)
    assert record.refresh_count == 1 and not site.provider.is_refresh_token_revoked(record.refresh_token)
