"""How the client proves who it is at the provider's token, revocation and pushed authorization request endpoints.

Each method is a `requests.auth.AuthBase`, applied when a request is prepared, so every attempt (a retry, an
answer to a DPoP nonce challenge) carries fresh credentials, and a client assertion's `jti` is never sent twice:

- `client_secret_basic` (RFC 6749 §2.3.1): id and secret, form-urlencoded, in HTTP Basic;
- `client_secret_post`: id and secret as form fields;
- `private_key_jwt` (RFC 7523 §2.2, OIDC Core §9): a JWT signed with the client's private key (oauth_client.keys),
  `iss` = `sub` = client id, a unique `jti`, `exp` a minute away, and `aud` the provider's issuer identifier by
  default: RFC 9126 §2 says the issuer SHOULD be used and the provider MUST accept it, FAPI 2.0 requires it; OIDC
  Core §9 says the token endpoint URL SHOULD be used, which CLIENT_ASSERTION_AUDIENCE "token_endpoint" selects.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import requests
from django.views.decorators.debug import sensitive_variables
from jwcrypto import jwt

from oauth_client import keys
from oauth_client.exceptions import ConfigurationError
from oauth_client.providers import Provider

SECRET_METHODS = ("client_secret_basic", "client_secret_post")
SUPPORTED_AUTH_METHODS = (*SECRET_METHODS, "private_key_jwt")
# RFC 7523 §2.2.
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 60


def _append_form(r: requests.PreparedRequest, fields: dict[str, str]) -> requests.PreparedRequest:
    """Add fields to a form-encoded body (requests recomputes Content-Length after the auth has run). A field the
    body already has is not added again: a pushed authorization request carries `client_id` as a parameter of its
    own, and providers refuse a parameter given twice (RFC 6749 §3.1)."""
    body = r.body or ""
    if isinstance(body, bytes):
        body = body.decode("ascii")
    present = {name for name, _ in parse_qsl(body, keep_blank_values=True)}
    extra = urlencode({name: value for name, value in fields.items() if name not in present})
    r.body = "&".join(part for part in (body, extra) if part)
    r.headers["Content-Type"] = "application/x-www-form-urlencoded"
    return r


class ClientSecretBasic(requests.auth.AuthBase):
    """RFC 6749 §2.3.1: client id and secret form-urlencoded, then HTTP Basic."""

    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret

    def __repr__(self) -> str:
        return f"ClientSecretBasic(client_id={self.client_id!r})"

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return requests.auth.HTTPBasicAuth(quote(self.client_id, safe=""), quote(self.client_secret, safe=""))(r)


class ClientSecretPost(requests.auth.AuthBase):
    """RFC 6749 §2.3.1: client id and secret in the request body."""

    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret

    def __repr__(self) -> str:
        return f"ClientSecretPost(client_id={self.client_id!r})"

    @sensitive_variables()
    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return _append_form(r, {"client_id": self.client_id, "client_secret": self.client_secret})


class PrivateKeyJWT(requests.auth.AuthBase):
    """RFC 7523 §2.2: `client_assertion_type` and a freshly signed `client_assertion` (and `client_id`, which
    RFC 6749 §2.3 lets every authenticated request carry) in the request body."""

    def __init__(self, client_id: str, key: keys.ClientKey, algorithm: str, audience: str) -> None:
        self.client_id = client_id
        self.key = key
        self.algorithm = algorithm
        self.audience = audience

    def __repr__(self) -> str:
        return f"PrivateKeyJWT(client_id={self.client_id!r}, kid={self.key.kid!r}, aud={self.audience!r})"

    @sensitive_variables()
    def assertion(self, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        token = jwt.JWT(
            header={"alg": self.algorithm, "kid": self.key.kid},
            claims={
                "iss": self.client_id,
                "sub": self.client_id,
                "aud": self.audience,
                "jti": secrets.token_urlsafe(24),
                "iat": issued,
                "exp": issued + ASSERTION_LIFETIME,
            },
        )
        token.make_signed_token(self.key.key)
        return str(token.serialize())

    @sensitive_variables()
    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        fields = {"client_id": self.client_id, "client_assertion_type": ASSERTION_TYPE}
        return _append_form(r, {**fields, "client_assertion": self.assertion()})


def auth_method(provider: Provider, metadata: dict[str, Any] | None = None) -> str:
    """TOKEN_AUTH_METHOD, or (when empty) the best method the provider advertises (`metadata`: its discovery
    document, fetched when not given) that this site has credentials for: private_key_jwt when a CLIENT_KEY_FILE is
    configured, else the first client-secret method."""
    configured = provider.TOKEN_AUTH_METHOD
    if configured:
        if configured not in SUPPORTED_AUTH_METHODS:
            raise ConfigurationError(f"unsupported TOKEN_AUTH_METHOD {configured!r}")
        return str(configured)
    if metadata is None:
        from oauth_client.discovery import get_metadata

        metadata = get_metadata(provider)
    # Discovery §3: absent means client_secret_basic.
    advertised = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if provider.CLIENT_KEY_FILE and "private_key_jwt" in advertised:
        return "private_key_jwt"
    if provider.CLIENT_SECRET:
        for method in advertised:
            if method in SECRET_METHODS:
                return str(method)
    raise ConfigurationError("the provider supports none of the client authentication methods this site can use")


def assertion_audience(provider: Provider, metadata: dict[str, Any]) -> str:
    """CLIENT_ASSERTION_AUDIENCE: "issuer" (the default), "token_endpoint", or an absolute URL."""
    setting = str(provider.CLIENT_ASSERTION_AUDIENCE or "issuer")
    if setting == "issuer":
        return str(metadata.get("issuer") or provider.ISSUER)
    if setting == "token_endpoint":
        return str(metadata["token_endpoint"])
    return setting


@sensitive_variables()
def for_provider(provider: Provider, metadata: dict[str, Any]) -> requests.auth.AuthBase:
    """The client authentication to use with this provider's endpoints."""
    client_id = provider.CLIENT_ID
    if not client_id:
        raise ConfigurationError(f"provider {provider.name!r}: CLIENT_ID is required")
    method = auth_method(provider, metadata)
    if method == "private_key_jwt":
        key = keys.signing_key(provider)
        algorithm = key.algorithm(
            metadata.get("token_endpoint_auth_signing_alg_values_supported"), str(provider.CLIENT_KEY_ALGORITHM or "")
        )
        return PrivateKeyJWT(client_id, key, algorithm, assertion_audience(provider, metadata))
    if not provider.CLIENT_SECRET:
        raise ConfigurationError(f"provider {provider.name!r}: {method} needs CLIENT_SECRET")
    if method == "client_secret_basic":
        return ClientSecretBasic(client_id, provider.CLIENT_SECRET)
    return ClientSecretPost(client_id, provider.CLIENT_SECRET)


class Both(requests.auth.AuthBase):
    """Two authentications on one request (client authentication and a DPoP proof)."""

    def __init__(self, *auths: requests.auth.AuthBase) -> None:
        self.auths = auths

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        for auth in self.auths:
            r = auth(r)
        return r
