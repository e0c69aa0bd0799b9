"""Request-time entry points for views: sign-in through the provider, and refresh before sensitive work.

They raise `ReauthenticationRequired` or `TokenRefreshUnavailable`; `OAuthSessionMiddleware.process_exception`
turns those into the sign-in redirect, the 401 JSON or the 503 page.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from inspect import iscoroutinefunction
from typing import Any, TypeVar, overload

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from oauth_client.exceptions import ReauthenticationRequired
from oauth_client.store import SESSION_KEY, token_store

View = TypeVar("View", bound=Callable[..., Any])  # sync or async views


def signed_in(request: HttpRequest) -> bool:
    """True when the user signed in through the provider: the session holds a token record (the middleware signs
    out a session whose record it finds ended; a view that reads tokens finds out at once)."""
    return bool(request.user.is_authenticated and SESSION_KEY in request.session)


def require_sign_in(request: HttpRequest) -> None:
    """Raise `ReauthenticationRequired` unless the user signed in through the provider."""
    if not signed_in(request):
        raise ReauthenticationRequired(ReauthenticationRequired.NOT_SIGNED_IN)


async def asigned_in(request: HttpRequest) -> bool:
    """`signed_in` for async code."""
    user = await request.auser()
    return bool(user.is_authenticated and await request.session.ahas_key(SESSION_KEY))


async def arequire_sign_in(request: HttpRequest) -> None:
    """`require_sign_in` for async code."""
    if not await asigned_in(request):
        raise ReauthenticationRequired(ReauthenticationRequired.NOT_SIGNED_IN)


def oauth_login_required(view: View) -> View:
    """Like `login_required`, but the session must be an OIDC session with tokens (sends others to sign in).
    Works on `async def` views too."""
    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            await arequire_sign_in(request)
            return await view(request, *args, **kwargs)  # type: ignore[no-any-return]

        return async_wrapper  # type: ignore[return-value]

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


async def arefresh_before(request: HttpRequest, max_age: int | None = None) -> None:
    """`refresh_before` for async code (the refresh itself runs in a worker thread, off the event loop)."""
    await arequire_sign_in(request)
    started = getattr(request, "oauth_request_started", None) or timezone.now()
    since = timezone.now() - timedelta(seconds=max_age) if max_age is not None else started
    await token_store().aensure_fresh(request, force_since=since)


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
        if iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                await arefresh_before(request, max_age=max_age)
                return await func(request, *args, **kwargs)  # type: ignore[no-any-return]

            async_wrapper.oauth_refresh_tokens = True  # type: ignore[attr-defined]
            async_wrapper.oauth_refresh_max_age = max_age  # type: ignore[attr-defined]
            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            # OAuthSessionMiddleware.process_view has normally refreshed already (outside ATOMIC_REQUESTS): then
            # this finds the tokens refreshed for this request and does nothing.
            refresh_before(request, max_age=max_age)
            return func(request, *args, **kwargs)

        wrapper.oauth_refresh_tokens = True  # type: ignore[attr-defined]
        wrapper.oauth_refresh_max_age = max_age  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorator(view) if view is not None else decorator


def sensitive_refresh(view_func: Callable[..., Any]) -> tuple[bool, int | None]:
    """Whether the view asks for a refresh before it runs (`@refresh_tokens` or `RefreshTokensMixin`), and its
    max_age."""
    if getattr(view_func, "oauth_refresh_tokens", False):
        return True, getattr(view_func, "oauth_refresh_max_age", None)
    view_class = getattr(view_func, "view_class", None)
    if view_class is not None:
        from oauth_client.mixins import RefreshTokensMixin

        if issubclass(view_class, RefreshTokensMixin):
            initkwargs = getattr(view_func, "view_initkwargs", {}) or {}
            return True, initkwargs.get("refresh_max_age", view_class.refresh_max_age)
    return False, None
