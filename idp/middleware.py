"""The provider's pages in the language the relying party asks for (OIDC Core 3.1.2.1 `ui_locales`)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.middleware.locale import LocaleMiddleware
from django.utils import translation

MAX_UI_LOCALES = 200  # characters: a few tags; anything longer is not a preference list
SESSION_KEY = "_idp_ui_locales"


def language_from_ui_locales(value: str) -> str | None:
    """The first supported language of a space-separated, preference-ordered list of BCP 47 tags ("fr-CA en")."""
    for tag in value[:MAX_UI_LOCALES].split():
        try:
            return translation.get_supported_language_variant(tag.lower())
        except LookupError:
            continue
    return None


def _ui_locales(request: HttpRequest) -> str:
    if "ui_locales" in request.GET:
        return request.GET["ui_locales"]
    # RP-initiated logout may arrive as a form POST; only read forms, never another body type.
    if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
        return request.POST.get("ui_locales", "")
    return ""


class UiLocalesMiddleware(LocaleMiddleware):
    """LocaleMiddleware that also honours `ui_locales`, and remembers it in the provider's language cookie
    so that the login and consent pages that follow (other URLs, without the parameter) keep the language.

    A hint is applied once: the same hint again later in the flow (the authorization URL is revisited after
    the login) does not undo a language the person picked since with the provider's own switcher; a new hint
    (the person changed language on the site) does. Without a hint: cookie, then Accept-Language.
    """

    def process_request(self, request: HttpRequest) -> None:
        language = language_from_ui_locales(_ui_locales(request))
        cookie = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME)
        if language is None or (cookie and request.session.get(SESSION_KEY) == language):
            super().process_request(request)
            return
        request.session[SESSION_KEY] = language
        translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()
        request.ui_language = language  # type: ignore[attr-defined]

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        response = super().process_response(request, response)
        language = getattr(request, "ui_language", None)
        if language and request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME) != language:
            response.set_cookie(
                settings.LANGUAGE_COOKIE_NAME,
                language,
                max_age=settings.LANGUAGE_COOKIE_AGE,
                path=settings.LANGUAGE_COOKIE_PATH,
                domain=settings.LANGUAGE_COOKIE_DOMAIN,
                secure=settings.LANGUAGE_COOKIE_SECURE,
                httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
                samesite=settings.LANGUAGE_COOKIE_SAMESITE,  # type: ignore[arg-type]  # "Lax", a plain str setting
            )
        return response
