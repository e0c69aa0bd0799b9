"""The async API and the middleware's async mode, in-process through Django's ASGI handler (AsyncClient), against
the real embedded provider: async views with aget_tokens, the async mixins and decorators, the async API client's
refresh-once on a real 401 invalid_token, and no worker thread at all for a request with fresh tokens."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from oauth_client import store
from oauth_client.models import OAuthSession
from tests.browser import Browser
from tests.helpers import active_record, expire_access_token_at_provider, expire_tokens

pytestmark = pytest.mark.django_db(transaction=True)


def async_client_for(browser: Browser) -> AsyncClient:
    client = AsyncClient(headers={"Accept": "text/html"})
    client.cookies["sessionid"] = browser.cookies.get("sessionid")
    return client


def get(client: AsyncClient, path: str) -> Any:
    return async_to_sync(client.get)(path)


@pytest.fixture
def worker_calls(monkeypatch) -> list[str]:
    """Names of the functions the async path hands to a worker thread."""
    calls: list[str] = []
    real = store.in_worker_thread

    async def spy(func, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(getattr(func, "__name__", repr(func)))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(store, "in_worker_thread", spy)
    monkeypatch.setattr("oauth_client.middleware.in_worker_thread", spy)
    monkeypatch.setattr("oauth_client.api.in_worker_thread", spy)
    return calls


@pytest.mark.urls("tests.extension")
def test_an_async_view_reads_fresh_tokens_without_a_worker_thread(site, worker_calls):
    client = async_client_for(site.signed_in_browser())
    get(client, "/ext/async-whoami/")  # the first request may set the session's hint
    worker_calls.clear()
    resp = get(client, "/ext/async-whoami/")
    assert resp.status_code == 200 and resp.json()["sub"] == active_record().subject
    assert worker_calls == []  # session, user and record through Django's async APIs only


@pytest.mark.urls("tests.extension")
def test_due_tokens_are_refreshed_once_in_a_worker_thread(site, worker_calls):
    client = async_client_for(site.signed_in_browser())
    issued = site.provider.count_refresh_tokens()
    expire_tokens()
    resp = get(client, "/ext/async-whoami/")
    assert resp.status_code == 200 and resp.json()["refreshed"] is True
    assert site.provider.count_refresh_tokens() == issued + 1
    assert worker_calls == ["keep_fresh"]  # the middleware's locked refresh, off the event loop
    assert active_record().refresh_count == 1


@pytest.mark.urls("tests.extension")
def test_async_mixins_and_decorators_sign_in_and_refresh(site):
    anonymous = AsyncClient(headers={"Accept": "text/html"})
    for path in ("/ext/async-whoami/", "/ext/async-cbv/", "/ext/async-sensitive/"):
        resp = get(anonymous, path)
        assert resp.status_code == 302 and resp["Location"].startswith("/oauth/login/?next=")
    client = async_client_for(site.signed_in_browser())
    assert get(client, "/ext/async-cbv/").json()["token_length"] > 0
    issued = site.provider.count_refresh_tokens()
    resp = get(client, "/ext/async-sensitive/")
    assert resp.status_code == 200 and resp.json()["last_refreshed_at"] is not None
    assert site.provider.count_refresh_tokens() == issued + 1  # @refresh_tokens on an async view: always


def test_the_async_api_client_refreshes_once_on_a_real_invalid_token_and_retries(site):
    """The demo's async view calls userinfo with async_api_client; the provider holds the access token expired,
    answers 401 invalid_token; the client refreshes once through the locked path and the retry succeeds."""
    browser = site.signed_in_browser()
    client = async_client_for(browser)
    record = active_record()
    expire_access_token_at_provider(site.provider, record.access_token)
    issued = site.provider.count_refresh_tokens()
    resp = get(client, "/account/userinfo.json")
    assert resp.status_code == 200, resp.content[:500]
    assert resp.json()["sub"] == record.subject
    assert site.provider.count_refresh_tokens() == issued + 1
    assert OAuthSession.objects.get(pk=record.pk).refresh_count == 1


@pytest.mark.urls("tests.extension")
def test_an_async_view_renders_templates_with_the_context_processors(site):
    """The app's context processor is lazy, like Django's own: it reads nothing (not even the user, which cannot be
    loaded synchronously in an async view) unless the template uses the sign-in buttons."""
    client = async_client_for(site.signed_in_browser())
    resp = get(client, "/ext/async-template/")
    assert resp.status_code == 200 and b"async page 7" in resp.content


def test_the_async_client_does_not_refresh_for_a_401_from_a_host_that_never_got_the_token(monkeypatch):
    """httpx drops Authorization on a redirect to another host; a 401 from there says nothing about our token."""
    import httpx

    from oauth_client import api

    async def record(request):  # type: ignore[no-untyped-def]
        return SimpleNamespace(access_token="T1", token_type="Bearer", dpop_key="")

    async def no_refresh(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("must not refresh")

    monkeypatch.setattr(api, "_afresh_record", record)
    monkeypatch.setattr(api.token_store(), "aensure_fresh", no_refresh)
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("Authorization")))
        if request.url.host == "api.example":
            return httpx.Response(302, headers={"Location": "https://elsewhere.example/data"})
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})

    async def call() -> httpx.Response:
        auth = api.AsyncBearerAuth(object())  # type: ignore[arg-type]
        async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(handler), follow_redirects=True) as c:
            return await c.get("https://api.example/data")

    response = async_to_sync(call)()
    assert response.status_code == 401
    assert seen == [("api.example", "Bearer T1"), ("elsewhere.example", None)]
