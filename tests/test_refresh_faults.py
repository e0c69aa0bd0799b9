"""A provider that is down, hangs, fails or talks nonsense during refresh never signs anybody out."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from oauth_client.models import OAuthSession
from tests.conftest import client_settings
from tests.faults import FaultServer, closed_port_url
from tests.helpers import active_record, clear_due_hints, expire_tokens, use_token_endpoint

pytestmark = pytest.mark.django_db(transaction=True)

FAST = {"HTTP_TIMEOUT": (0.5, 1.0), "HTTP_RETRIES": 2, "HTTP_RETRY_BUDGET": 3.0}


@pytest.fixture
def fast_site(site, settings):
    settings.OAUTH_CLIENT = client_settings(site.provider, **FAST)
    return site


MODES = ["refused", "hang", "500", "503", "junk", "reset"]


@pytest.fixture(params=MODES)
def broken_token_endpoint(request):
    if request.param == "refused":
        yield closed_port_url(), None
        return
    with FaultServer(request.param, hang_seconds=5) as server:
        yield server.url, server


def test_within_grace_pages_are_served_with_last_tokens(fast_site, broken_token_endpoint):
    url, server = broken_token_endpoint
    browser = fast_site.signed_in_browser()
    before = active_record()
    use_token_endpoint(url)
    expire_tokens(seconds_ago=10)

    started = time.monotonic()
    resp = browser.get(fast_site.url + "/account/", allow_redirects=False)
    elapsed = time.monotonic() - started

    assert resp.status_code == 200
    assert elapsed < FAST["HTTP_RETRY_BUDGET"] + 2  # bounded, even when the provider hangs
    after = active_record()
    assert after.refresh_token == before.refresh_token and after.is_active  # no logout, nothing lost
    if server is not None and server.mode in ("500", "503"):
        assert server.hits >= 2  # retried (503 honoured Retry-After within the budget)
    if server is not None and server.mode in ("hang", "junk", "reset"):
        # The provider may have rotated the token already: never resend it (that would be reuse).
        assert server.hits == 1


def test_sensitive_operation_fails_closed_with_503(fast_site, broken_token_endpoint):
    url, _ = broken_token_endpoint
    browser = fast_site.signed_in_browser()
    use_token_endpoint(url)
    resp = browser.get(fast_site.url + "/account/sensitive/", allow_redirects=False)
    assert resp.status_code == 503
    assert "try again" in resp.text and resp.headers["Retry-After"]
    json_resp = browser.get(fast_site.url + "/account/sensitive/", headers={"Accept": "application/json"})
    assert json_resp.status_code == 503 and json_resp.json()["error"] == "temporarily_unavailable"
    assert active_record().is_active


def test_past_grace_fails_closed_but_keeps_the_session(fast_site, settings):
    browser = fast_site.signed_in_browser()
    use_token_endpoint(closed_port_url())
    expire_tokens(seconds_ago=301)
    resp = browser.get(fast_site.url + "/account/", allow_redirects=False)
    assert resp.status_code == 503
    assert active_record().is_active
    # The provider comes back: the very same session refreshes and goes on.
    settings.OAUTH_CLIENT = client_settings(fast_site.provider, **FAST)
    resp = browser.get(fast_site.url + "/account/", allow_redirects=False)
    assert resp.status_code == 200
    assert active_record().refresh_count == 1


def test_invalid_grant_from_token_endpoint_signs_out(fast_site):
    browser = fast_site.signed_in_browser()
    with FaultServer("invalid_grant") as server:
        use_token_endpoint(server.url)
        expire_tokens()
        resp = browser.get(fast_site.url + "/account/", allow_redirects=False)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/oauth/login/?next=")
    assert OAuthSession.objects.get().ended_reason == OAuthSession.EndReason.REFRESH_REJECTED
    assert server.hits == 1


def test_transient_failure_sends_failed_signal(fast_site):
    from oauth_client import signals

    seen = []

    def receiver(sender, record, request, error, transient, **kwargs):
        seen.append(transient)

    browser = fast_site.signed_in_browser()
    signals.token_refresh_failed.connect(receiver)
    try:
        use_token_endpoint(closed_port_url())
        OAuthSession.objects.update(access_expires_at=timezone.now() - timedelta(seconds=5))
        clear_due_hints()
        browser.get(fast_site.url + "/account/")
    finally:
        signals.token_refresh_failed.disconnect(receiver)
    assert seen == [True]
