"""DPoP (RFC 9449): access tokens bound to a key pair of the signed-in session.

With DPOP on, each sign-in gets its own ES256 key pair; its private half is kept encrypted with the token record
(never in a cookie, never shown). Every call that uses the key carries a proof, a JWT signed with it
(RFC 9449 §4.2): `typ` dpop+jwt, the public key in `jwk`, and the claims `jti` (unique), `htm` (the method), `htu`
(the URL without query and fragment), `iat`, `ath` (the access token's hash) when presenting an access token, and
the server's `nonce` once it asked for one (§8, §9). Nonces are kept per endpoint and origin in Django's cache, so
every process answers a challenge once, not once each.

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
    # Access tokens are ASCII (RFC 6749 §A.12); UTF-8 is the same bytes for them and never raises for others.
    return _b64(hashlib.sha256(access_token.encode("utf-8")).digest())


def target_uri(url: str) -> str:
    """`htu`: the request's URI without query and fragment (RFC 9449 §4.2), and without any user information."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def proof_claims(proof: str) -> dict[str, Any]:
    """The claims of a proof this client made (read, not verified: for checking which request it was made for)."""
    try:
        payload = proof.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


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


# --- nonces (RFC 9449 §8 and §9), per server -------------------------------------------------------------------
#
# A nonce is good at the server that issued it (§9): kept per endpoint (scheme, host, path) and per origin, and read
# endpoint first, so an authorization server and a resource server behind one origin, or two issuers on one host,
# each find their own where they have been, and a new path of a server starts from its origin's. The cache only saves
# the next request a challenge: a challenge's own nonce is used for its retry directly.


def _nonce_keys(url: str) -> tuple[str, str]:
    """The cache keys of a nonce: the endpoint's (scheme, host, path), then its origin's (most servers have one
    nonce for all their endpoints: a new path then starts from it instead of a challenge)."""
    endpoint = target_uri(url).lower()
    parts = urlsplit(endpoint)

    def key(where: str) -> str:
        return "oauth_client:dpop-nonce:" + hashlib.sha256(where.encode()).hexdigest()[:24]

    return key(endpoint), key(f"{parts.scheme}://{parts.netloc}")


def _cache() -> Any:
    return caches[oauth_settings.CACHE_ALIAS]


def nonce_from(headers: Any) -> str | None:
    """The `DPoP-Nonce` a server sent, if it is a well-formed one."""
    value = headers.get(NONCE_HEADER) if headers is not None else None
    return value if isinstance(value, str) and NONCE_RE.match(value) else None


def _first(found: dict[str, Any], keys: tuple[str, str]) -> str | None:
    for key in keys:
        if isinstance(found.get(key), str):
            return str(found[key])
    return None


def nonce_for(url: str) -> str | None:
    keys = _nonce_keys(url)
    try:
        return _first(_cache().get_many(keys), keys)
    except Exception:  # noqa: BLE001 - without the cache, the server's challenge costs one retry
        return None


async def anonce_for(url: str) -> str | None:
    keys = _nonce_keys(url)
    try:
        return _first(await _cache().aget_many(keys), keys)
    except Exception:  # noqa: BLE001 - see nonce_for
        return None


def remember_nonce(url: str, headers: Any) -> str | None:
    """Keep the `DPoP-Nonce` a server sent (with any answer, §8.2) for the next request there; returns it."""
    value = nonce_from(headers)
    if value is not None:
        try:
            _cache().set_many(dict.fromkeys(_nonce_keys(url), value), NONCE_SECONDS)
        except Exception:  # noqa: BLE001, S110 - see nonce_for
            pass
    return value


async def aremember_nonce(url: str, headers: Any) -> str | None:
    value = nonce_from(headers)
    if value is not None:
        try:
            await _cache().aset_many(dict.fromkeys(_nonce_keys(url), value), NONCE_SECONDS)
        except Exception:  # noqa: BLE001, S110 - see nonce_for
            pass
    return value


# WWW-Authenticate (RFC 9110 §11.6.1): challenges and their parameters are both comma-separated, and quoted strings
# may hold commas. A scheme is a token followed by parameters, a token68 or the end, never by "=".
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_SCHEME = re.compile(rf"(?:^|,)\s*({_TOKEN})(?=\s+{_TOKEN}\s*=|\s+[A-Za-z0-9._~+/-]+=*\s*(?:,|$)|\s*(?:,|$))")
_ESCAPED = re.compile(r"\\(.)")  # quoted-pair (RFC 9110 §5.6.4)
_ERROR = re.compile(r'(?:^|[\s,])error\s*=\s*(?:"([^"]*)"|([^\s,]*))', re.IGNORECASE)


def challenge_errors(value: str) -> dict[str, str]:
    """The `error` of each challenge in a WWW-Authenticate value, by lower-case scheme: for
    `Bearer error="invalid_token", DPoP algs="ES256", error="use_dpop_nonce"`, {"bearer": "invalid_token", "dpop":
    "use_dpop_nonce"}."""
    masked = _QUOTED.sub(lambda m: '"' + "_" * (len(m.group()) - 2) + '"', value)  # same length, no commas
    starts = [(m.start(1), m.group(1).lower()) for m in _SCHEME.finditer(masked)]
    errors: dict[str, str] = {}
    for i, (start, scheme) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(value)
        begin = start + len(scheme)
        # Found in the masked text (never inside another parameter's quoted string), read from the real one.
        found = _ERROR.search(masked, begin, end)
        group = (1 if found.group(1) is not None else 2) if found else 0
        error = _ESCAPED.sub(r"\1", value[found.start(group) : found.end(group)]) if found else ""
        if error or scheme not in errors:  # a scheme named twice: the challenge that has an error
            errors[scheme] = error
    return errors


def is_nonce_challenge(status: int, headers: Any, error: str | None = None) -> bool:
    """An authorization server's `400 {"error": "use_dpop_nonce"}` (§8) or a resource server's
    `401 WWW-Authenticate: DPoP error="use_dpop_nonce"` (§9), alone or beside other challenges (§7.2)."""
    if status == 400 and error == NONCE_ERROR:
        return True
    challenge = str(headers.get("WWW-Authenticate", "")) if headers is not None else ""
    return status == 401 and challenge_errors(challenge).get("dpop") == NONCE_ERROR


class DPoPProof(requests.auth.AuthBase):
    """A fresh proof on every prepared request (so a retry never replays a `jti`), with the server's current
    nonce (`nonce`, once a challenge gave one; else the one kept for that endpoint); with `access_token`, also
    `Authorization: DPoP <token>` and the proof's `ath` (RFC 9449 §7.1)."""

    def __init__(self, key: jwk.JWK, access_token: str | None = None) -> None:
        self.key = key
        self.access_token = access_token
        self.nonce: str | None = None

    def __repr__(self) -> str:
        return f"DPoPProof(thumbprint={self.key.thumbprint()!r})"

    @sensitive_variables()
    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        url, method = str(r.url), str(r.method)
        nonce = self.nonce or nonce_for(url)
        r.headers["DPoP"] = proof(self.key, method, url, access_token=self.access_token, nonce=nonce)
        if self.access_token is not None:
            r.headers["Authorization"] = f"{SCHEME} {self.access_token}"
        return r


def authorization_headers(
    key_json: str, access_token: str, method: str, url: str, nonce: str | None = None
) -> dict[str, str]:
    """`Authorization` and `DPoP` headers for one resource request, with `nonce` (the caller's, e.g. from a
    challenge or `anonce_for`)."""
    key = load_key(key_json)
    return {
        "Authorization": f"{SCHEME} {access_token}",
        "DPoP": proof(key, method, url, access_token=access_token, nonce=nonce),
    }


def switch(value: Any) -> str:
    """A PAR or DPOP setting, as one lower-case word: True is "on", False is "off"."""
    if value is True:
        return "on"
    if value is False:
        return "off"
    return str(value).strip().lower()


def enabled(provider: Any) -> bool:
    """Whether DPOP is on for this provider."""
    return switch(provider.DPOP) == "on"
