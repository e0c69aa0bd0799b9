"""The demo site's pages. They use only oauth_client's public API."""

from __future__ import annotations

import json
from typing import Any

import requests
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from accounts.forms import DisplayNameForm
from oauth_client import (
    OAuthClientError,
    TokenRefreshUnavailable,
    api_session,
    get_tokens,
    oauth_login_required,
    provider_metadata,
    refresh_tokens,
)


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/home.html")


def provider_userinfo(request: HttpRequest) -> tuple[list[tuple[str, Any]] | None, str]:
    """The user's claims from the provider's userinfo endpoint, called through `api_session` (which refreshes
    and retries once if the provider calls the access token invalid). Returns (claims, error message);
    claims is None when the provider has no userinfo endpoint. A refused refresh propagates (sign in again)."""
    unavailable = _("The identity provider cannot be reached right now.")
    try:
        endpoint = provider_metadata().get("userinfo_endpoint")
    except OAuthClientError:
        return [], unavailable
    if not endpoint:
        return None, ""
    try:
        response = api_session(request).get(endpoint)
    except (TokenRefreshUnavailable, requests.RequestException):
        return [], unavailable
    if response.status_code != 200:
        return [], _("The userinfo endpoint answered HTTP %(status)d.") % {"status": response.status_code}
    try:
        data = response.json()
        # Lone surrogates cannot go into a UTF-8 page: the provider's answer is unusable, like non-JSON.
        json.dumps(data, ensure_ascii=False).encode()
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError; RecursionError: absurd nesting
        data = None
    if not isinstance(data, dict):
        return [], _("The userinfo endpoint did not answer with JSON.")
    return sorted(data.items(), key=lambda item: item[0]), ""


@oauth_login_required
def profile(request: HttpRequest) -> HttpResponse:
    tokens = get_tokens(request)
    userinfo, userinfo_error = provider_userinfo(request)
    context = {
        "tokens": tokens,
        "claims": sorted(tokens.claims.items()),
        "userinfo": userinfo,
        "userinfo_error": userinfo_error,
    }
    return render(request, "accounts/profile.html", context)


@refresh_tokens
def sensitive(request: HttpRequest) -> HttpResponse:
    """A sensitive operation: the provider re-checks the grant (a refresh) before both GET and POST."""
    user = request.user
    form = DisplayNameForm(request.POST or None, instance=user)  # type: ignore[misc]
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, _("Your display name was changed."))
        return redirect("accounts:sensitive")
    return render(request, "accounts/sensitive.html", {"form": form, "tokens": get_tokens(request)})
