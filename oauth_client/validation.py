"""ID token and logout token validation (OIDC Core §3.1.3.7, §12.2; Back-Channel Logout §2.6), on jwcrypto.

Only asymmetric algorithms from ALLOWED_ALGORITHMS are accepted, and the algorithm is pinned before
verification, so `alg: none` and HS256-signed-with-the-public-key tokens are refused by construction.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Mapping
from typing import Any

from django.views.decorators.debug import sensitive_variables
from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from oauth_client import discovery, strictjson
from oauth_client.conf import oauth_settings
from oauth_client.exceptions import ClockSkew, SubjectChanged, TokenValidationError, TransientProviderError
from oauth_client.providers import Provider

logger = logging.getLogger("oauth_client.validation")

_KTY_FOR_ALG_PREFIX = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
# Back-Channel Logout 1.0 §2.4: the member of the `events` claim that makes a JWT a logout token (a hyphen, not an
# underscore). The one spelling of it in this repository: the embedded provider's command and the tests import it.
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
# §2.4 / §4.1: logout tokens are explicitly typed `logout+jwt` (RFC 8725 §3.11); older providers send no `typ`
# or plain `JWT`. Compared as a media type (RFC 7515 §4.1.9): case-insensitive, "application/" optional.
LOGOUT_TOKEN_TYPES = frozenset({"logout+jwt", "jwt"})
# 9999-12-31T23:59:59Z: the last NumericDate a datetime can hold (expiries are stored as datetimes).
MAX_NUMERIC_DATE = 253402300799


def _candidate_keys(keyset: jwk.JWKSet, kid: str | None, kty: str) -> list[jwk.JWK]:
    keys = [
        k
        for k in keyset
        if k.get("kty") == kty and k.get("use", "sig") == "sig" and (kid is None or k.get("kid") == kid)
    ]
    return keys


def _media_type(typ: str) -> str:
    typ = typ.strip().lower()
    return typ.removeprefix("application/")


@sensitive_variables()
def verify_signature(
    provider: Provider, raw: str, *, from_token_endpoint: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify a compact JWS against the provider's JWKS and return its header and claims (not yet checked).

    `from_token_endpoint`: the token came in our own authenticated request to the provider, so an unknown
    `kid` is the provider's (a key rotation) and may always refetch the JWKS; other tokens are rate-limited.
    """
    if not isinstance(raw, str) or raw.count(".") != 2 or len(raw) > 64 * 1024:
        raise TokenValidationError("token is not a compact JWS")
    token = jws.JWS()
    try:
        token.deserialize(raw)
        header = token.jose_header
    except (JWException, ValueError, TypeError, RecursionError) as exc:
        raise TokenValidationError("token is malformed") from exc
    alg = header.get("alg") if isinstance(header, dict) else None
    if not isinstance(alg, str) or alg not in provider.ALLOWED_ALGORITHMS or alg[:2] not in _KTY_FOR_ALG_PREFIX:
        raise TokenValidationError("token algorithm is not allowed")
    kty = _KTY_FOR_ALG_PREFIX[alg[:2]]
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise TokenValidationError("token kid is malformed")

    keys = _candidate_keys(discovery.get_jwks(provider), kid, kty)
    if not keys and kid is not None:
        # The provider may have rotated its signing key since we cached the JWKS.
        keyset, fetched = discovery.refetch_jwks(provider, rate_limited=not from_token_endpoint)
        keys = _candidate_keys(keyset, kid, kty)
        if not keys and not fetched:
            # The refetch is rate-limited: this may be a key the provider rotated in moments ago. Not a verdict on
            # the token (a genuine logout token is retried by the provider after a 503), so not a 400.
            raise TransientProviderError(
                "token names an unknown key and the JWKS was fetched moments ago",
                retry_after=float(oauth_settings.JWKS_MIN_REFETCH_SECONDS),
            )
    if not keys:
        raise TokenValidationError("no provider key matches the token")
    if kid is None and len(keys) > 1:
        # Without a kid the signer is ambiguous; OIDC Core §10.1 requires a kid when there are several keys.
        raise TokenValidationError("token has no kid and the provider has several keys")

    token.allowed_algs = [alg]
    try:
        token.verify(keys[0], alg=alg)
        claims = strictjson.loads(token.payload)
    except (JWException, ValueError, TypeError) as exc:
        raise TokenValidationError("token signature is invalid") from exc
    if not isinstance(claims, dict):
        raise TokenValidationError("token payload is not a JSON object")
    return header, claims


def _numeric_date(claims: dict[str, Any], name: str) -> float | None:
    """A NumericDate claim (RFC 7519 §2), or None when absent; anything that is not a date we can store is refused
    (null included: a claim that is present must be valid)."""
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_NUMERIC_DATE:
        raise TokenValidationError(f"token {name} is not a valid date")
    return value


def _check_common(claims: dict[str, Any], *, issuer: str, client_id: str, now: float, leeway: int) -> None:
    if claims.get("iss") != issuer:
        raise TokenValidationError("token issuer does not match")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not all(isinstance(a, str) for a in audiences):
        raise TokenValidationError("token audience is not a string or an array of strings")  # RFC 7519 §4.1.3
    if client_id not in audiences:
        raise TokenValidationError("token audience does not include this client")
    if len(audiences) > 1 and "azp" not in claims:
        raise TokenValidationError("token has several audiences and no azp")
    if "azp" in claims and claims["azp"] != client_id:  # null is present, and not us
        raise TokenValidationError("token azp is not this client")
    iat = _numeric_date(claims, "iat")
    if iat is None:
        raise TokenValidationError("token has no valid iat")
    if iat > now + leeway:
        raise ClockSkew("token was issued in the future")


@sensitive_variables()
def validate_id_token(provider: Provider, raw: str, *, nonce: str | None, now: float | None = None) -> dict[str, Any]:
    """Validate an ID token and return its claims.

    `nonce` is required at sign-in; a refreshed ID token is checked by `validate_refreshed_id_token` instead.
    """
    now = time.time() if now is None else now
    leeway = int(oauth_settings.CLOCK_LEEWAY)
    issuer = discovery.get_metadata(provider)["issuer"]
    # This client only ever receives ID tokens from the token endpoint (code flow, refresh).
    header, claims = verify_signature(provider, raw, from_token_endpoint=True)
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or _media_type(typ) == "logout+jwt"):
        # Cross-JWT confusion (Back-Channel Logout §4.1): a logout token is never an ID token.
        raise TokenValidationError("token is typed as another kind of JWT")
    _check_common(claims, issuer=issuer, client_id=provider.CLIENT_ID, now=now, leeway=leeway)
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 255:
        raise TokenValidationError("token has no valid sub")
    exp = _numeric_date(claims, "exp")
    if exp is None:
        raise TokenValidationError("token has no valid exp")
    if exp < now - leeway:
        raise ClockSkew("token has expired")
    if nonce is not None:
        got = claims.get("nonce")
        if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
            raise TokenValidationError("token nonce does not match")
    return claims


def _audiences(claims: Mapping[str, Any]) -> frozenset[str]:
    aud = claims.get("aud")
    members = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    # Only strings: a session stored before non-string members were refused must still compare, not crash.
    return frozenset(a for a in members if isinstance(a, str))


@sensitive_variables()
def validate_refreshed_id_token(
    provider: Provider, raw: str, original: Mapping[str, Any], *, now: float | None = None
) -> dict[str, Any]:
    """Validate an ID token from a refresh against the claims of the session's ID token (OIDC Core §12.2): the
    same `iss`, `sub`, `aud` and `azp` (none before → none now); a `nonce`, if the provider repeats one, the
    original nonce. No nonce is required.

    §12.2 also asks the provider for the original `auth_time`. Some give the user's latest sign-in anywhere instead
    (django-oauth-toolkit sends `user.last_login`: it moves when the same person signs in on another device). That
    says nothing about who the token is for, and ending the session for it would sign people out for signing in
    elsewhere: the session keeps its original `auth_time`, and a warning is logged."""
    claims = validate_id_token(provider, raw, nonce=None, now=now)
    if claims["iss"] != original.get("iss"):
        raise TokenValidationError("refreshed token issuer differs from the signed-in issuer")
    if not hmac.compare_digest(claims["sub"].encode(), str(original.get("sub", "")).encode()):
        raise SubjectChanged("refreshed token subject differs from the signed-in subject")
    if _audiences(claims) != _audiences(original):
        raise TokenValidationError("refreshed token audience differs from the original")
    if claims.get("azp") != original.get("azp"):
        raise TokenValidationError("refreshed token azp differs from the original")
    if "auth_time" in claims and "auth_time" in original and claims["auth_time"] != original["auth_time"]:
        logger.warning(
            "refreshed ID token auth_time differs from the original authentication (OIDC Core §12.2); the original "
            "is kept"
        )
        claims["auth_time"] = original["auth_time"]
    if "nonce" in claims and claims["nonce"] != original.get("nonce"):
        raise TokenValidationError("refreshed token nonce differs from the original")
    return claims


@sensitive_variables()
def validate_logout_token(provider: Provider, raw: str, *, now: float | None = None) -> dict[str, Any]:
    """Validate a back-channel logout token (OIDC Back-Channel Logout 1.0 §2.6) and return its claims."""
    now = time.time() if now is None else now
    leeway = int(oauth_settings.CLOCK_LEEWAY)
    header, claims = verify_signature(provider, raw)
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or _media_type(typ) not in LOGOUT_TOKEN_TYPES):
        raise TokenValidationError("logout token typ is not logout+jwt")
    _check_common(
        claims,
        issuer=discovery.get_metadata(provider)["issuer"],
        client_id=provider.CLIENT_ID,
        now=now,
        leeway=leeway,
    )
    # exp is validated when present. Back-Channel Logout 1.0 as approved (2022) has no exp; errata set 1 (2023)
    # made it REQUIRED. Certified providers send it; one that follows the 2022 text must still be able to log
    # people out, and the iat bound below limits such a token's life just as well.
    exp = _numeric_date(claims, "exp")
    if exp is not None and exp < now - leeway:
        raise TokenValidationError("logout token has expired")
    # Too old is too old even with a distant exp: this bounds how long a jti must be kept to refuse replays.
    if claims["iat"] < now - int(oauth_settings.LOGOUT_TOKEN_MAX_AGE) - leeway:
        raise TokenValidationError("logout token is too old")
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise TokenValidationError("logout token has no jti")
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_LOGOUT_EVENT), dict):
        raise TokenValidationError("logout token lacks the back-channel logout event")
    if "nonce" in claims:
        raise TokenValidationError("logout token must not contain a nonce")
    # sid and sub decide which sessions end: a malformed one must not be read as absent (that would widen a
    # logout of one session to every session of the subject).
    for name in ("sid", "sub"):
        if name in claims and not (isinstance(claims[name], str) and claims[name]):
            raise TokenValidationError(f"logout token {name} is malformed")
    if "sid" not in claims and "sub" not in claims:
        raise TokenValidationError("logout token has neither sid nor sub")
    return claims
