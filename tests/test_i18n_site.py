"""English and Canadian French, end to end: the site and the real embedded provider over HTTP."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest
from babel.messages.pofile import read_po
from django.contrib.auth.models import AnonymousUser
from django.template.loader import render_to_string
from django.utils import formats, timezone, translation

from oauth_client.models import OAuthSession
from scripts import i18n
from tests.browser import Browser
from tests.conftest import client_settings
from tests.faults import closed_port_url
from tests.helpers import active_record, expire_tokens, revoke_at_provider, use_token_endpoint

pytestmark = pytest.mark.django_db(transaction=True)

FRENCH = "fr-CA"
SITE_CATALOGUES = ["locale", "oauth_client/locale"]
PROVIDER_CATALOGUES = ["idp/locale"]


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("script", "style") and self._skip > 0

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return re.sub(r"\s+", " ", " ".join(parser.parts))


def english_sentences(catalogue_dirs: list[str]) -> set[str]:
    """Every English phrase (two words or more) of these catalogues whose French differs."""
    phrases = set()
    for catalogue_dir in catalogue_dirs:
        with i18n.po_path(catalogue_dir, "fr_CA").open("rb") as f:
            for message in read_po(f):
                if not message.id or message.string == message.id:
                    continue
                for chunk in re.split(r"%\(\w+\)s|<[^>]+>", str(message.id)):
                    if len(chunk.split()) >= 2:
                        phrases.add(chunk.strip())
    return phrases


def assert_french(resp, catalogue_dirs: list[str], *expected: str) -> str:
    """The page is in French: `lang`, the expected French phrases, and no English phrase of the catalogues."""
    assert re.search(r'<html lang="fr-ca"', resp.text), resp.url
    text = visible_text(resp.text)
    for phrase in expected:
        assert phrase in text, f"{phrase!r} not on {resp.url}:\n{text}"
    left = sorted(p for p in english_sentences(catalogue_dirs) if p in text)
    assert not left, f"English left on {resp.url}: {left}\n{text}"
    return text


def authorize_params(resp) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["Location"]).query).items()}


# -- the whole sign-in flow in French ------------------------------------------------------------


def test_sign_in_flow_in_french(site):
    browser = Browser(language=FRENCH)

    home = browser.get(site.url + "/")
    assert home.headers["Content-Language"] == "fr-ca"
    assert_french(home, SITE_CATALOGUES, "Bienvenue", "Se connecter", "jetons d’actualisation")

    # The site asks the provider for French pages (OIDC ui_locales)…
    start = browser.get(site.url + "/oauth/login/", allow_redirects=False)
    assert authorize_params(start)["ui_locales"] == "fr-CA"
    # …and the provider's login page, consent page and scope descriptions are in French.
    login = browser.get(start.headers["Location"])
    assert urlsplit(login.url).path == "/accounts/login/"
    assert_french(login, PROVIDER_CATALOGUES, "Nom d’utilisateur", "Mot de passe", "Se connecter")
    assert browser.cookies.get("idp_language") == "fr-ca"
    consent = browser.submit(
        login,
        browser.find_form(login, with_field="password"),
        {"username": site.provider.username, "password": site.provider.password},
    )
    assert_french(
        consent,
        PROVIDER_CATALOGUES,
        "Autoriser Demo site à accéder à votre compte?",
        "Voir votre adresse courriel",
        "Vous garder connecté lorsque vous n’utilisez pas l’application",
        "Autoriser",
        "Refuser",
    )
    profile = browser.submit(consent, browser.find_form(consent, with_field="allow"), button="allow")
    assert profile.url == site.url + "/account/"

    # Profile: French text, French dates (30 novembre 2026, 14 h 05) and durations (dans 2 minutes).
    record = active_record()
    with translation.override("fr-ca"):
        expires = formats.date_format(timezone.localtime(record.access_expires_at), "DATETIME_FORMAT")
    expires = re.sub(r"\s+", " ", expires)  # as visible_text() shows it (no-break spaces included)
    text = assert_french(profile, SITE_CATALOGUES, "Profil de", "Expiration du jeton d’accès", "Se déconnecter")
    assert expires in text and re.search(r"^\d{1,2} [a-zéû]+ \d{4}, \d\d h \d\d$", expires), (expires, text)
    assert re.search(r"\(dans \d+ minutes?\)", text), text

    sensitive = browser.get(site.url + "/account/sensitive/")
    assert sensitive.status_code == 200
    assert_french(sensitive, SITE_CATALOGUES, "Modifier votre nom affiché", "Ceci est une action sensible", "il y a")
    saved = browser.submit(sensitive, browser.find_form(sensitive, with_field="display_name"), {"display_name": "Zoé"})
    assert_french(saved, SITE_CATALOGUES, "Votre nom affiché a été modifié.")

    # Sign-out: the hand-off page is French and asks the provider for French too.
    end_session = browser.submit(saved, browser.find_form(saved, action="/oauth/logout/"))
    assert_french(end_session, SITE_CATALOGUES, "Vous êtes déconnecté de ce site", "Continuer")
    form = browser.find_form(end_session, with_field="id_token_hint")
    assert form.fields["ui_locales"] == "fr-CA"
    back_home = browser.submit(end_session, form)
    assert back_home.url == site.url + "/"
    assert_french(back_home, SITE_CATALOGUES, "Bienvenue")


def test_english_flow_stays_english(site):
    browser = Browser(language="en-US,en;q=0.8")
    start = browser.get(site.url + "/oauth/login/", allow_redirects=False)
    assert authorize_params(start)["ui_locales"] == "en"
    login = browser.get(start.headers["Location"])
    assert '<html lang="en"' in login.text and "Username" in login.text and "Mot de passe" not in login.text
    resp = browser.sign_in(site.url, site.provider.username, site.provider.password)
    text = visible_text(resp.text)
    assert "Access token expires" in text and re.search(r"\(in \d+ minutes?\)", text)
    assert "Expiration" not in text


def test_plain_french_and_france_browsers_get_canadian_french(site):
    for accept in ("fr", "fr-FR,fr;q=0.9,en;q=0.5", "de-DE,fr-CA;q=0.8"):
        resp = Browser(language=accept).get(site.url + "/")
        assert '<html lang="fr-ca"' in resp.text and "Bienvenue" in resp.text, accept
    resp = Browser(language="de-DE").get(site.url + "/")
    assert '<html lang="en"' in resp.text and "Welcome" in resp.text


# -- the provider honours ui_locales --------------------------------------------------------------


def provider_authorize(site, browser: Browser, ui_locales: str | None):
    start = browser.get(site.url + "/oauth/login/", allow_redirects=False)
    params = authorize_params(start)
    if ui_locales is None:
        params.pop("ui_locales")
    else:
        params["ui_locales"] = ui_locales
    return browser.get(site.provider.issuer + "/authorize/", params=params)


@pytest.mark.parametrize(
    "ui_locales, accept, french",
    [
        ("fr-CA", "en", True),  # the relying party's wish wins over the browser's
        ("de fr-CA en", "en", True),  # first supported tag in preference order
        ("fr", "en", True),
        ("en", "fr-CA", False),
        ("xx-YY", "fr-CA", True),  # nothing supported: Accept-Language decides
        ("x" * 500, "en", False),
        (None, "fr-CA", True),
    ],
)
def test_provider_pages_follow_ui_locales(site, ui_locales, accept, french):
    login = provider_authorize(site, Browser(language=accept), ui_locales)
    assert urlsplit(login.url).path == "/accounts/login/" and login.status_code == 200
    assert ("Mot de passe" in login.text) is french
    assert ('<html lang="fr-ca"' in login.text) is french


def test_provider_remembers_the_language_for_the_pages_that_follow(site):
    browser = Browser(language="en")
    login = provider_authorize(site, browser, "fr-CA")
    assert "Mot de passe" in login.text
    home = browser.get(site.provider.base_url + "/")  # no ui_locales here: the cookie keeps French
    assert "Fournisseur de développement intégré" in home.text
    assert browser.cookies.get("idp_language") == "fr-ca"


def test_provider_switcher_choice_wins_over_the_same_hint(site):
    browser = Browser(language="fr-CA")
    login = provider_authorize(site, browser, "fr-CA")
    assert "Mot de passe" in login.text
    english = browser.submit(login, browser.find_form(login, action="/i18n/setlang/"), {"language": "en"})
    assert urlsplit(english.url).path == "/accounts/login/" and "Password" in english.text
    consent = browser.submit(
        english,
        browser.find_form(english, with_field="password"),
        {"username": site.provider.username, "password": site.provider.password},
    )
    # Back at the authorization URL, which still says ui_locales=fr-CA: the person's own choice stands.
    assert "ui_locales=fr-CA" in consent.url
    assert "Allow Demo site to access your account?" in consent.text
    assert browser.cookies.get("idp_language") == "en"
    # A new hint from the relying party (the person changed the site's language since) applies again.
    assert "Allow Demo site" in provider_authorize(site, browser, "en").text
    assert "Autoriser Demo site" in provider_authorize(site, browser, "fr-CA").text


def test_provider_switcher_requires_csrf(site):
    resp = Browser().post(site.provider.base_url + "/i18n/setlang/", data={"language": "fr-ca", "next": "/"})
    assert resp.status_code == 403


# -- the site's language switcher -----------------------------------------------------------------


def test_switcher_changes_and_remembers_the_language(site):
    browser = Browser(language="en")
    home = browser.get(site.url + "/?tab=2")
    assert "Welcome" in home.text
    switch = browser.find_form(home, action="/i18n/setlang/")
    assert switch.fields["next"] == "/?tab=2"
    assert '<option value="fr-ca" lang="fr-ca">Français</option>' in home.text
    french = browser.submit(home, switch, {"language": "fr-ca"})
    assert french.url == site.url + "/?tab=2"
    assert_french(french, SITE_CATALOGUES, "Bienvenue")
    assert '<option value="fr-ca" lang="fr-ca" selected>Français</option>' in french.text
    # Remembered beyond the browser session, over the browser's own Accept-Language.
    cookie = next(c for c in browser.cookies if c.name == "django_language")
    assert cookie.value == "fr-ca" and cookie.expires is not None
    assert "Bienvenue" in browser.get(site.url + "/").text
    # The choice reaches the provider: its pages follow the site's language.
    start = browser.get(site.url + "/oauth/login/", allow_redirects=False)
    assert authorize_params(start)["ui_locales"] == "fr-CA"
    assert "Mot de passe" in browser.get(start.headers["Location"]).text
    # And back to English.
    home = browser.get(site.url + "/")
    english = browser.submit(home, browser.find_form(home, action="/i18n/setlang/"), {"language": "en"})
    assert "Welcome" in english.text and '<html lang="en"' in english.text


def test_switcher_without_csrf_token_is_refused(site):
    browser = Browser(language="en")
    browser.get(site.url + "/")
    resp = browser.post(site.url + "/i18n/setlang/", data={"language": "fr-ca", "next": "/"})
    assert resp.status_code == 403
    assert "django_language" not in browser.cookies
    assert "Welcome" in browser.get(site.url + "/").text


def test_switcher_ignores_unknown_languages_and_foreign_next(site):
    browser = Browser(language="en")
    home = browser.get(site.url + "/")
    form = browser.find_form(home, action="/i18n/setlang/")
    resp = browser.submit(home, form, {"language": "fr-ca", "next": "https://evil.example/"}, allow_redirects=False)
    assert resp.status_code == 302 and not resp.headers["Location"].startswith("https://evil.example")
    resp = browser.submit(home, form, {"language": "klingon", "next": "/"})
    assert resp.status_code == 200


# -- error pages in both languages ----------------------------------------------------------------


def expect(language: str, english: str, french: str) -> str:
    return french if language == FRENCH else english


@pytest.mark.parametrize("language", ["en", FRENCH])
def test_provider_refusal_page(site, language):
    browser = Browser(language=language)
    state = authorize_params(browser.get(site.url + "/oauth/login/", allow_redirects=False))["state"]
    # The error response as a conformant provider sends it: with its issuer (RFC 9207 §2.4). (django-oauth-toolkit
    # omits it on errors: tests/test_callback_rejections.py shows how such an answer is refused.)
    params = {"error": "access_denied", "state": state, "iss": site.provider.issuer}
    resp = browser.get(site.url + "/oauth/callback/", params=params)
    assert resp.status_code == 400
    text = visible_text(resp.text)
    assert expect(language, "Sign-in failed", "Échec de la connexion") in text
    assert (
        expect(
            language,
            "Sign-in was cancelled or access was denied at the identity provider.",
            "La connexion a été annulée ou l’accès a été refusé chez le fournisseur d’identité.",
        )
        in text
    )
    assert expect(language, "Sign in again", "Se reconnecter") in text
    assert "access_denied" in text
    if language == FRENCH:
        assert_french(resp, SITE_CATALOGUES)


@pytest.mark.parametrize("language", ["en", FRENCH])
def test_provider_unreachable_pages(site, settings, language):
    settings.OAUTH_CLIENT = client_settings(site.provider, ISSUER="http://127.0.0.1:9/o", HTTP_RETRIES=0)
    browser = Browser(language=language)
    resp = browser.get(site.url + "/oauth/login/")
    assert resp.status_code == 503
    assert expect(language, "Sign-in is unavailable", "La connexion est indisponible") in visible_text(resp.text)
    if language == FRENCH:
        assert_french(resp, SITE_CATALOGUES)
    data = browser.get(site.url + "/oauth/login/", headers={"Accept": "application/json"}).json()
    assert data["error"] == "provider_unavailable"
    assert data["message"] == expect(
        language,
        "The identity provider cannot be reached right now. Please try again in a moment.",
        "Le fournisseur d’identité est injoignable pour le moment. Veuillez réessayer dans un moment.",
    )


@pytest.mark.parametrize("language", ["en", FRENCH])
def test_provider_unreachable_during_a_sensitive_action(site, settings, language):
    settings.OAUTH_CLIENT = client_settings(site.provider, HTTP_RETRIES=0)
    browser = site.signed_in_browser(language=language)
    use_token_endpoint(closed_port_url())
    resp = browser.get(site.url + "/account/sensitive/")
    assert resp.status_code == 503
    text = visible_text(resp.text)
    assert expect(language, "Please try again shortly", "Veuillez réessayer sous peu") in text
    assert expect(language, "You are still signed in", "Vous êtes toujours connecté") in text
    if language == FRENCH:
        assert_french(resp, SITE_CATALOGUES)


@pytest.mark.parametrize("language", ["en", FRENCH])
def test_session_expired_message(site, language):
    browser = site.signed_in_browser(language=language)
    revoke_at_provider(site.provider, active_record().refresh_token)
    expire_tokens()
    resp = browser.get(site.url + "/account/", allow_redirects=False)
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/oauth/login/")
    assert OAuthSession.objects.get().ended_reason == OAuthSession.EndReason.REFRESH_REJECTED
    home = browser.get(site.url + "/")
    assert expect(
        language,
        "Your session has expired. Please sign in again.",
        "Votre session a expiré. Veuillez vous reconnecter.",
    ) in visible_text(home.text)
    if language == FRENCH:
        assert_french(home, SITE_CATALOGUES)


@pytest.mark.parametrize("language", ["en", FRENCH])
def test_not_found_page(site, language):
    resp = Browser(language=language).get(site.url + "/no/such/page/")
    assert resp.status_code == 404
    assert expect(language, "Page not found", "Page introuvable") in visible_text(resp.text)
    if language == FRENCH:
        assert_french(resp, SITE_CATALOGUES)


@pytest.mark.parametrize(
    "template, english, french",
    [
        ("500.html", "Something went wrong on our side", "Un problème est survenu de notre côté"),
        ("400.html", "Bad request", "Requête invalide"),
        ("403.html", "Access denied", "Accès refusé"),
    ],
)
def test_other_error_pages_in_both_languages(rf, template, english, french):
    request = rf.get("/")
    request.user = AnonymousUser()
    for language, phrase in (("en", english), ("fr-ca", french)):
        with translation.override(language):
            html = render_to_string(template, request=request if template == "403.html" else None)
        assert phrase in html and f'<html lang="{language}"' in html
