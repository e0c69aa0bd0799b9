"""What people and administrators see when the site has several identity providers: the chooser and the home
page's "Sign in with …" buttons in both languages, the provider on the profile, "your sessions" and the admin, the
claims' times as dates, and the header on one line in French. No provider is contacted: the pages render from
settings and records made here."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from html import unescape
from pathlib import Path
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import formats, timezone, translation

from oauth_client import store
from oauth_client.models import OAuthEvent, OAuthSession

pytestmark = pytest.mark.django_db

PROVIDERS = {
    "corp": {"ISSUER": "https://corp.example", "CLIENT_ID": "a", "CLIENT_SECRET": "b", "LABEL": "Corp SSO"},
    "partner": {"ISSUER": "https://partner.example", "CLIENT_ID": "c", "CLIENT_SECRET": "d", "LABEL": "Partner ID"},
}
CHANGELIST = "admin:oauth_client_oauthsession_changelist"
FRENCH = {"HTTP_ACCEPT_LANGUAGE": "fr-CA"}


@pytest.fixture
def several(settings):
    settings.OAUTH_CLIENT = {"PROVIDERS": PROVIDERS}


@pytest.fixture
def one(settings):
    settings.OAUTH_CLIENT = {"ISSUER": "https://id.example", "CLIENT_ID": "a", "CLIENT_SECRET": "b"}


def text_of(response) -> str:
    """The page's text, whitespace collapsed (no-break spaces included), tags dropped."""
    html = response.content.decode()
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).strip()


def sign_in_links(response) -> dict[str, str]:
    """Each "Sign in with …" button: its text → its href."""
    html = response.content.decode()
    return {
        re.sub(r"\s+", " ", unescape(text)).strip(): unescape(href)
        for href, text in re.findall(r'<a class="button provider-[\w-]+" href="([^"]+)">([^<]+)</a>', html)
    }


def signed_in(client: Client, user, provider: str, issuer: str, **claims) -> OAuthSession:
    """A record made as `TokenStore.create` makes one, bound to the test client's session (tokens fresh)."""
    client.force_login(user)
    session = client.session
    now = timezone.now()
    record = OAuthSession.objects.create(
        user=user,
        provider=provider,
        issuer=issuer,
        subject=f"sub-{user.pk}",
        session_key=session.session_key,
        access_token="access-token-value",
        id_token="id-token-value",
        refresh_token="refresh-token-value",
        access_expires_at=now + timedelta(minutes=10),
        id_token_expires_at=now + timedelta(minutes=10),
        claims={"iss": issuer, "sub": f"sub-{user.pk}", **claims},
        user_agent="Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    )
    session[store.SESSION_KEY] = str(record.pk)
    session[store.DUE_AT_KEY] = int(record.refresh_due_at.timestamp())
    session[store.SEEN_AT_KEY] = int(now.timestamp())
    session[store.BOUND_KEY] = session.session_key
    session.save()
    return record


# --- the chooser ------------------------------------------------------------------------------------------------


def test_chooser_lists_every_provider_with_its_sign_in_link(several, client):
    page = client.get("/oauth/login/?next=/account/sensitive/")
    assert page.status_code == 200
    assert page.headers["Cache-Control"].startswith("max-age=0") or "no-cache" in page.headers["Cache-Control"]
    assert sign_in_links(page) == {
        "Sign in with Corp SSO": "/oauth/login/corp/?next=" + quote("/account/sensitive/", safe=""),
        "Sign in with Partner ID": "/oauth/login/partner/?next=" + quote("/account/sensitive/", safe=""),
    }
    assert "Choose the account you want to sign in with." in text_of(page)


def test_chooser_in_french_from_accept_language(several, client):
    page = client.get("/oauth/login/?next=/account/", **FRENCH)
    assert page.status_code == 200 and page.headers["Content-Language"] == "fr-ca"
    links = sign_in_links(page)
    assert links == {
        "Se connecter avec Corp SSO": "/oauth/login/corp/?next=%2Faccount%2F",
        "Se connecter avec Partner ID": "/oauth/login/partner/?next=%2Faccount%2F",
    }
    text = text_of(page)
    assert "Choisissez le compte avec lequel vous connecter." in text
    assert "Sign in" not in text and "Choose" not in text


def test_chooser_in_french_from_the_language_switch(several, client):
    switched = client.post(reverse("set_language"), {"language": "fr-ca", "next": "/oauth/login/"})
    assert switched.status_code == 302
    page = client.get("/oauth/login/")
    assert set(sign_in_links(page)) == {"Se connecter avec Corp SSO", "Se connecter avec Partner ID"}
    # No `next`: after sign-in, the site's default page.
    assert set(sign_in_links(page).values()) == {"/oauth/login/corp/", "/oauth/login/partner/"}


def test_chooser_drops_an_unsafe_next(several, client):
    page = client.get("/oauth/login/?next=https://evil.example/")
    assert set(sign_in_links(page).values()) == {"/oauth/login/corp/", "/oauth/login/partner/"}


# --- the home page and the header -------------------------------------------------------------------------------


def test_home_shows_a_button_per_provider(several, client):
    page = client.get("/")
    assert page.status_code == 200
    links = sign_in_links(page)
    assert set(links) == {"Sign in with Corp SSO", "Sign in with Partner ID"}
    assert all(href.startswith(("/oauth/login/corp/", "/oauth/login/partner/")) for href in links.values())
    french = client.get("/", **FRENCH)
    assert set(sign_in_links(french)) == {"Se connecter avec Corp SSO", "Se connecter avec Partner ID"}


def test_home_with_one_provider_keeps_its_single_button(one, client):
    page = client.get("/")
    assert sign_in_links(page) == {}
    assert '<a class="button" href="/oauth/login/">Sign in</a>' in page.content.decode()


def test_no_provider_buttons_once_signed_in(several, client):
    user = get_user_model().objects.create_user("carol")
    signed_in(client, user, "corp", "https://corp.example")
    page = client.get("/")
    assert page.status_code == 200 and sign_in_links(page) == {}
    assert page.context["oauth_login_choices"] == []


def test_context_processor_comes_back_to_the_page_but_not_to_the_apps_own(several, client):
    page = client.get("/account/sensitive/?x=1", follow=True)
    # Not signed in: sent to the chooser, whose own buttons carry the `next` it was given…
    assert page.redirect_chain and page.redirect_chain[-1][0].startswith("/oauth/login/?next=")
    choices = page.context["oauth_login_choices"]
    # …while the header's choices never point back at the chooser itself.
    assert {c["url"] for c in choices} == {"/oauth/login/corp/", "/oauth/login/partner/"}
    other = client.get("/?lang=x")
    assert {c["url"] for c in other.context["oauth_login_choices"]} == {
        "/oauth/login/corp/?next=%2F%3Flang%3Dx",
        "/oauth/login/partner/?next=%2F%3Flang%3Dx",
    }


# --- the profile ------------------------------------------------------------------------------------------------


@pytest.fixture
def no_userinfo(monkeypatch):
    """The profile asks the provider for userinfo: here the provider has no userinfo endpoint."""
    monkeypatch.setattr("accounts.views.session_provider_metadata", lambda request: {})


def test_profile_names_the_provider_and_shows_times_as_dates(several, client, no_userinfo):
    user = get_user_model().objects.create_user("alice")
    now = int(time.time())
    exp, iat, auth_time, updated_at = now + 600, now - 60, now - 3600, now - 86400 * 3
    signed_in(
        client,
        user,
        "partner",
        "https://partner.example",
        exp=exp,
        iat=iat,
        auth_time=auth_time,
        updated_at=updated_at,
        email="alice@example.com",
        nbf=True,  # not a number of seconds: shown as it is
    )
    page = client.get("/account/")
    assert page.status_code == 200
    html, text = page.content.decode(), text_of(page)
    assert "Signed in with Partner ID" in text and "Corp SSO" not in text
    for epoch in (exp, iat, auth_time, updated_at):
        assert str(epoch) not in html
        moment = timezone.localtime(timezone.datetime.fromtimestamp(epoch, tz=timezone.UTC))
        assert re.sub(r"\s+", " ", formats.date_format(moment, "DATETIME_FORMAT")) in text
        assert f'datetime="{moment.isoformat()}"' in html
    assert re.search(r"exp \S.*? \(in (9|10) minutes\)", text), text
    assert re.search(r"auth_time \S.*? \(1 hour ago\)", text), text
    assert "alice@example.com" in text and "nbf True" in text

    french = text_of(client.get("/account/", **FRENCH))
    assert "Connecté avec Partner ID" in french
    with translation.override("fr-ca"):
        moment = timezone.localtime(timezone.datetime.fromtimestamp(exp, tz=timezone.UTC))
        expires = re.sub(r"\s+", " ", formats.date_format(moment, "DATETIME_FORMAT"))
    assert re.search(r"^\d{1,2} [a-zéû]+ \d{4}, \d\d h \d\d$", expires), expires
    assert f"exp {expires} (dans " in french and "(il y a 1 heure)" in french


def test_profile_userinfo_times_are_dates_too(several, client, monkeypatch):
    user = get_user_model().objects.create_user("dave")
    updated_at = int(time.time()) - 7200
    monkeypatch.setattr(
        "accounts.views.provider_userinfo", lambda request: ([("name", "Dave"), ("updated_at", updated_at)], "")
    )
    signed_in(client, user, "corp", "https://corp.example", exp=int(time.time()) + 600)
    page = client.get("/account/")
    assert str(updated_at) not in page.content.decode()
    assert re.search(r"updated_at \S.*? \(2 hours ago\)", text_of(page))


def test_profile_with_one_provider_does_not_name_it(one, client, no_userinfo):
    user = get_user_model().objects.create_user("erin")
    signed_in(client, user, "default", "https://id.example", exp=int(time.time()) + 600)
    page = client.get("/account/")
    assert page.status_code == 200 and 'id="signed-in-with"' not in page.content.decode()


def test_profile_of_a_provider_no_longer_configured_names_its_issuer(several, client, no_userinfo):
    user = get_user_model().objects.create_user("frank")
    signed_in(client, user, "gone", "https://gone.example", exp=int(time.time()) + 600)
    assert "Signed in with https://gone.example" in text_of(client.get("/account/"))


# --- your sessions ----------------------------------------------------------------------------------------------


def test_your_sessions_shows_each_sessions_provider(several, client):
    user = get_user_model().objects.create_user("grace")
    other = Client()
    signed_in(other, user, "partner", "https://partner.example")
    signed_in(client, user, "corp", "https://corp.example")
    text = text_of(client.get("/account/sessions/"))
    assert "signed in with Corp SSO" in text and "signed in with Partner ID" in text
    french = text_of(client.get("/account/sessions/", **FRENCH))
    assert "connexion avec Corp SSO" in french and "connexion avec Partner ID" in french


def test_your_sessions_with_one_provider_does_not_name_it(one, client):
    user = get_user_model().objects.create_user("heidi")
    signed_in(client, user, "default", "https://id.example")
    text = text_of(client.get("/account/sessions/"))
    assert "signed in with" not in text and "signed in " in text


# --- the admin --------------------------------------------------------------------------------------------------


def test_admin_has_a_provider_column_and_filter(several, admin_client):
    corp = signed_in(Client(), get_user_model().objects.create_user("ivan"), "corp", "https://corp.example")
    partner = signed_in(Client(), get_user_model().objects.create_user("judy"), "partner", "https://partner.example")
    page = admin_client.get(reverse(CHANGELIST))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'class="column-provider_name"' in html
    assert "?provider=corp" in html and "?provider=partner" in html  # the filter's choices
    assert html.count('name="_selected_action"') == 2

    filtered = admin_client.get(reverse(CHANGELIST) + "?provider=partner").content.decode()
    assert filtered.count('name="_selected_action"') == 1
    assert f'value="{partner.pk}"' in filtered and f'value="{corp.pk}"' not in filtered
    assert "Partner ID" in filtered

    french = admin_client.get(reverse(CHANGELIST), **FRENCH).content.decode()
    assert "fournisseur" in french.lower()

    detail = admin_client.get(reverse("admin:oauth_client_oauthsession_change", args=[corp.pk]))
    assert "Corp SSO" in detail.content.decode()


def test_admin_with_one_provider_has_no_provider_column(one, admin_client):
    signed_in(Client(), get_user_model().objects.create_user("ken"), "default", "https://id.example")
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert 'class="column-provider_name"' not in html and "?provider=" not in html


def test_admin_activity_chart_per_provider(several, admin_client):
    corp = signed_in(Client(), get_user_model().objects.create_user("leo"), "corp", "https://corp.example")
    partner = signed_in(Client(), get_user_model().objects.create_user("mia"), "partner", "https://partner.example")
    OAuthEvent.objects.create(kind=OAuthEvent.Kind.REFRESH, session=corp)
    OAuthEvent.objects.create(kind=OAuthEvent.Kind.REFRESH, session=corp)
    OAuthEvent.objects.create(kind=OAuthEvent.Kind.REFRESH_FAILED, session=partner)
    OAuthEvent.objects.create(kind=OAuthEvent.Kind.REFRESH, session=None)  # its session was pruned

    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert '<strong id="oauth-refreshes">3</strong>' in html
    assert '<strong id="oauth-refresh-failures">1</strong>' in html
    charts = dict(re.findall(r'class="oauth-provider-activity" data-provider="([\w-]*)">(.*?)</svg>', html, flags=re.S))
    assert set(charts) == {"corp", "partner", ""}
    assert "<h3>Corp SSO</h3>" in charts["corp"] and "<h3>Partner ID</h3>" in charts["partner"]
    assert "<h3>Other providers</h3>" in charts[""]

    def heights(chart: str, kind: str) -> list[float]:
        return [float(h) for h in re.findall(rf'class="bar-{kind}" [^>]*height="([\d.]+)"', chart)]

    # One scale: corp's two refreshes are the tallest bar; partner's one failure and the pruned one half of it.
    assert max(heights(charts["corp"], "refresh")) == 2 * max(heights(charts["partner"], "refresh_failed")) > 0
    assert max(heights(charts["partner"], "refresh")) == 0 and max(heights(charts[""], "refresh")) > 0
    assert all(len(heights(chart, "refresh")) == 24 for chart in charts.values())
    assert 'class="refreshes">2</strong>' in charts["corp"] and 'class="active-sessions">1</strong>' in charts["corp"]
    french = admin_client.get(reverse(CHANGELIST), **FRENCH).content.decode()
    assert "par heure chez Corp SSO" in french and "Autres fournisseurs" in french


def test_admin_activity_chart_with_one_provider_is_one_series(one, admin_client):
    record = signed_in(Client(), get_user_model().objects.create_user("nina"), "default", "https://id.example")
    OAuthEvent.objects.create(kind=OAuthEvent.Kind.REFRESH, session=record)
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "oauth-provider-activity" not in html and html.count('aria-labelledby="oauth-chart') == 1
    assert len(re.findall(r'class="bar-refresh" ', html)) == 24


# --- the header in a real browser -------------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium")
@pytest.mark.parametrize("language", ["fr-ca", "en"])
@pytest.mark.parametrize("width", [1100, 1024])
def test_header_fits_on_one_line(one, client, monkeypatch, language, width):
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    client.force_login(get_user_model().objects.create_user("olga.with-a-long-name@example.com"))
    html = client.get("/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    assert 'lang="' + language + '"' in html
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": 400})
            page.set_content(html)
            boxes = page.eval_on_selector_all(
                "header .bar > *:not(:empty), header .bar button",
                "els => els.map(e => { const r = e.getBoundingClientRect();"
                " return [e.textContent.trim().slice(0, 20), r.top, r.bottom]; })",
            )
        finally:
            browser.close()
    # Every item of the bar (brand, links, language menu, sign-out button) shares one line…
    tops = [top for _, top, _ in boxes]
    bottoms = [bottom for _, _, bottom in boxes]
    assert max(tops) < min(bottoms), boxes
    # …and the sign-out button's text is on one line too (no taller than one line of text plus its padding).
    button = next(b for b in boxes if b[0] in ("Sign out", "Se déconnecter"))
    assert button[2] - button[1] < 48, boxes
