"""DPoP (RFC 9449): access tokens bound to a key pair of the signed-in session.

With DPOP on, each sign-in gets its own ES256 key pair; its private half is kept encrypted with the token record
(never in a cookie, never shown). Every call that uses the key carries a proof, a JWT signed with it
(RFC 9449 §4.2): `typ` dpop+jwt, the public key in `jwk`, and the claims `jti` (unique), `htm` (the method), `htu`
(the URL without query and fragment), `iat`, `ath` (the access token's hash) when presenting an access token, and
the server's `nonce` once it asked for one (§8, §9). Nonces are kept per server origin in Django's cache, so every
process answers a challenge once, not once each.

RFC 9449 §5: a confidential client's refresh token is not bound to the key, its access tokens are.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from django.core.cache import caches
from django.views.decorators.debug import sensitive_variables
from jwcrypto import jwk, jwt

from oauth_client.conf import oauth_settings

logger = logging.getLogger("oauth_client.dpop")

ALGORITHM = "ES256"
PROOF_TYPE = "dpop+jwt"
SCHEME = "DPoP"
NONCE_HEADER = "DPoP-Nonce"
NONCE_ERROR = "use_dpop_nonce"
NONCE_SECONDS = 300
# RFC 9449 §8.1: a nonce is NQCHAR (%x21 / %x23-5B / %x5D-7E); anything else is not taken.
NONCE_RE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,512}$")


def new_key() -> str:
    """A fresh P-256 key pair, serialized (private JWK, JSON) for the encrypted token record."""
    return str(jwk.JWK.generate(kty="EC", crv="P-256").export_private())


def load_key(serialized: str) -> jwk.JWK:
    return jwk.JWK.from_json(serialized)


def thumbprint(serialized: str) -> str:
    """The key's RFC 7638 SHA-256 thumbprint: `dpop_jkt` (RFC 9449 §10) and the access token's `cnf.jkt` (§6)."""
    return str(load_key(serialized).thumbprint())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def access_token_hash(access_token: str) -> str:
    """`ath` (RFC 9449 §4.2): base64url of the SHA-256 of the access token's ASCII."""
    return _b64(hashlib.sha256(access_token.encode("ascii")).digest())


def target_uri(url: str) -> str:
    """`htu`: the request's URI without query and fragment (RFC 9449 §4.2)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def new_jti() -> str:
    return secrets.token_urlsafe(24)


@sensitive_variables()
def proof(key: jwk.JWK, method: str, url: str, *, access_token: str | None = None, nonce: str | None = None) -> str:
    """A DPoP proof JWT for one request (RFC 9449 §4.2)."""
    claims: dict[str, Any] = {"jti": new_jti(), "htm": method.upper(), "htu": target_uri(url), "iat": int(time.time())}
    if nonce:
        claims["nonce"] = nonce
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    token = jwt.JWT(
        header={"typ": PROOF_TYPE, "alg": ALGORITHM, "jwk": key.export_public(as_dict=True)},
        claims=claims,
    )
    token.make_signed_token(key)
    return str(token.serialize())


# --- nonces (RFC 9449 §8 and §9), per server ------------------------------------------------------------------


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _nonce_key(url: str) -> str:
    return "oauth_client:dpop-nonce:" + hashlib.sha256(_origin(url).encode()).hexdigest()[:24]


def nonce_for(url: str) -> str | None:
    try:
        value = caches[oauth_settings.CACHE_ALIAS].get(_nonce_key(url))
    except Exception:  # noqa: BLE001 - without the cache, the server's challenge costs one retry
        return None
    return value if isinstance(value, str) else None


def remember_nonce(url: str, headers: Any) -> bool:
    """Keep the `DPoP-Nonce` a server sent (with any answer); True when there was a usable one."""
    value = headers.get(NONCE_HEADER) if headers is not None else None
    if not isinstance(value, str) or not NONCE_RE.match(value):
        return False
    try:
        caches[oauth_settings.CACHE_ALIAS].set(_nonce_key(url), value, NONCE_SECONDS)
    except Exception:  # noqa: BLE001, S110 - see nonce_for
        pass
    return True


def is_nonce_challenge(status: int, headers: Any, error: str | None = None) -> bool:
    """An authorization server's `400 {"error": "use_dpop_nonce"}` (§8) or a resource server's
    `401 WWW-Authenticate: DPoP error="use_dpop_nonce"` (§9)."""
    if status == 400 and error == NONCE_ERROR:
        return True
    challenge = str(headers.get("WWW-Authenticate", "")) if headers is not None else ""
    return status == 401 and challenge.lower().startswith("dpop") and NONCE_ERROR in challenge


class DPoPProof(requests.auth.AuthBase):
    """A fresh proof on every prepared request (so a retry never replays a `jti`), with the server's current
    nonce; with `access_token`, also `Authorization: DPoP <token>` and the proof's `ath` (RFC 9449 §7.1)."""

    def __init__(self, key: jwk.JWK, access_token: str | None = None) -> None:
        self.key = key
        self.access_token = access_token

    def __repr__(self) -> str:
        return f"DPoPProof(thumbprint={self.key.thumbprint()!r})"

    @sensitive_variables()
    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        url, method = str(r.url), str(r.method)
        r.headers["DPoP"] = proof(self.key, method, url, access_token=self.access_token, nonce=nonce_for(url))
        if self.access_token is not None:
            r.headers["Authorization"] = f"{SCHEME} {self.access_token}"
        return r


def authorization_headers(key_json: str, access_token: str, method: str, url: str) -> dict[str, str]:
    """`Authorization` and `DPoP` headers for one resource request (httpx and other non-requests callers)."""
    key = load_key(key_json)
    return {
        "Authorization": f"{SCHEME} {access_token}",
        "DPoP": proof(key, method, url, access_token=access_token, nonce=nonce_for(url)),
    }


def decode_key(value: str) -> str:
    """Validate a serialized key (from an encrypted column or a sign-in attempt); '' when unusable."""
    try:
        data = json.loads(value)
        key = jwk.JWK(**data)
    except (ValueError, TypeError, jwk.InvalidJWKValue):
        return ""
    return value if key.has_private and key.get("crv") == "P-256" else ""


def enabled(provider: Any) -> bool:
    """Whether DPOP is on for this provider ("on"; a True is taken as "on")."""
    value = provider.DPOP
    return value is True or (isinstance(value, str) and value.lower() == "on")
