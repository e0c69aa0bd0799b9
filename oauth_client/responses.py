"""The responses a person (or a script) gets when the session cannot go on: HTML or JSON, never a 500."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from oauth_client.conf import oauth_settings


def wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return request.headers.get("X-Requested-With") == "XMLHttpRequest" or (
        "application/json" in accept and "text/html" not in accept
    )


def login_url(request: HttpRequest, next_url: str | None = None) -> str:
    next_url = request.get_full_path() if next_url is None else next_url
    url = reverse("oauth_client:login")
    return f"{url}?{urlencode({'next': next_url})}" if next_url else url


def sign_in(request: HttpRequest) -> HttpResponse:
    """Not signed in through the provider: go sign in (HTML) or say so (JSON), then come back here."""
    url = login_url(request)
    if wants_json(request):
        return JsonResponse({"error": "login_required", "login_url": url}, status=401)
    return HttpResponseRedirect(url)


def reauthentication_required(request: HttpRequest, message: str | None = None) -> HttpResponse:
    """The tokens are gone (refused, revoked, expired): sign in again, coming back here afterwards."""
    # A non-GET request cannot be replayed after sign-in; come back to the page instead.
    next_url = request.get_full_path() if request.method in ("GET", "HEAD") else request.path
    url = login_url(request, next_url)
    if wants_json(request):
        resp = JsonResponse({"error": "reauthentication_required", "login_url": url}, status=401)
        resp["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return resp
    if message != "":
        messages.warning(request, message or _("Your session has expired. Please sign in again."), fail_silently=True)
    return HttpResponseRedirect(url)


def provider_unavailable(request: HttpRequest, retry_after: int = 30) -> HttpResponse:
    """A refresh was required and the provider cannot be reached: fail closed, keep the session."""
    message = _("The identity provider cannot be reached right now. You are still signed in; please try again shortly.")
    if wants_json(request):
        resp: HttpResponse = JsonResponse({"error": "temporarily_unavailable", "message": message}, status=503)
    else:
        resp = error_response(request, status=503, title=_("Please try again shortly"), message=message)
    resp["Retry-After"] = str(retry_after)
    return resp


def error_response(request: HttpRequest, *, status: int, title: str, message: str, **extra: Any) -> HttpResponse:
    """Render the configurable error view (OAUTH_CLIENT['ERROR_VIEW'])."""
    if wants_json(request):
        return JsonResponse({"error": extra.get("code") or "error", "message": message}, status=status)
    response: HttpResponse = oauth_settings.ERROR_VIEW(request, status=status, title=title, message=message, **extra)
    return response
