"""The "your sessions" page: a person sees their devices and signs out the others (revoked at the provider)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from oauth_client.humanize import describe
from oauth_client.models import OAuthSession
from tests.browser import Browser, forms
from tests.session_helpers import FIREFOX_LINUX, is_signed_in, signed_in_as

pytestmark = pytest.mark.django_db(transaction=True)

PAGE = "/account/sessions/"


def record_of(browser_index: int) -> OAuthSession:
    return list(OAuthSession.objects.order_by("created_at"))[browser_index]


def test_page_lists_sessions_and_marks_the_current_one(site):
    signed_in_as(site, FIREFOX_LINUX)
    me = signed_in_as(site)
    page = me.get(site.url + PAGE)
    assert page.status_code == 200
    assert "Firefox on Linux" in page.text and "Python requests" in page.text
    assert page.text.count("This device") == 1
    mine, theirs = record_of(1), record_of(0)
    # The current session is signed out with the ordinary sign-out; the other one has its own button.
    assert me.find_form(page, action="/oauth/logout/")
    assert f'value="{theirs.pk}"' in page.text and f'value="{mine.pk}"' not in page.text
    assert 'aria-current="true"' in page.text
    assert mine.refresh_token not in page.text and mine.access_token not in page.text


def test_signing_out_another_session_revokes_it_and_keeps_this_one(site):
    other = signed_in_as(site, FIREFOX_LINUX)
    me = signed_in_as(site)
    theirs, mine = record_of(0), record_of(1)
    their_refresh_token = theirs.refresh_token
    page = me.get(site.url + PAGE)
    form = next(f for f in forms(page.text) if f.fields.get("end") == str(theirs.pk))
    done = me.submit(page, form)
    assert done.status_code == 200 and done.url == site.url + PAGE
    assert "That session was signed out." in done.text
    assert "Firefox on Linux" not in done.text

    theirs.refresh_from_db()
    assert theirs.ended_reason == OAuthSession.EndReason.USER and theirs.ended_by == mine.user.username
    assert site.provider.is_refresh_token_revoked(their_refresh_token)
    assert not is_signed_in(site, other)
    assert is_signed_in(site, me)
    mine.refresh_from_db()
    assert mine.is_active and not site.provider.is_refresh_token_revoked(mine.refresh_token)


def test_sign_out_all_other_sessions(site):
    others = [signed_in_as(site), signed_in_as(site, FIREFOX_LINUX)]
    me = signed_in_as(site)
    their_tokens = [r.refresh_token for r in OAuthSession.objects.order_by("created_at")[:2]]
    page = me.get(site.url + PAGE)
    assert "Sign out all 2 other sessions" in page.text
    done = me.submit(page, me.find_form(page, with_field="end_others"))
    assert "2 other sessions were signed out." in done.text
    assert [is_signed_in(site, b) for b in others] == [False, False]
    assert all(site.provider.is_refresh_token_revoked(t) for t in their_tokens)
    assert is_signed_in(site, me)
    assert OAuthSession.objects.active().count() == 1


def test_the_current_session_is_not_ended_by_the_other_sessions_form(site):
    me = signed_in_as(site)
    mine = record_of(0)
    page = me.get(site.url + PAGE)
    token = me.cookies.get("csrftoken")
    resp = me.post(
        site.url + PAGE, data={"end": str(mine.pk), "csrfmiddlewaretoken": token}, headers={"Referer": page.url}
    )
    assert resp.status_code == 200 and "Use “Sign out” to end the session you are using now." in resp.text
    assert is_signed_in(site, me)


def test_someone_elses_session_cannot_be_ended(site):
    me = signed_in_as(site)
    stranger = get_user_model().objects.create_user("stranger")
    foreign = OAuthSession.objects.create(
        user=stranger,
        issuer=site.provider.issuer,
        subject="someone-else",
        session_key="not-a-real-session",
        access_expires_at=timezone.now(),
    )
    page = me.get(site.url + PAGE)
    assert str(foreign.pk) not in page.text
    token = me.cookies.get("csrftoken")
    resp = me.post(
        site.url + PAGE, data={"end": str(foreign.pk), "csrfmiddlewaretoken": token}, headers={"Referer": page.url}
    )
    assert resp.status_code == 200 and "That session had already ended." in resp.text
    foreign.refresh_from_db()
    assert foreign.is_active


@pytest.mark.parametrize("data", [{}, {"end": "not-a-uuid"}, {"end": "x" * 5000}])
def test_bad_input_is_a_clear_400(site, data):
    me = signed_in_as(site)
    page = me.get(site.url + PAGE)
    token = me.cookies.get("csrftoken")
    resp = me.post(site.url + PAGE, data={**data, "csrfmiddlewaretoken": token}, headers={"Referer": page.url})
    assert resp.status_code == 400 and "Choose a session to sign out." in resp.text
    assert is_signed_in(site, me)


def test_post_without_csrf_token_is_refused(site):
    other = signed_in_as(site)
    me = signed_in_as(site)
    resp = me.post(site.url + PAGE, data={"end_others": "1"})
    assert resp.status_code == 403
    assert is_signed_in(site, other)


def test_anonymous_visitor_is_sent_to_sign_in(site):
    resp = Browser().get(site.url + PAGE, allow_redirects=False)
    assert resp.status_code == 302 and resp.headers["Location"] == "/oauth/login/?next=%2Faccount%2Fsessions%2F"


@pytest.mark.parametrize(
    ("user_agent", "device"),
    [
        (FIREFOX_LINUX, "Firefox on Linux"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
            "Edge on Windows",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.5 Mobile/15E148 Safari/604.1",
            "Safari on iOS",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/126.0.0.0 Mobile Safari/537.36",
            "Chrome on Android",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.5 Safari/605.1.15",
            "Safari on macOS",
        ),
        ("curl/8.5.0", "curl"),
        ("", "Unknown device"),
    ],
)
def test_device_description(user_agent, device):
    assert describe(user_agent) == device
