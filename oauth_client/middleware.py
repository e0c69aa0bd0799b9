"""Keeps a signed-in session's tokens fresh, transparently, inside the request; and the one place where the
outcomes the store, decorators, mixins and API raise become responses.

Place after AuthenticationMiddleware and MessageMiddleware. While the session's hint says the tokens are fresh, a
request costs no OAuth query and no network call; once they fall due, the record is read and refreshed under its
lock (see `TokenStore.refresh`) before the view runs.
"""

from __future__ import annotations

from collections.abc import Callable
from inspect import iscoroutinefunction, markcoroutinefunction
from typing import Any

from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _

from oauth_client import responses
from oauth_client.decorators import arefresh_before, refresh_before, sensitive_refresh
from oauth_client.exceptions import ReauthenticationRequired, TokenRefreshUnavailable
from oauth_client.store import SESSION_KEY, in_worker_thread, token_store


class OAuthSessionMiddleware:
    # Both modes (Django's middleware protocol): under ASGI a request with fresh tokens makes no blocking call on the
    # event loop; the locked refresh runs in a worker thread with its own connection (TokenStore.aensure_fresh).
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
            # Django calls an async process_view directly: no thread switch for the views that want no refresh.
            self.process_view = self.aprocess_view  # type: ignore[method-assign, assignment]

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        request.oauth_request_started = timezone.now()  # type: ignore[attr-defined]
        try:
            self.keep_fresh(request)
        except (ReauthenticationRequired, TokenRefreshUnavailable) as exc:
            response = self.answer(request, exc)
        else:
            response = self.get_response(request)
        token_store().follow_session_key(request)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        request.oauth_request_started = timezone.now()  # type: ignore[attr-defined]
        try:
            await self.akeep_fresh(request)
        except (ReauthenticationRequired, TokenRefreshUnavailable) as exc:
            response = await in_worker_thread(self.answer, request, exc)
        else:
            response = await self.get_response(request)
        await token_store().afollow_session_key(request)
        return response

    async def akeep_fresh(self, request: HttpRequest) -> None:
        if not await request.session.ahas_key(SESSION_KEY):
            return
        store = token_store()
        if store.hint_is_fresh(request):  # the session is loaded by now: no I/O
            await store.atouch(request)
            return
        # Due (or a session without a hint yet): the sync path, with its row lock, off the event loop.
        await in_worker_thread(self.keep_fresh, request)

    def keep_fresh(self, request: HttpRequest) -> None:
        # Sessions without our key (anonymous, or staff signed in with a password) are not ours to manage.
        if SESSION_KEY not in request.session:
            return
        store = token_store()
        if store.hint_is_fresh(request):
            store.touch(request)
            return
        if not request.user.is_authenticated:
            request.session.pop(SESSION_KEY, None)
            return
        try:
            store.ensure_fresh(request)
        except ReauthenticationRequired as exc:
            if exc.reason != ReauthenticationRequired.SESSION_ENDED:
                raise
            # Ended elsewhere (an admin, another of the user's sessions, back-channel logout) while this browser's
            # session lived on: sign out here too, and let this request go on as anonymous.
            logout(request)
            messages.info(request, _("Your session was ended. Please sign in again."), fail_silently=True)
            return
        store.touch(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        """The refresh a sensitive view asks for (`@refresh_tokens`, `RefreshTokensMixin`) is done here, before the
        view runs and outside the transaction ATOMIC_REQUESTS wraps it in, so that view's rollback cannot undo it.
        (The decorator and the mixin then find the tokens refreshed for this request and do nothing more.)"""
        wanted, max_age = sensitive_refresh(view_func)
        if not wanted:
            return None
        try:
            refresh_before(request, max_age=max_age)
        except (ReauthenticationRequired, TokenRefreshUnavailable) as exc:
            return self.answer(request, exc)
        return None

    async def aprocess_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        wanted, max_age = sensitive_refresh(view_func)
        if not wanted:
            return None
        try:
            await arefresh_before(request, max_age=max_age)
        except (ReauthenticationRequired, TokenRefreshUnavailable) as exc:
            return await in_worker_thread(self.answer, request, exc)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A view (or a decorator, mixin or API call inside it) that raises `ReauthenticationRequired` or
        `TokenRefreshUnavailable` gets the same answer as a failed refresh here, not a 500."""
        if isinstance(exception, ReauthenticationRequired | TokenRefreshUnavailable):
            return self.answer(request, exception)
        return None

    def answer(self, request: HttpRequest, outcome: ReauthenticationRequired | TokenRefreshUnavailable) -> HttpResponse:
        """The response for a session outcome: sign in, sign in again (401 JSON for scripts), or 503."""
        if isinstance(outcome, TokenRefreshUnavailable):
            return responses.provider_unavailable(request, retry_after=outcome.retry_after)
        if not outcome.signed_in:
            # No provider session (anonymous, or staff signed in with a password): sign in, keep the session.
            return responses.sign_in(request)
        logout(request)
        return responses.reauthentication_required(request)
