"""The public API for views and services: tokens that are always fresh, and a `requests` session that
calls APIs with them (refreshing once, through the same locked path, when an API says the token is invalid)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

import httpx
import requests
from django.http import HttpRequest
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from oauth_client import discovery, providers
from oauth_client.conf import oauth_settings
from oauth_client.exceptions import ReauthenticationRequired
from oauth_client.store import TokenSet, in_worker_thread, token_store

_SENT_AT = "_oauth_sent_at"
_RETRIED = "_oauth_retried"


def get_tokens(request: HttpRequest) -> TokenSet:
    """This request's tokens, refreshed first if they are due.

    Raises `ReauthenticationRequired` (not signed in through the provider, or the session ended) or
    `TokenRefreshUnavailable` (a refresh was needed and the provider cannot be reached, past the grace period).
    """
    if not request.user.is_authenticated:
        raise ReauthenticationRequired(ReauthenticationRequired.NOT_SIGNED_IN)
    return TokenSet.from_record(token_store().ensure_fresh(request))


def get_access_token(request: HttpRequest) -> str:
    """A valid access token for this request's user (see `get_tokens` for the exceptions)."""
    return get_tokens(request).access_token


def provider_metadata(provider: str | None = None) -> Mapping[str, Any]:
    """A provider's discovery document (read-only, cached), e.g. `provider_metadata()["userinfo_endpoint"]`;
    `provider` is its name (None: the site's only provider, or the one named "default").

    Raises `LookupError` for an unknown name; `ConfigurationError`, `TransientProviderError` or `InvalidResponse`
    (all `OAuthClientError`) when the document cannot be had.
    """
    return MappingProxyType(discovery.get_metadata(providers.get(provider)))


def session_provider_metadata(request: HttpRequest) -> Mapping[str, Any]:
    """The discovery document of the provider this request's session signed in with (e.g. its userinfo endpoint).

    Raises `ReauthenticationRequired` when the request has no provider session."""
    return MappingProxyType(discovery.get_metadata(providers.for_record(token_store().ensure_fresh(request))))


def _invalid_token(response: requests.Response) -> bool:
    """RFC 6750 §3.1: 401 with a Bearer challenge whose error is invalid_token."""
    challenge = response.headers.get("WWW-Authenticate", "")
    return response.status_code == 401 and challenge.lower().startswith("bearer") and "invalid_token" in challenge


def _replayable(body: Any) -> bool:
    # A generator or file body was consumed by the first attempt and cannot be sent again.
    return body is None or isinstance(body, bytes | str)


class BearerAuth(requests.auth.AuthBase):
    """Adds `Authorization: Bearer <access token>` for the signed-in user of `request`.

    When the API answers 401 with `WWW-Authenticate: Bearer error="invalid_token"` (revoked, or expired earlier
    than announced), it refreshes once through the locked store path and retries the request once. The
    refresh may raise `ReauthenticationRequired` or `TokenRefreshUnavailable`, like `get_access_token`.
    """

    def __init__(self, request: HttpRequest) -> None:
        self.request = request

    @sensitive_variables()
    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        setattr(r, _SENT_AT, timezone.now())
        r.headers["Authorization"] = f"Bearer {get_access_token(self.request)}"
        r.register_hook("response", self._retry_on_invalid_token)
        return r

    @sensitive_variables()
    def _retry_on_invalid_token(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        sent = response.request
        if (
            not _invalid_token(response)
            or getattr(sent, _RETRIED, False)
            # requests drops Authorization on a redirect to another host: never add it back there.
            or not str(sent.headers.get("Authorization", "")).startswith("Bearer ")
            or not _replayable(sent.body)
        ):
            return response
        record = token_store().load(self.request)
        if record is None or not record.has_refresh_token:
            return response  # nothing to refresh with: the caller sees the 401
        # Refresh unless another request already did after this one sent its token; then use that token.
        sent_at: datetime = getattr(sent, _SENT_AT, None) or timezone.now()
        token_store().ensure_fresh(self.request, force_since=sent_at)
        retry = sent.copy()
        retry.headers["Authorization"] = f"Bearer {get_access_token(self.request)}"
        setattr(retry, _RETRIED, True)
        response.content  # noqa: B018 - drain the first response so its connection can be reused
        response.close()
        new = response.connection.send(retry, **kwargs)
        new.history.append(response)
        new.request = retry
        return new


class _TimeoutSession(requests.Session):
    # Every frame below a call (requests, urllib3) holds the Authorization header: hidden on debug pages.
    @sensitive_variables()
    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", tuple(oauth_settings.HTTP_TIMEOUT))
        return super().request(method, url, *args, **kwargs)


def api_session(request: HttpRequest) -> requests.Session:
    """A `requests.Session` for calling APIs as the signed-in user: Bearer auth (`BearerAuth`), JSON accepted,
    and OAUTH_CLIENT['HTTP_TIMEOUT'] as the default timeout. Send it only to APIs that should see the token."""
    s = _TimeoutSession()
    s.auth = BearerAuth(request)
    s.headers["Accept"] = "application/json"
    return s


# --- async (ASGI): the same API for `async def` views ------------------------------------------------------------


async def aget_tokens(request: HttpRequest) -> TokenSet:
    """`get_tokens` for async views: fresh tokens cost Django's async session and ORM reads only; a refresh runs in
    a worker thread with its own connection (the same row lock, one refresh per expiry), never on the event loop."""
    if not (await request.auser()).is_authenticated:
        raise ReauthenticationRequired(ReauthenticationRequired.NOT_SIGNED_IN)
    return TokenSet.from_record(await token_store().aensure_fresh(request))


async def aget_access_token(request: HttpRequest) -> str:
    """`get_access_token` for async views."""
    return (await aget_tokens(request)).access_token


async def asession_provider_metadata(request: HttpRequest) -> Mapping[str, Any]:
    """`session_provider_metadata` for async views (a discovery fetch, when the cache has none, runs in a worker
    thread)."""
    provider = providers.for_record(await token_store().aensure_fresh(request))
    return MappingProxyType(await in_worker_thread(discovery.get_metadata, provider))


def _invalid_token_httpx(response: httpx.Response) -> bool:
    challenge = response.headers.get("WWW-Authenticate", "")
    return response.status_code == 401 and challenge.lower().startswith("bearer") and "invalid_token" in challenge


class AsyncBearerAuth(httpx.Auth):
    """`BearerAuth` for `httpx.AsyncClient`: `Authorization: Bearer <access token>` for the signed-in user of
    `request`; on `401` with `WWW-Authenticate: Bearer error="invalid_token"` it refreshes once (through the locked
    store path, unless another request already refreshed after this one sent its token) and retries once."""

    requires_request_body = True  # the body is kept, so the retry can send it again

    def __init__(self, request: HttpRequest) -> None:
        self.request = request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("AsyncBearerAuth is for httpx.AsyncClient; use api_session() in sync code")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        sent_at = timezone.now()
        request.headers["Authorization"] = f"Bearer {await aget_access_token(self.request)}"
        response = yield request
        # Only for an answer to a request that carried the token: httpx drops Authorization on a redirect to another
        # host, and a 401 from there must not make us refresh (or send a new token anywhere).
        sent_token = str(response.request.headers.get("Authorization", "")).startswith("Bearer ")
        if not _invalid_token_httpx(response) or not sent_token:
            return
        record = await token_store().aload(self.request)
        if record is None or not record.has_refresh_token:
            return  # nothing to refresh with: the caller sees the 401
        await response.aread()
        await token_store().aensure_fresh(self.request, force_since=sent_at)
        request.headers["Authorization"] = f"Bearer {await aget_access_token(self.request)}"
        yield request


def async_api_client(request: HttpRequest) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` for calling APIs as the signed-in user from async views: `AsyncBearerAuth`, JSON
    accepted, OAUTH_CLIENT['HTTP_TIMEOUT'] as the timeout. Use it as `async with async_api_client(request) as c:`."""
    connect, read = oauth_settings.HTTP_TIMEOUT
    return httpx.AsyncClient(
        auth=AsyncBearerAuth(request),
        headers={"Accept": "application/json"},
        timeout=httpx.Timeout(read, connect=connect),
    )
