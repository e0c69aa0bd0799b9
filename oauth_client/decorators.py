"""Request-time entry points for views: sign-in through the provider, and refresh before sensitive work.

They raise `ReauthenticationRequired` or `TokenRefreshUnavailable`; `OAuthSessionMiddleware.process_exception`
turns those into the sign-in redirect, the 401 JSON or the 503 page.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar, overload

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from oauth_client.exceptions import ReauthenticationRequired
from oauth_client.store import SESSION_KEY, token_store

View = TypeVar("View", bound=Callable[..., HttpResponse])


def signed_in(request: HttpRequest) -> bool:
    """True when the user signed in through the provider (the middleware has checked the session's record)."""
    return bool(request.user.is_authenticated and SESSION_KEY in request.session)


def require_sign_in(request: HttpRequest) -> None:
    """Raise `ReauthenticationRequired` unless the user signed in through the provider."""
    if not signed_in(request):
        raise ReauthenticationRequired(ReauthenticationRequired.NOT_SIGNED_IN)


def oauth_login_required(view: View) -> View:
    """Like `login_required`, but the session must be an OIDC session with tokens (sends others to sign in)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        require_sign_in(request)
        return view(request, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def refresh_before(request: HttpRequest, max_age: int | None = None) -> None:
    """Refresh this request's tokens now (or only if the last refresh is older than `max_age` seconds).

    Raises `ReauthenticationRequired` (not signed in, or the session ended) or `TokenRefreshUnavailable` (the
    provider cannot be reached: sensitive operations fail closed)."""
    require_sign_in(request)
    started = getattr(request, "oauth_request_started", None) or timezone.now()
    since = timezone.now() - timedelta(seconds=max_age) if max_age is not None else started
    token_store().ensure_fresh(request, force_since=since)


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
            refresh_before(request, max_age=max_age)
            return func(request, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator(view) if view is not None else decorator
