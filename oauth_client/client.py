"""Every call to the provider's endpoints: code exchange, refresh, revocation, userinfo.

Client authentication is a `requests.auth.AuthBase` (client_secret_basic) or form fields (client_secret_post),
chosen from settings or from what the provider advertises. Responses are checked here, so callers get either
a `TokenResponse` or a typed error (`InvalidGrant`, `InvalidClient`, `ProviderError`, `TransientProviderError`,
`InvalidResponse`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests
from django.views.decorators.debug import sensitive_variables

from oauth_client import http
from oauth_client.discovery import get_metadata
from oauth_client.exceptions import (
    ConfigurationError,
    InvalidClient,
    InvalidGrant,
    InvalidResponse,
    ProviderError,
)
from oauth_client.providers import Provider

logger = logging.getLogger("oauth_client.client")

SUPPORTED_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


class ClientSecretBasic(requests.auth.AuthBase):
    """RFC 6749 §2.3.1: client id and secret form-urlencoded, then HTTP Basic."""

    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return requests.auth.HTTPBasicAuth(quote(self.client_id, safe=""), quote(self.client_secret, safe=""))(r)


def auth_method(provider: Provider, metadata: dict[str, Any] | None = None) -> str:
    configured = provider.TOKEN_AUTH_METHOD
    if configured:
        if configured not in SUPPORTED_AUTH_METHODS:
            raise ConfigurationError(f"unsupported TOKEN_AUTH_METHOD {configured!r}")
        return str(configured)
    metadata = metadata if metadata is not None else get_metadata(provider)
    # Discovery §3: absent means client_secret_basic.
    advertised = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    for method in advertised:
        if method in SUPPORTED_AUTH_METHODS:
            return str(method)
    raise ConfigurationError("the provider supports none of our client authentication methods")


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    expires_in: int | None
    id_token: str | None = None
    refresh_token: str | None = None
    refresh_expires_in: int | None = None
    scope: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:  # never print tokens
        return f"TokenResponse(expires_in={self.expires_in}, scope={self.scope!r}, refresh={bool(self.refresh_token)})"


def _error_from(resp: http.Response) -> Exception:
    try:
        data = resp.json()
    except InvalidResponse:
        return InvalidResponse(f"token endpoint answered HTTP {resp.status} without a JSON error")
    if not isinstance(data, dict) or not isinstance(data.get("error"), str):
        return InvalidResponse(f"token endpoint answered HTTP {resp.status} without an error code")
    error = data["error"][:100]
    description = str(data.get("error_description") or "")[:300]
    if error == "invalid_grant":
        return InvalidGrant(error, description, resp.status)
    if error in ("invalid_client", "unauthorized_client"):
        return InvalidClient(error, description, resp.status)
    return ProviderError(error, description, resp.status)


# The longest lifetime we store: 2**31 - 1 seconds (~68 years, the usual "never expires"), which keeps
# now + lifetime a representable date; a provider sending more is sending nonsense.
MAX_LIFETIME = 2**31 - 1


def _optional_lifetime(value: Any) -> int | None:
    """An advisory lifetime (refresh_expires_in): digits or a number within MAX_LIFETIME, else ignored."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_LIFETIME:
        return value
    return None


def _parse_token_response(resp: http.Response) -> TokenResponse:
    if resp.status != 200:
        raise _error_from(resp)
    data = resp.json()
    if not isinstance(data, dict):
        raise InvalidResponse("token response is not a JSON object")
    if "error" in data:
        raise _error_from(resp)
    access_token = data.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise InvalidResponse("token response has no access_token")
    token_type = data.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise InvalidResponse("token response token_type is not Bearer")
    expires_in = data.get("expires_in")
    if expires_in is not None:
        # Some providers send it as a string ("3600"); anything else is malformed.
        if isinstance(expires_in, bool):  # int(True) == 1: a JSON true is no lifetime
            raise InvalidResponse("token response expires_in is not a number")
        try:
            expires_in = int(expires_in)
        except (TypeError, ValueError, OverflowError):
            raise InvalidResponse("token response expires_in is not a number") from None
        if expires_in <= 0:
            raise InvalidResponse("token response expires_in is not positive")
        if expires_in > MAX_LIFETIME:
            raise InvalidResponse("token response expires_in is out of range")
    for name in ("id_token", "refresh_token", "scope"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise InvalidResponse(f"token response {name} is not a string")
    refresh_expires_in = data.get("refresh_expires_in") or data.get("refresh_token_expires_in")
    return TokenResponse(
        access_token=access_token,
        expires_in=expires_in,
        id_token=data.get("id_token") or None,
        refresh_token=data.get("refresh_token") or None,
        refresh_expires_in=_optional_lifetime(refresh_expires_in),
        scope=data.get("scope"),
        extra={k: v for k, v in data.items() if k not in ("access_token", "id_token", "refresh_token")},
    )


@sensitive_variables()
def _authenticate(
    provider: Provider, metadata: dict[str, Any], form: dict[str, str]
) -> tuple[dict[str, str], requests.auth.AuthBase | None]:
    """Client authentication for the token and revocation endpoints: (form to send, auth to use)."""
    client_id, secret = provider.CLIENT_ID, provider.CLIENT_SECRET
    if not client_id or not secret:
        raise ConfigurationError(f"provider {provider.name!r}: CLIENT_ID and CLIENT_SECRET are required")
    if auth_method(provider, metadata) == "client_secret_basic":
        return form, ClientSecretBasic(client_id, secret)
    return {**form, "client_id": client_id, "client_secret": secret}, None


@sensitive_variables()
def _token_request(provider: Provider, form: dict[str, str], *, idempotent: bool) -> TokenResponse:
    metadata = get_metadata(provider)
    form, auth = _authenticate(provider, metadata, form)
    resp = http.request(
        "POST",
        metadata["token_endpoint"],
        data=form,
        auth=auth,
        headers={"Accept": "application/json"},
        idempotent=idempotent,
        what="token endpoint",
    )
    return _parse_token_response(resp)


@sensitive_variables()
def exchange_code(provider: Provider, code: str, redirect_uri: str, code_verifier: str) -> TokenResponse:
    # A code is single-use: once the provider may have seen it, a retry can only fail.
    return _token_request(
        provider,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        },
        idempotent=False,
    )


@sensitive_variables()
def refresh(provider: Provider, refresh_token: str) -> TokenResponse:
    # No scope/audience parameter: the refreshed grant keeps what the user consented to, never wider.
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return _token_request(provider, form, idempotent=False)


@sensitive_variables()
def revoke(provider: Provider, token: str, token_type_hint: str = "refresh_token") -> bool:
    """RFC 7009 revocation. Returns False when the provider has no revocation endpoint."""
    metadata = get_metadata(provider)
    endpoint = metadata.get("revocation_endpoint")
    if not endpoint:
        return False
    form, auth = _authenticate(provider, metadata, {"token": token, "token_type_hint": token_type_hint})
    resp = http.request("POST", endpoint, data=form, auth=auth, what="revocation endpoint")
    if resp.status != 200:
        raise _error_from(resp)
    return True


@sensitive_variables()
def userinfo(provider: Provider, access_token: str) -> dict[str, Any]:
    endpoint = get_metadata(provider).get("userinfo_endpoint")
    if not endpoint:
        return {}
    resp = http.request(
        "GET",
        endpoint,
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        what="userinfo endpoint",
    )
    if resp.status != 200:
        raise InvalidResponse(f"userinfo endpoint answered HTTP {resp.status}")
    content_type = resp.headers.get("Content-Type", "")
    if "json" not in content_type:
        # Signed/encrypted userinfo (application/jwt) is not requested by this client.
        raise InvalidResponse("userinfo response is not JSON")
    data = resp.json()
    if not isinstance(data, dict):
        raise InvalidResponse("userinfo response is not a JSON object")
    return data
