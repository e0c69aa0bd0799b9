"""The admin's session registry: what an administrator sees (never a token) and ending sessions properly."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from oauth_client.models import OAuthEvent, OAuthSession
from tests.helpers import expire_tokens, revoke_at_provider
from tests.session_helpers import (
    FIREFOX_LINUX,
    assert_no_token_material,
    is_signed_in,
    newest_record,
    signed_in_as,
)

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "admin:oauth_client_oauthsession_changelist"


def change_url(record: OAuthSession) -> str:
    return reverse("admin:oauth_client_oauthsession_change", args=[record.pk])


def test_changelist_and_detail_show_the_session_but_no_token(site, admin_client):
    browser = signed_in_as(site, FIREFOX_LINUX)
    record = newest_record()
    tokens = (record.access_token, record.id_token, record.refresh_token)

    page = admin_client.get(reverse(CHANGELIST))
    assert page.status_code == 200
    html = page.content.decode()
    assert str(record.user) in html
    assert site.provider.issuer in html
    assert "Firefox on Linux" in html
    assert "Active" in html
    assert_no_token_material(html, *tokens)

    detail = admin_client.get(change_url(record))
    assert detail.status_code == 200
    html = detail.content.decode()
    assert record.subject in html
    assert f"{record.access_token[:4]}*****MASKED*****" in html
    assert "held on the server (hidden)" in html
    assert re.search(r"<time [^>]*>in \d+", html), "token expiry shown as 'in …'"
    assert_no_token_material(html, *tokens)
    # Read-only: no save button, nothing to delete.
    assert 'name="_save"' not in html
    assert admin_client.get(reverse("admin:oauth_client_oauthsession_add")).status_code == 403
    assert is_signed_in(site, browser)


def test_expired_tokens_show_grace_and_expired_ago(site, admin_client):
    signed_in_as(site)
    expire_tokens(seconds_ago=2 * 3600)
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "Grace: refresh due" in html
    assert "expired 2\xa0hours ago" in html or "expired 2 hours ago" in html


def test_end_action_revokes_at_provider_and_signs_the_browser_out(site, admin_client):
    browser = signed_in_as(site)
    other = signed_in_as(site)
    record, kept = OAuthSession.objects.order_by("created_at")
    refresh_token = record.refresh_token
    assert not site.provider.is_refresh_token_revoked(refresh_token)

    # The action first asks for confirmation, listing what will be ended.
    confirm = admin_client.post(reverse(CHANGELIST), {"action": "end_sessions", "_selected_action": [record.pk]})
    assert confirm.status_code == 200
    assert b"Yes, end and revoke" in confirm.content
    assert OAuthSession.objects.get(pk=record.pk).is_active

    done = admin_client.post(
        reverse(CHANGELIST), {"action": "end_sessions", "_selected_action": [record.pk], "post": "yes"}, follow=True
    )
    assert done.status_code == 200
    assert b"1 session was ended" in done.content

    record.refresh_from_db()
    assert record.ended_reason == OAuthSession.EndReason.ADMIN and record.ended_by == "admin"
    assert not record.refresh_token and not record.access_token
    assert site.provider.is_refresh_token_revoked(refresh_token)
    assert not is_signed_in(site, browser)
    # The other session is untouched.
    assert is_signed_in(site, other)
    kept.refresh_from_db()
    assert kept.is_active and not site.provider.is_refresh_token_revoked(kept.refresh_token)
    # The ended record stays visible, with its reason and who ended it.
    html = admin_client.get(reverse(CHANGELIST) + "?state=ended").content.decode()
    assert "Ended: Ended by an administrator (by admin)" in html


def test_end_action_from_the_session_page(site, admin_client):
    browser = signed_in_as(site)
    record = newest_record()
    page = admin_client.get(change_url(record))
    assert b"End session and revoke refresh token at the provider" in page.content
    confirm = admin_client.post(
        change_url(record), {"CHANGE_FORM-action": "end_sessions", "_selected_action": [str(record.pk)]}
    )
    assert confirm.status_code == 200 and b"Yes, end and revoke" in confirm.content
    admin_client.post(reverse(CHANGELIST), {"action": "end_sessions", "_selected_action": [record.pk], "post": "yes"})
    assert not is_signed_in(site, browser)


def test_staff_without_end_permission_can_look_but_not_end(site):
    browser = signed_in_as(site)
    record = newest_record()
    staff = get_user_model().objects.create_user("helpdesk", password="x", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_oauthsession"))
    client = Client()
    client.force_login(staff)
    page = client.get(reverse(CHANGELIST))
    assert page.status_code == 200 and b"end_sessions" not in page.content
    client.post(reverse(CHANGELIST), {"action": "end_sessions", "_selected_action": [record.pk], "post": "yes"})
    assert OAuthSession.objects.get(pk=record.pk).is_active
    assert is_signed_in(site, browser)


def test_user_admin_lists_the_users_active_sessions(site, admin_client):
    signed_in_as(site, FIREFOX_LINUX)
    record = newest_record()
    html = admin_client.get(reverse("admin:accounts_user_change", args=[record.user_id])).content.decode()
    assert "Active OAuth sessions" in html
    assert "Firefox on Linux" in html
    assert change_url(record) in html
    link = f"?user__id__exact={record.user_id}"
    assert link in html
    filtered = admin_client.get(reverse(CHANGELIST) + link)
    assert filtered.status_code == 200 and str(record.user).encode() in filtered.content


def test_activity_chart_counts_refreshes_and_failures(site, admin_client):
    browser = signed_in_as(site)
    expire_tokens()
    assert is_signed_in(site, browser)  # refreshed inside that request
    # A refresh the provider refuses: a failure, and the session ends.
    revoke_at_provider(site.provider, newest_record().refresh_token)
    expire_tokens()
    assert not is_signed_in(site, browser)

    assert OAuthEvent.objects.filter(kind=OAuthEvent.Kind.REFRESH).count() == 1
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert '<strong id="oauth-refreshes">1</strong>' in html
    assert '<strong id="oauth-refresh-failures">1</strong>' in html
    assert '<strong id="oauth-active-sessions">0</strong>' in html
    assert "<svg" in html and 'class="bar-refresh"' in html and 'class="bar-refresh_failed"' in html
    # One bar has height, in the current hour (or the one before, if the hour just turned); the SVG uses
    # decimal points, whatever the language.
    heights = [float(h) for h in re.findall(r'class="bar-refresh" [^>]*height="([\d.]+)"', html)]
    assert len(heights) == 24 and [h > 0 for h in heights].count(True) == 1 and max(heights[-2:]) > 0
    french = admin_client.get(reverse(CHANGELIST), headers={"Accept-Language": "fr-ca"}).content.decode()
    assert 'lang="fr-ca"' in french
    assert re.findall(r'class="bar-refresh" [^>]*height="([\d.]+)"', french) == re.findall(
        r'class="bar-refresh" [^>]*height="([\d.]+)"', html
    )


@pytest.mark.parametrize(
    "query",
    ["state=nonsense", "refreshed=yesterday", "issuer=http://nowhere", "o=99", "created_at__year=abc", "q=%00"],
)
def test_bad_changelist_parameters_are_not_a_server_error(site, admin_client, query):
    signed_in_as(site)
    resp = admin_client.get(reverse(CHANGELIST) + "?" + query)
    assert resp.status_code in (200, 302, 400)


@pytest.mark.django_db(transaction=False)
def test_changelist_with_100k_records_runs_a_bounded_number_of_queries(django_assert_max_num_queries, settings):
    settings.OAUTH_CLIENT = {"ISSUER": "https://issuer.example", "CLIENT_ID": "x", "CLIENT_SECRET": "y"}
    User = get_user_model()
    User.objects.bulk_create([User(username=f"user{i}", email=f"user{i}@example.com") for i in range(1000)])
    users = list(User.objects.order_by("pk").values_list("pk", flat=True))
    now = timezone.now()
    OAuthSession.objects.bulk_create(
        (
            OAuthSession(
                user_id=users[i % len(users)],
                issuer="https://issuer.example" if i % 10 else "https://other.example",
                subject=f"sub-{i % len(users)}",
                sid=f"sid-{i}",
                session_key=f"key-{i}",
                created_at=now - timedelta(minutes=7 * i),
                last_seen_at=now - timedelta(minutes=i),
                # Seconds ago: "refreshed today" must not depend on the time of day the suite runs at.
                last_refreshed_at=now - timedelta(seconds=i % 5) if i % 3 else None,
                access_expires_at=now + timedelta(minutes=5) if i % 2 else now - timedelta(hours=1),
                ended_at=now - timedelta(days=1) if i % 7 == 0 else None,
                ended_reason=OAuthSession.EndReason.ADMIN if i % 7 == 0 else "",
                client_ip="192.0.2.1",
                user_agent=FIREFOX_LINUX,
            )
            for i in range(100_000)
        ),
        batch_size=2000,
    )
    assert OAuthSession.objects.count() == 100_000
    admin = User.objects.create_superuser("root", "root@example.com", "pw-not-used")
    client = Client()
    client.force_login(admin)

    for query in ["", "?state=active", "?state=grace", "?state=expired", "?state=ended", "?refreshed=today",
                  "?issuer=https://other.example", "?q=user42", "?p=50", "?o=3",
                  "?created_at__year=" + str(now.year)]:  # fmt: skip
        with django_assert_max_num_queries(14):
            page = client.get(reverse(CHANGELIST) + query)
        assert page.status_code == 200, query
        rows = page.content.decode().count('name="_selected_action"')
        # No grace rows here: records without a refresh token are expired, not refreshable.
        assert rows == (0 if query == "?state=grace" else 50), (query, rows)
    assert client.get(reverse(CHANGELIST)).content.decode().count('name="_selected_action"') == 50
