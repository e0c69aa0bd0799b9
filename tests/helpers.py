"""Helpers shared by the refresh tests."""

from __future__ import annotations

from datetime import timedelta
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
