"""Refresh-ahead on product defaults with tokens that live less than REFRESH_LEEWAY (60 s).

Short lifetimes are real (hardened realms, test tenants). With a fixed 60-second margin a 10-second token would be
due the moment it arrives and every request would refresh; the margin is capped at a quarter of the lifetime.
Grants are counted at the embedded provider.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.cache import cache

from oauth_client import store
from oauth_client.models import REFRESH_AHEAD_FRACTION, refresh_margin
from tests.conftest import Site, client_settings
from tests.helpers import active_record
from tests.provider import EmbeddedProvider, short_lived

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN_SECONDS = 10


@pytest.fixture(scope="module")
def short_lived_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedProvider]:
    p = short_lived(tmp_path_factory.mktemp("idp-short"), TOKEN_SECONDS)
    yield p
    p.stop()


@pytest.fixture
def short_site(live_server, short_lived_provider, settings) -> Site:  # type: ignore[no-untyped-def]
    # Product defaults: no REFRESH_LEEWAY override.
    settings.OAUTH_CLIENT = client_settings(short_lived_provider)
    cache.clear()
    store._short_lifetimes_logged.clear()
    return Site(url=live_server.url, provider=short_lived_provider)


def test_margin_is_the_leeway_or_a_quarter_of_the_lifetime(settings):
    assert settings.OAUTH_CLIENT.get("REFRESH_LEEWAY", 60) == 60
    assert refresh_margin(timedelta(hours=1)) == timedelta(seconds=60)
    assert refresh_margin(timedelta(seconds=120)) == timedelta(seconds=30)
    assert refresh_margin(timedelta(seconds=12)) == timedelta(seconds=12 * REFRESH_AHEAD_FRACTION)
    # Already expired (or a clock that went backwards): due at expiry, never after.
    assert refresh_margin(timedelta(seconds=-5)) == timedelta(0)


def test_sign_in_makes_no_refresh_and_one_grant_per_expiry(short_site, caplog):
    caplog.set_level(logging.WARNING, logger="oauth_client.store")
    provider = short_site.provider
    before = provider.count_refresh_tokens()
    browser = short_site.signed_in_browser(next_url="/account/")
    # The whole sign-in (callback, redirect, profile page with its userinfo call) made only the code grant.
    assert provider.count_refresh_tokens() == before + 1
    assert active_record().refresh_count == 0

    # Requests while the tokens are fresh make no grant, however many.
    for _ in range(5):
        assert browser.get(short_site.url + "/account/", allow_redirects=False).status_code == 200
    assert active_record().refresh_count == 0

    # Past the due moment (7.5 s after issue), the next request refreshes once, and the new tokens are fresh
    # again: the request right after does not refresh.
    record = active_record()
    time.sleep(max(0.0, (record.refresh_due_at - record.tokens_issued_at).total_seconds() + 0.5))
    for _ in range(2):
        resp = browser.get(short_site.url + "/account/", allow_redirects=False)
        assert resp.status_code == 200, resp.headers.get("Location")
    record = active_record()
    assert record.refresh_count == 1
    assert provider.count_refresh_tokens() == before + 2
    assert record.refresh_due_at > record.tokens_issued_at + timedelta(seconds=TOKEN_SECONDS / 2)

    # Reported once at WARNING, with the lifetime and no token material.
    warnings = [r for r in caplog.records if "REFRESH_LEEWAY" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    # The lifetime as the site measured it: up to the ID token's whole-second exp, after the code exchange.
    lived = re.search(r"live (\d+) s", message)
    assert lived and TOKEN_SECONDS - 4 <= int(lived.group(1)) <= TOKEN_SECONDS, message
    for token in (record.access_token, record.id_token, record.refresh_token):
        assert token[:16] not in message
