"""Provider metadata (OpenID Connect Discovery 1.0) and signing keys (JWKS), cached.

Both live in Django's cache (shared by every process) and in a small in-process memo, so a request with
fresh tokens never touches the network. The JWKS is refetched when a token names an unknown `kid`; for tokens
anyone can send us (logout tokens) at most once per JWKS_MIN_REFETCH_SECONDS, so a stream of forged `kid`s
cannot turn us into an amplifier. Tokens we fetched ourselves from the token endpoint are exempt: only the
provider chooses their `kid`, and a forged one must not stop the provider's new key from being picked up.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any

from django.core.cache import caches
from jwcrypto import jwk

from oauth_client import http
from oauth_client.conf import oauth_settings
from oauth_client.exceptions import ConfigurationError, InvalidResponse
from oauth_client.providers import Provider, registry
from oauth_client.urls_policy import insecure_endpoints

logger = logging.getLogger("oauth_client.discovery")

_memo: dict[str, tuple[float, Any]] = {}
_lock = threading.Lock()


def _cache_key(kind: str, provider: Provider) -> str:
    # Per issuer: two providers never share metadata or keys.
    digest = hashlib.sha256(provider.ISSUER.encode()).hexdigest()[:16]
    return f"oauth_client:{kind}:{digest}"


def _cache():  # type: ignore[no-untyped-def]
    return caches[oauth_settings.CACHE_ALIAS]


def clear_cache() -> None:
    with _lock:
        _memo.clear()
    try:
        providers = list(registry().values())
    except ConfigurationError:
        return
    keys = [_cache_key(kind, p) for p in providers for kind in ("metadata", "jwks", "jwks-refetch")]
    try:
        _cache().delete_many(keys)
    except Exception:  # noqa: BLE001, S110 - a cache outage must not break settings reloads
        pass


def _memo_get(key: str) -> Any:
    entry = _memo.get(key)
    if entry and entry[0] > time.monotonic():
        return entry[1]
    return None


def _memo_set(key: str, value: Any, ttl: float) -> None:
    with _lock:
        _memo[key] = (time.monotonic() + min(ttl, 300), value)


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def _fetch_metadata(provider: Provider) -> dict[str, Any]:
    issuer = provider.ISSUER
    if not issuer:
        raise ConfigurationError(f"the ISSUER of provider {provider.name!r} is not set")
    resp = http.request("GET", discovery_url(issuer), what="discovery", headers={"Accept": "application/json"})
    if resp.status != 200:
        raise InvalidResponse(f"discovery answered HTTP {resp.status}")
    data = resp.json()
    if not isinstance(data, dict):
        raise InvalidResponse("discovery document is not a JSON object")
    # OIDC Discovery §4.3: the advertised issuer must be the one we asked (a trailing slash aside).
    if str(data.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        raise ConfigurationError("discovery issuer does not match the configured issuer")
    for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(data.get(field), str):
            raise ConfigurationError(f"discovery document lacks {field}")
    # Tokens, codes and the client secret never go over plain http to another host, whatever discovery says.
    insecure = insecure_endpoints(data)
    if insecure:
        raise ConfigurationError(f"discovery advertises plain-http endpoints: {', '.join(insecure)}")
    return data


def cached_metadata(provider: Provider) -> dict[str, Any] | None:
    """The discovery document if it is cached (never fetches): for system checks, which must not use the network."""
    try:
        key = _cache_key("metadata", provider)
        data = _memo_get(key) or _cache().get(key)
    except Exception:  # noqa: BLE001 - a cache that is down (or a table not yet created) says nothing here
        return None
    return data if isinstance(data, dict) else None


def get_metadata(provider: Provider) -> dict[str, Any]:
    """The provider's discovery document, validated, with local overrides applied."""
    key = _cache_key("metadata", provider)
    data = _memo_get(key)
    if data is None:
        data = _cache().get(key)
        if data is None:
            data = _fetch_metadata(provider)
            _cache().set(key, data, oauth_settings.DISCOVERY_CACHE_SECONDS)
        _memo_set(key, data, oauth_settings.DISCOVERY_CACHE_SECONDS)
    if provider.REVOCATION_ENDPOINT:
        data = {**data, "revocation_endpoint": provider.REVOCATION_ENDPOINT}
    return data


def _fetch_jwks(provider: Provider) -> str:
    jwks_uri = get_metadata(provider)["jwks_uri"]
    resp = http.request("GET", jwks_uri, what="JWKS", headers={"Accept": "application/json"})
    if resp.status != 200:
        raise InvalidResponse(f"JWKS answered HTTP {resp.status}")
    try:
        keyset = jwk.JWKSet.from_json(resp.body)
    except Exception as exc:  # jwcrypto raises several types for malformed sets
        raise InvalidResponse("JWKS is not a valid key set") from exc
    return keyset.export(private_keys=False)


def get_jwks(provider: Provider) -> jwk.JWKSet:
    """The provider's public keys, from the memo or the shared cache, fetched when neither has them."""
    key = _cache_key("jwks", provider)
    raw = _memo_get(key) or _cache().get(key)
    if raw is None:
        raw = _fetch_jwks(provider)
        _cache().set(key, raw, oauth_settings.DISCOVERY_CACHE_SECONDS)
    _memo_set(key, raw, oauth_settings.DISCOVERY_CACHE_SECONDS)
    return jwk.JWKSet.from_json(raw)


def refetch_jwks(provider: Provider, *, rate_limited: bool = True) -> tuple[jwk.JWKSet, bool]:
    """The provider's keys again, for a token that names an unknown `kid`; returns (keys, fetched).

    With `rate_limited` (a token from an untrusted channel) the network is used only if no refetch happened in the
    last JWKS_MIN_REFETCH_SECONDS; otherwise the shared cache's keys come back (another process may have refetched)
    with `fetched=False`, and the caller cannot tell a forged `kid` from a key rotated moments ago."""
    key = _cache_key("jwks", provider)
    # cache.add is atomic across processes: only the first caller in the window refetches.
    first_in_window = _cache().add(_cache_key("jwks-refetch", provider), 1, oauth_settings.JWKS_MIN_REFETCH_SECONDS)
    if first_in_window or not rate_limited:
        raw = _fetch_jwks(provider)
        _cache().set(key, raw, oauth_settings.DISCOVERY_CACHE_SECONDS)
        _memo_set(key, raw, oauth_settings.DISCOVERY_CACHE_SECONDS)
        return jwk.JWKSet.from_json(raw), True
    logger.info("JWKS refetch skipped: last one was less than %ss ago", oauth_settings.JWKS_MIN_REFETCH_SECONDS)
    raw = _cache().get(key)
    if raw is None:
        return get_jwks(provider), False
    # Another process may have refetched: its keys replace this process's older memo.
    _memo_set(key, raw, oauth_settings.DISCOVERY_CACHE_SECONDS)
    return jwk.JWKSet.from_json(raw), False
