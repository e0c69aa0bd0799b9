"""Helpers shared by the refresh tests."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from importlib import import_module

import requests
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from oauth_client import discovery, providers
from oauth_client.models import OAuthSession
from oauth_client.store import DUE_AT_KEY
from tests.browser import Browser


def clear_due_hints() -> None:
    """Tokens were changed behind the store's back (a test moving expiries): drop every session's "next due" hint,
    so the next request reads the record, as it does once the hint's moment has passed."""
    engine = import_module(settings.SESSION_ENGINE)
    for key in Session.objects.values_list("session_key", flat=True):
        session = engine.SessionStore(key)
        if session.pop(DUE_AT_KEY, None) is not None:
            session.save()


def expire_tokens(seconds_ago: int = 1) -> None:
    """Move every active record's expiries into the past (no sleeping)."""
    past = timezone.now() - timedelta(seconds=seconds_ago)
    OAuthSession.objects.filter(ended_at__isnull=True).update(access_expires_at=past, id_token_expires_at=past)
    clear_due_hints()


def client_for(browser: Browser) -> Client:
    """An in-process Django test client carrying the browser's session cookie."""
    c = Client()
    c.cookies["sessionid"] = browser.cookies.get("sessionid")
    return c


def use_token_endpoint(url: str) -> None:
    """Point the cached discovery metadata's token endpoint at `url` (a fault server)."""
    metadata = {**discovery.get_metadata(providers.get()), "token_endpoint": url}
    cache.set(discovery._cache_key("metadata", providers.get()), metadata, 3600)
    discovery._memo.clear()


def revoke_at_provider(provider, token: str) -> None:
    resp = requests.post(
        f"{provider.base_url}/o/revoke_token/",
        data={"token": token, "token_type_hint": "refresh_token"},
        auth=(provider.client_id, provider.client_secret),
        timeout=10,
    )
    assert resp.status_code == 200, resp.text


def active_record() -> OAuthSession:
    return OAuthSession.objects.get(ended_at__isnull=True)


def expire_access_token_at_provider(provider, token: str) -> None:
    """The provider now considers the access token expired (earlier than it announced); the refresh token stays
    valid. (Revoking the access token at DOT's revoke endpoint would revoke the refresh token too.)"""
    past = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
    checksum = hashlib.sha256(token.encode()).hexdigest()
    conn = sqlite3.connect(provider.database_path, timeout=20)
    try:
        updated = conn.execute(
            "UPDATE oauth2_provider_accesstoken SET expires = ? WHERE token = ? OR token_checksum = ?",
            (past, token, checksum),
        ).rowcount
        conn.commit()
    finally:
        conn.close()
    assert updated == 1


def stampede(urls: list[str], cookies, n: int) -> list[requests.Response]:
    """n requests of one session at once, spread over the servers, released together by a barrier."""
    barrier = threading.Barrier(n)

    def one(i: int) -> requests.Response:
        s = requests.Session()
        s.cookies.update(cookies)
        barrier.wait(timeout=30)
        return s.get(urls[i % len(urls)], headers={"Accept": "text/html"}, allow_redirects=False, timeout=60)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))
