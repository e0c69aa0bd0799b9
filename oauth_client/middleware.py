"""Keeps a signed-in session's tokens fresh, transparently, inside the request.

Place after AuthenticationMiddleware and MessageMiddleware. A request whose tokens are fresh costs one indexed
read and no network call; a stale one refreshes under the record's lock (see store.refresh) before the view runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _

from oauth_client import responses, store
from oauth_client.exceptions import ReauthenticationRequired, TokenRefreshUnavailable

logger = logging.getLogger("oauth_client.middleware")


class OAuthSessionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.oauth_request_started = timezone.now()  # type: ignore[attr-defined]
        response = self.process(request)
        return response if response is not None else self.get_response(request)

    def process(self, request: HttpRequest) -> HttpResponse | None:
        # Sessions without our key (anonymous, or staff signed in with a password) are not ours to manage.
        if store.SESSION_KEY not in request.session:
            return None
        record = store.load(request)  # loads request.user too (one query for both)
        if not request.user.is_authenticated:
            request.session.pop(store.SESSION_KEY, None)
            return None
        if record is None:
            # Ended elsewhere: by an admin, another of the user's sessions, or back-channel logout.
            logout(request)
            messages.info(request, _("Your session was ended. Please sign in again."), fail_silently=True)
            return None
        # First: the session key may have just been cycled (a SECRET_KEY_FALLBACKS hash), and the record must
        # follow it before anything can answer early, or prune would take the record's session for gone.
        store.touch(request, record)
        try:
            store.ensure_fresh(request)
        except ReauthenticationRequired:
            logout(request)
            return responses.reauthentication_required(request)
        except TokenRefreshUnavailable:
            return responses.provider_unavailable(request)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A view that lets `ReauthenticationRequired` or `TokenRefreshUnavailable` escape (from get_tokens,
        get_access_token or an api_session call) gets the same answer as a failed refresh here, not a 500."""
        if isinstance(exception, ReauthenticationRequired):
            if exception.reason == "not_signed_in":
                # No provider session (anonymous, or staff signed in with a password): sign in, keep the session.
                return responses.sign_in(request)
            logout(request)
            return responses.reauthentication_required(request)
        if isinstance(exception, TokenRefreshUnavailable):
            return responses.provider_unavailable(request)
        return None
