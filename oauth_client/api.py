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

from oauth_client import discovery, dpop, providers
from oauth_client.conf import oauth_settings
from oauth_client.exceptions import ReauthenticationRequired
from oauth_client.models import OAuthSession
from oauth_client.store import TokenSet, in_worker_thread, token_store

_SENT_AT = "_oauth_sent_at"
_RETRIED = "_oauth_retried"
_REPROOF = "_oauth_reproof"  # a same-host redirect of a DPoP request: a new proof before it is sent


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


def _invalid_token(status: int, headers: Any) -> bool:
    """RFC 6750 §3.1 / RFC 9449 §7.1: 401 with a Bearer or DPoP challenge whose error is invalid_token (alone or
    beside other challenges, RFC 9449 §7.2)."""
    if status != 401:
        return False
    errors = dpop.challenge_errors(str(headers.get("WWW-Authenticate", "")))
    return "invalid_token" in (errors.get("bearer"), errors.get("dpop"))


def _replayable(body: Any) -> bool:
    # A generator or file body was consumed by the first attempt and cannot be sent again.
    return body is None or isinstance(body, bytes | str)


def _fresh_record(request: HttpRequest) -> OAuthSession:
    if not request.user.is_authenticated:
        raise ReauthenticationRequired(ReauthenticationRequired.NOT_SIGNED_IN)
    return token_store().ensure_fresh(request)


def _headers_for(record: OAuthSession, method: str, url: str, nonce: str | None) -> dict[str, str]:
    if record.dpop_key:
        return dpop.authorization_headers(record.dpop_key, record.access_token, method, url, nonce)
    return {"Authorization": f"Bearer {record.access_token}"}


def _set_headers(headers: Any, new: dict[str, str]) -> None:
    # A retry may switch from DPoP to Bearer (a refresh gave a Bearer token): no proof may stay behind.
    if "DPoP" not in new:
        headers.pop("DPoP", None)
    headers.update(new)


@sensitive_variables()
def authorization_headers(request: HttpRequest, method: str, url: str) -> dict[str, str]:
    """The headers that present this request's (fresh) access token in one API call of `method` to `url`:
    `Authorization: Bearer …`, or, for a DPoP-bound token, `Authorization: DPoP …` and its `DPoP` proof (which is
    good for that method and URL only). For HTTP clients other than `requests` and `httpx`; raises as
    `get_access_token` does."""
    return _headers_for(_fresh_record(request), method, url, dpop.nonce_for(url))


class BearerAuth(requests.auth.AuthBase):
    """Adds the signed-in user's access token to a request: `Authorization: Bearer …`, or for a DPoP-bound token
    (OAUTH_CLIENT DPOP) `Authorization: DPoP …` with a fresh proof for the request's method and URL.

    When the API answers 401 with `WWW-Authenticate: Bearer error="invalid_token"` (or `DPoP …`: revoked, or
    expired earlier than announced), it refreshes once through the locked store path and retries the request
    once; when it answers a DPoP nonce challenge (RFC 9449 §9), it retries once with the nonce. The refresh may
    raise `ReauthenticationRequired` or `TokenRefreshUnavailable`, like `get_access_token`.
    """

    def __init__(self, request: HttpRequest) -> None:
        self.request = request

    @sensitive_variables()
    def _authorize(self, r: requests.PreparedRequest, nonce: str | None = None) -> requests.PreparedRequest:
        record = _fresh_record(self.request)
        url = str(r.url)
        if record.dpop_key and nonce is None:
            nonce = dpop.nonce_for(url)
        _set_headers(r.headers, _headers_for(record, str(r.method), url, nonce))
        return r

    @sensitive_variables()
    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        setattr(r, _SENT_AT, timezone.now())
        self._authorize(r)
        r.register_hook("response", self._retry)
        return r

    @sensitive_variables()
    def _retry(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        sent = response.request
        authorization = str(sent.headers.get("Authorization", ""))
        nonce = dpop.remember_nonce(str(sent.url), response.headers) if authorization.startswith("DPoP ") else None
        if (
            getattr(sent, _RETRIED, False)
            # requests drops Authorization on a redirect to another host: never add it back there.
            or not authorization.startswith(("Bearer ", "DPoP "))
            or not _replayable(sent.body)
        ):
            return response
        if nonce and dpop.is_nonce_challenge(response.status_code, response.headers):
            pass  # the same token again, with a new proof carrying the nonce
        elif _invalid_token(response.status_code, response.headers):
            record = token_store().load(self.request)
            if record is None or not record.has_refresh_token:
                return response  # nothing to refresh with: the caller sees the 401
            # Refresh unless another request already did after this one sent its token; then use that token.
            sent_at: datetime = getattr(sent, _SENT_AT, None) or timezone.now()
            token_store().ensure_fresh(self.request, force_since=sent_at)
            # `nonce` stays: a nonce sent with the 401 is the server's current one, for the retry too.
        else:
            return response
        retry = sent.copy()
        self._authorize(retry, nonce)
        setattr(retry, _RETRIED, True)
        response.content  # noqa: B018 - drain the first response so its connection can be reused
        response.close()
        new = response.connection.send(retry, **kwargs)
        new.history.append(response)
        new.request = retry
        if retry.headers.get("DPoP"):
            dpop.remember_nonce(str(retry.url), new.headers)
        return new


class _TimeoutSession(requests.Session):
    # Every frame below a call (requests, urllib3) holds the Authorization header: hidden on debug pages.
    @sensitive_variables()
    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", tuple(oauth_settings.HTTP_TIMEOUT))
        return super().request(method, url, *args, **kwargs)

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        """On a redirect: requests drops Authorization when the host changes, and the DPoP proof goes with it; on the
        same host it keeps both, and the proof (bound to one method and URL, and single-use) must be made anew —
        by `send`, when the redirect is followed (requests also calls this to build `Response.next`, never sent)."""
        super().rebuild_auth(prepared_request, response)
        headers = prepared_request.headers
        if "DPoP" in headers:
            del headers["DPoP"]
            if str(headers.get("Authorization", "")).startswith("DPoP "):
                setattr(prepared_request, _REPROOF, True)

    @sensitive_variables()
    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if getattr(request, _REPROOF, False):
            setattr(request, _REPROOF, False)
            # The BearerAuth that authorized the first request of this redirect chain (its response hook), so the
            # hop carries the same person's token, never the session's default auth's.
            owner = next(
                (
                    h.__self__
                    for h in request.hooks.get("response", [])
                    if isinstance(getattr(h, "__self__", None), BearerAuth)
                ),
                None,
            )
            if owner is None:
                del request.headers["Authorization"]
            else:
                setattr(request, _SENT_AT, timezone.now())
                owner._authorize(request)
        return super().send(request, **kwargs)


def api_session(request: HttpRequest) -> requests.Session:
    """A `requests.Session` for calling APIs as the signed-in user: `BearerAuth` (Bearer or DPoP), JSON accepted,
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


async def _afresh_record(request: HttpRequest) -> OAuthSession:
    if not (await request.auser()).is_authenticated:
        raise ReauthenticationRequired(ReauthenticationRequired.NOT_SIGNED_IN)
    return await token_store().aensure_fresh(request)


class AsyncBearerAuth(httpx.Auth):
    """`BearerAuth` for `httpx.AsyncClient`: the signed-in user's access token (Bearer, or DPoP with a fresh proof)
    on every request; on `401` with `WWW-Authenticate: Bearer error="invalid_token"` (or `DPoP …`) it refreshes once
    (through the locked store path, unless another request already refreshed after this one sent its token) and
    retries once; a DPoP nonce challenge is answered once."""

    requires_request_body = True  # the body is kept, so the retry can send it again

    def __init__(self, request: HttpRequest) -> None:
        self.request = request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("AsyncBearerAuth is for httpx.AsyncClient; use api_session() in sync code")

    async def _authorize(self, request: httpx.Request, nonce: str | None = None) -> None:
        record = await _afresh_record(self.request)
        url = str(request.url)
        nonce = nonce or (await dpop.anonce_for(url) if record.dpop_key else None)
        _set_headers(request.headers, _headers_for(record, request.method, url, nonce))

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        sent_at = timezone.now()
        await self._authorize(request)
        response = yield request
        # Only for an answer to a request that carried the token: httpx drops Authorization on a redirect to another
        # host, and a 401 from there must not make us refresh (or send a new token anywhere).
        authorization = str(response.request.headers.get("Authorization", ""))
        if not authorization.startswith(("Bearer ", "DPoP ")):
            return
        url = str(request.url)
        nonce = await dpop.aremember_nonce(url, response.headers) if authorization.startswith("DPoP ") else None
        if nonce and dpop.is_nonce_challenge(response.status_code, response.headers):
            await response.aread()
        elif _invalid_token(response.status_code, response.headers):
            record = await token_store().aload(self.request)
            if record is None or not record.has_refresh_token:
                return  # nothing to refresh with: the caller sees the 401
            await response.aread()
            await token_store().aensure_fresh(self.request, force_since=sent_at)
        else:
            return
        await self._authorize(request, nonce)
        response = yield request
        if request.headers.get("DPoP"):
            await dpop.aremember_nonce(url, response.headers)

    async def check_proof(self, request: httpx.Request) -> None:
        """A request hook (httpx runs it before every hop, redirects included): a proof goes only with its token, and
        only for the method and URL it was made for — else it is dropped with the token (another origin), or made
        anew (the same origin: httpx keeps Authorization there)."""
        proof = request.headers.get("DPoP")
        if proof is None:
            return
        if not request.headers.get("Authorization", "").startswith("DPoP "):
            del request.headers["DPoP"]
            return
        claims = dpop.proof_claims(proof)
        if claims.get("htm") != request.method or claims.get("htu") != dpop.target_uri(str(request.url)):
            await self._authorize(request)


def async_api_client(request: HttpRequest) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` for calling APIs as the signed-in user from async views: `AsyncBearerAuth`, JSON
    accepted, OAUTH_CLIENT['HTTP_TIMEOUT'] as the timeout. Use it as `async with async_api_client(request) as c:`."""
    connect, read = oauth_settings.HTTP_TIMEOUT
    # Redirects are not followed (httpx's default, stated). A caller that follows them anyway gets a new proof for
    # each hop on the same origin, and none on another (the request hook).
    auth = AsyncBearerAuth(request)
    return httpx.AsyncClient(
        auth=auth,
        follow_redirects=False,
        event_hooks={"request": [auth.check_proof]},
        headers={"Accept": "application/json"},
        timeout=httpx.Timeout(read, connect=connect),
    )
