"""The public API for views and services: tokens that are always fresh, and a `requests` session that
calls APIs with them (refreshing once, through the same locked path, when an API says the token is invalid)."""

from __future__ import annotations

from typing import Any

import requests
from django.http import HttpRequest
from django.utils import timezone

from oauth_client import store
from oauth_client.conf import oauth_settings
from oauth_client.exceptions import ReauthenticationRequired
from oauth_client.store import TokenSet


def get_tokens(request: HttpRequest) -> TokenSet:
    """This request's tokens, refreshed first if they are due.

    Raises `ReauthenticationRequired` (not signed in through the provider, or the session ended) or
    `TokenRefreshUnavailable` (a refresh was needed and the provider cannot be reached, past the grace period).
    """
    if not request.user.is_authenticated:
        raise ReauthenticationRequired("not_signed_in")
    record = store.ensure_fresh(request)
    if record is None:
        raise ReauthenticationRequired("not_signed_in")
    return TokenSet.from_record(record)


def get_access_token(request: HttpRequest) -> str:
    """A valid access token for this request's user (see `get_tokens` for the exceptions)."""
    return get_tokens(request).access_token


def _invalid_token(response: requests.Response) -> bool:
    challenge = response.headers.get("WWW-Authenticate", "")
    return response.status_code == 401 and challenge.lower().startswith("bearer") and "invalid_token" in challenge


class BearerAuth(requests.auth.AuthBase):
    """Adds `Authorization: Bearer <access token>`; on a 401 `invalid_token` refreshes once and retries once."""

    def __init__(self, request: HttpRequest) -> None:
        self.request = request

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {get_access_token(self.request)}"
        r.register_hook("response", self._retry_on_invalid_token)
        return r

    def _retry_on_invalid_token(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if not _invalid_token(response) or getattr(response.request, "_oauth_retried", False):
            return response
        # The API rejected a token we thought valid (revoked, clock skew): refresh now, then retry once.
        store.ensure_fresh(self.request, force_since=timezone.now())
        retry = response.request.copy()
        retry.headers["Authorization"] = f"Bearer {get_access_token(self.request)}"
        retry._oauth_retried = True  # type: ignore[attr-defined]
        response.content  # noqa: B018 - drain the first response so its connection can be reused
        response.close()
        new = response.connection.send(retry, **kwargs)
        new.history.append(response)
        new.request = retry
        return new


class _TimeoutSession(requests.Session):
    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", tuple(oauth_settings.HTTP_TIMEOUT))
        return super().request(method, url, *args, **kwargs)


def api_session(request: HttpRequest) -> requests.Session:
    """A `requests.Session` for calling APIs as the signed-in user, with timeouts by default."""
    s = _TimeoutSession()
    s.auth = BearerAuth(request)
    s.headers["Accept"] = "application/json"
    return s
