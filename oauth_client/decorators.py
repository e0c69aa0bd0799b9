"""Request-time entry points for views: sign-in through the provider, and refresh before sensitive work."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar, overload

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from oauth_client import responses, store
from oauth_client.exceptions import ReauthenticationRequired, TokenRefreshUnavailable

View = TypeVar("View", bound=Callable[..., HttpResponse])


def oauth_login_required(view: View) -> View:
    """Like `login_required`, but the session must be an OIDC session with tokens (sends others to sign in)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not signed_in(request):
            return responses.sign_in(request)
        return view(request, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def signed_in(request: HttpRequest) -> bool:
    """True when the user signed in through the provider and the session still has its tokens."""
    return bool(request.user.is_authenticated and store.load(request) is not None)


def refresh_before(request: HttpRequest, max_age: int | None = None) -> HttpResponse | None:
    """Refresh this request's tokens now (or if the last refresh is older than `max_age` seconds).

    Returns None when the view may go on, or the response to send instead: sign-in for an ended session,
    503 when the provider cannot be reached (sensitive operations fail closed).
    """
    if not signed_in(request):
        return responses.sign_in(request)
    started = getattr(request, "oauth_request_started", None) or timezone.now()
    since = timezone.now() - timedelta(seconds=max_age) if max_age is not None else started
    try:
        store.ensure_fresh(request, force_since=since)
    except ReauthenticationRequired:
        logout(request)
        return responses.reauthentication_required(request)
    except TokenRefreshUnavailable:
        return responses.provider_unavailable(request)
    return None


@overload
def refresh_tokens(view: View, *, max_age: int | None = None) -> View: ...
@overload
def refresh_tokens(view: None = None, *, max_age: int | None = None) -> Callable[[View], View]: ...
def refresh_tokens(view: View | None = None, *, max_age: int | None = None) -> View | Callable[[View], View]:
    """Decorate a sensitive view: the provider re-checks the grant (refresh) before the view runs.

    `@refresh_tokens` always refreshes; `@refresh_tokens(max_age=300)` refreshes only if the last refresh
    is older than five minutes. Implies `oauth_login_required`.
    """

    def decorator(func: View) -> View:
        @functools.wraps(func)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            response = refresh_before(request, max_age=max_age)
            return response if response is not None else func(request, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator(view) if view is not None else decorator
