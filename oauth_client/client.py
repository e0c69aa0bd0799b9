"""Every call to the provider's endpoints: code exchange, refresh, revocation, userinfo, pushed authorization
requests.

Client authentication comes from `oauth_client.client_auth` (a `requests.auth.AuthBase` per method); with a DPoP
key (`oauth_client.dpop`), every token and userinfo call also carries a proof, and a nonce challenge is answered
once. Responses are checked here, so callers get either a `TokenResponse` or a typed error (`InvalidGrant`,
`InvalidClient`, `ProviderError`, `TransientProviderError`, `InvalidResponse`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from django.views.decorators.debug import sensitive_variables

from oauth_client import client_auth, dpop, http
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


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    expires_in: int | None
    id_token: str | None = None
    refresh_token: str | None = None
    refresh_expires_in: int | None = None
    scope: str | None = None
    # "Bearer", or "DPoP" (RFC 9449 §5) when the access token is bound to the session's DPoP key.
    token_type: str = "Bearer"
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:  # never print tokens
        return (
            f"TokenResponse(token_type={self.token_type!r}, expires_in={self.expires_in}, scope={self.scope!r}, "
            f"refresh={bool(self.refresh_token)})"
        )


def _error_code(resp: http.Response) -> str | None:
    """The `error` of a JSON error answer, if it has one (for spotting a DPoP nonce challenge)."""
    try:
        data = resp.json()
    except InvalidResponse:
        return None
    return data.get("error") if isinstance(data, dict) and isinstance(data.get("error"), str) else None


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


def _parse_token_response(resp: http.Response, *, dpop_bound: bool = False) -> TokenResponse:
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
    # RFC 6749 §7.1 / RFC 9449 §5: token types are case-insensitive; DPoP only from a call that carried a proof. A
    # Bearer answer to one is parsed (its refresh token may be a rotated one, which must not be lost) and refused
    # by the caller (RFC 9449 §5: a client discards it when the binding matters, and DPOP "on" says it does).
    accepted = {"bearer": "Bearer", **({"dpop": dpop.SCHEME} if dpop_bound else {})}
    if not isinstance(token_type, str) or token_type.lower() not in accepted:
        raise InvalidResponse(f"token response token_type is not {' or '.join(accepted.values())}")
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
        token_type=accepted[token_type.lower()],
        extra={k: v for k, v in data.items() if k not in ("access_token", "id_token", "refresh_token")},
    )


@sensitive_variables()
def _post(
    provider: Provider,
    metadata: dict[str, Any],
    endpoint: str,
    form: dict[str, str],
    *,
    what: str,
    idempotent: bool = True,
    dpop_key: str | None = None,
) -> http.Response:
    """POST a form with client authentication (and a DPoP proof with `dpop_key`; a nonce challenge answered once)."""
    auth: requests.auth.AuthBase = client_auth.for_provider(provider, metadata)
    proof = dpop.DPoPProof(dpop.load_key(dpop_key)) if dpop_key else None
    if proof is not None:
        auth = client_auth.Both(auth, proof)
    headers = {"Accept": "application/json"}
    return _answering_nonce_challenge(
        proof,
        endpoint,
        what,
        lambda: http.request("POST", endpoint, data=form, auth=auth, headers=headers, idempotent=idempotent, what=what),
    )


def _answering_nonce_challenge(
    proof: dpop.DPoPProof | None, url: str, what: str, send: Callable[[], http.Response]
) -> http.Response:
    """`send()`; with a DPoP proof, once more when the answer is a nonce challenge (RFC 9449 §8, §9): the server
    refused before acting on the request, so sending it again is safe even for a refresh token. The retry uses the
    challenge's own nonce (the cache, which keeps it for later requests, may be down); `send` prepares the request
    anew, so the proof and any client assertion are new too."""
    resp = send()
    if proof is None:
        return resp
    nonce = dpop.remember_nonce(url, resp.headers)
    if nonce and dpop.is_nonce_challenge(resp.status, resp.headers, _error_code(resp)):
        logger.info("%s asked for a DPoP nonce; sending the request again with it", what)
        proof.nonce = nonce
        resp = send()
        dpop.remember_nonce(url, resp.headers)
    return resp


@sensitive_variables()
def _token_request(
    provider: Provider, form: dict[str, str], *, idempotent: bool, dpop_key: str | None = None
) -> TokenResponse:
    metadata = get_metadata(provider)
    resp = _post(
        provider,
        metadata,
        metadata["token_endpoint"],
        form,
        what="token endpoint",
        idempotent=idempotent,
        dpop_key=dpop_key,
    )
    return _parse_token_response(resp, dpop_bound=bool(dpop_key))


@sensitive_variables()
def exchange_code(
    provider: Provider, code: str, redirect_uri: str, code_verifier: str, *, dpop_key: str | None = None
) -> TokenResponse:
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
        dpop_key=dpop_key,
    )


@sensitive_variables()
def refresh(provider: Provider, refresh_token: str, *, dpop_key: str | None = None) -> TokenResponse:
    # No scope/audience parameter: the refreshed grant keeps what the user consented to, never wider.
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return _token_request(provider, form, idempotent=False, dpop_key=dpop_key)


@sensitive_variables()
def revoke(provider: Provider, token: str, token_type_hint: str = "refresh_token") -> bool:
    """RFC 7009 revocation. Returns False when the provider has no revocation endpoint."""
    metadata = get_metadata(provider)
    endpoint = metadata.get("revocation_endpoint")
    if not endpoint:
        return False
    form = {"token": token, "token_type_hint": token_type_hint}
    resp = _post(provider, metadata, endpoint, form, what="revocation endpoint")
    if resp.status != 200:
        raise _error_from(resp)
    return True


def uses_par(provider: Provider, metadata: dict[str, Any]) -> bool:
    """PAR setting: "auto" pushes when the provider has a pushed_authorization_request_endpoint; "on" requires one
    (ConfigurationError without); "off" never pushes."""
    setting = dpop.switch(provider.PAR)
    endpoint = metadata.get("pushed_authorization_request_endpoint")
    if setting == "off":
        return False
    if setting == "on" and not endpoint:
        raise ConfigurationError(
            f"provider {provider.name!r}: PAR is on, but the provider advertises no "
            "pushed_authorization_request_endpoint"
        )
    return bool(endpoint)


@sensitive_variables()
def push_authorization_request(provider: Provider, metadata: dict[str, Any], params: dict[str, str]) -> str:
    """RFC 9126 §2: push the authorization parameters, with client authentication; returns the `request_uri` to
    send the browser with (its only other parameter is `client_id`)."""
    endpoint = metadata["pushed_authorization_request_endpoint"]
    resp = _post(provider, metadata, endpoint, params, what="pushed authorization request endpoint")
    # §2.2: 201 Created; a 200 is taken too (some deployments answer so).
    if resp.status not in (200, 201):
        raise _error_from(resp)
    data = resp.json()
    request_uri = data.get("request_uri") if isinstance(data, dict) else None
    if not isinstance(request_uri, str) or not request_uri or len(request_uri) > 2048:
        raise InvalidResponse("pushed authorization response has no request_uri")
    return request_uri


@sensitive_variables()
def userinfo(provider: Provider, access_token: str, *, dpop_key: str | None = None) -> dict[str, Any]:
    """The userinfo claims, with the access token as a Bearer token, or (with `dpop_key`, the key it is bound to) as
    a DPoP one with its proof."""
    endpoint = get_metadata(provider).get("userinfo_endpoint")
    if not endpoint:
        return {}
    headers = {"Accept": "application/json"}
    proof = None
    if dpop_key:
        proof = dpop.DPoPProof(dpop.load_key(dpop_key), access_token)  # Authorization: DPoP, and the proof
    else:
        headers["Authorization"] = f"Bearer {access_token}"
    resp = _answering_nonce_challenge(
        proof,
        endpoint,
        "userinfo endpoint",
        lambda: http.request("GET", endpoint, headers=headers, auth=proof, what="userinfo endpoint"),
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
