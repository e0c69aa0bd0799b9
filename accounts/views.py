"""The demo site's pages. They use only oauth_client's public API."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import requests
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.forms import DisplayNameForm
from oauth_client import (
    OAuthClientError,
    TokenRefreshUnavailable,
    api_session,
    asession_provider_metadata,
    async_api_client,
    get_tokens,
    oauth_login_required,
    refresh_tokens,
    session_provider_metadata,
)


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/home.html")


def provider_userinfo(request: HttpRequest) -> tuple[list[tuple[str, Any]] | None, str]:
    """The user's claims from the provider's userinfo endpoint, called through `api_session` (which refreshes
    and retries once if the provider calls the access token invalid). Returns (claims, error message);
    claims is None when the provider has no userinfo endpoint. A refused refresh propagates (sign in again)."""
    unavailable = _("The identity provider cannot be reached right now.")
    try:
        endpoint = session_provider_metadata(request).get("userinfo_endpoint")
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


# Claims that are instants (seconds since the epoch): shown as dates in the reader's language, not as numbers.
TIME_CLAIMS = frozenset({"exp", "iat", "nbf", "auth_time", "updated_at"})


def claim_moment(name: str, value: Any) -> datetime | None:
    """The instant a time claim stands for, or None (not a time claim, or not a usable number of seconds)."""
    if name not in TIME_CLAIMS or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):  # NaN, infinite, or beyond the years datetime can hold
        return None


def claim_rows(claims: list[tuple[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The rows of a claims table: each claim's name and value, and for time claims the instant (`moment`) and
    whether it is still to come (`future`)."""
    rows = []
    for name, value in claims:
        moment = claim_moment(name, value)
        rows.append({"name": name, "value": value, "moment": moment, "future": moment is not None and moment > now})
    return rows


@oauth_login_required
def profile(request: HttpRequest) -> HttpResponse:
    tokens = get_tokens(request)
    userinfo, userinfo_error = provider_userinfo(request)
    now = timezone.now()
    context = {
        "tokens": tokens,
        "claims": claim_rows(sorted(tokens.claims.items()), now),
        "userinfo": claim_rows(userinfo, now) if userinfo is not None else None,
        "userinfo_error": userinfo_error,
        # Which provider signed this person in: said when the site has several.
        "provider_label": tokens.provider_label if tokens.several_providers else "",
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


@oauth_login_required
async def userinfo_json(request: HttpRequest) -> HttpResponse:
    """An async view: the provider's userinfo for this session, fetched with the async client (which refreshes once
    and retries on a 401 invalid_token). Under ASGI it makes no blocking call on the event loop."""
    endpoint = (await asession_provider_metadata(request)).get("userinfo_endpoint")
    if not endpoint:
        return JsonResponse({"error": "no_userinfo_endpoint"}, status=404)
    try:
        async with async_api_client(request) as client:
            response = await client.get(endpoint)
    except httpx.HTTPError:
        return JsonResponse({"error": "temporarily_unavailable"}, status=503)
    if response.status_code != 200:
        return JsonResponse({"error": "userinfo_failed", "status": response.status_code}, status=502)
    try:
        return JsonResponse(response.json())
    except ValueError:  # e.g. a signed userinfo (application/jwt), which this demo does not ask for
        return JsonResponse({"error": "userinfo_not_json"}, status=502)
