"""The client's own signing keys, for `private_key_jwt` (RFC 7523 §2.2, OIDC Core §9).

A provider's CLIENT_KEY_FILE is a PEM private key (RSA of 2048 bits or more, or EC P-256/P-384/P-521) that never
leaves the server; CLIENT_KEY_FILE_NEXT, during a rotation, is the key that will replace it: published at
/oauth/jwks.json beside the current one, so a provider that caches the client's keys already knows it on the day
it starts signing. Keys are read from disk once per file version (path and modification time).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jwcrypto import jwk

from oauth_client.exceptions import ConfigurationError
from oauth_client.providers import Provider

logger = logging.getLogger("oauth_client.keys")

# JWS algorithms by key (RFC 7518 §3.1): an EC key's curve fixes its algorithm; an RSA key signs PS256 where the
# provider takes it (FAPI 2.0 allows no RS256), else RS256 — or what CLIENT_KEY_ALGORITHM says, for a client whose
# registration pins one (token_endpoint_auth_signing_alg).
EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
RSA_ALGORITHMS = ("PS256", "RS256", "PS384", "RS384", "PS512", "RS512")
MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class ClientKey:
    """A loaded private key, its key id (CLIENT_KEY_ID, or the RFC 7638 thumbprint) and the file it came from."""

    key: jwk.JWK
    kid: str
    path: str

    def __repr__(self) -> str:  # never the key material
        return f"ClientKey(kid={self.kid!r}, path={self.path!r})"

    def algorithms(self) -> tuple[str, ...]:
        if self.key.get("kty") == "EC":
            return (EC_ALGORITHMS[str(self.key.get("crv"))],)
        return RSA_ALGORITHMS

    def algorithm(self, advertised: Iterable[str] | None = None, chosen: str = "") -> str:
        """The algorithm to sign with: `chosen` (CLIENT_KEY_ALGORITHM), or the first one this key can use that the
        provider advertises (`token_endpoint_auth_signing_alg_values_supported`); absent, the key's first."""
        mine = self.algorithms()
        if chosen:
            if chosen not in mine:
                raise ConfigurationError(f"key {self.kid!r} cannot sign {chosen!r} (it can sign {', '.join(mine)})")
            return chosen
        if advertised is None:
            # Nothing advertised: what every provider takes (RS256 for RSA; an EC key's one algorithm).
            return "RS256" if self.key.get("kty") == "RSA" else mine[0]
        offered = set(advertised)
        for alg in mine:
            if alg in offered:
                return alg
        raise ConfigurationError(
            f"the provider accepts none of {', '.join(mine)} for client assertions (key {self.kid!r})"
        )

    def public_jwk(self) -> dict[str, Any]:
        """The public key as a JWK, for the provider. An RSA key carries no `alg`: it may sign RS256 or PS256, and a
        provider that finds one `alg` on it refuses the other."""
        public = {**self.key.export_public(as_dict=True), "kid": self.kid, "use": "sig"}
        if self.key.get("kty") == "EC":
            public["alg"] = self.algorithms()[0]
        return public


_cache: dict[tuple[str, str, float], ClientKey] = {}
_lock = threading.Lock()


def load(path: str, kid: str = "") -> ClientKey:
    """The private key in the PEM file at `path`. Raises `ConfigurationError` (naming the file, never its content)
    when it cannot be read, is not a private key, or is of an unsupported kind."""
    try:
        mtime = os.stat(path).st_mtime
    except OSError as exc:
        raise ConfigurationError(f"client key file {path!r} cannot be read ({exc.strerror})") from None
    cache_key = (path, kid, mtime)
    with _lock:
        cached = _cache.get(cache_key)
    if cached is not None:
        return cached
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"client key file {path!r} cannot be read ({exc.strerror})") from None
    try:
        key = jwk.JWK.from_pem(data)
    except Exception:  # noqa: BLE001 - cryptography raises several types for what is not a PEM key
        raise ConfigurationError(f"client key file {path!r} is not a PEM private key") from None
    if not key.has_private:
        raise ConfigurationError(f"client key file {path!r} holds a public key: the private key is needed")
    kty = key.get("kty")
    if kty == "EC":
        if key.get("crv") not in EC_ALGORITHMS:
            raise ConfigurationError(f"client key file {path!r}: unsupported curve {key.get('crv')!r}")
    elif kty == "RSA":
        bits = key.get_op_key("sign").key_size
        if bits < MIN_RSA_BITS:
            raise ConfigurationError(f"client key file {path!r}: an RSA key of {bits} bits is too short")
    else:
        raise ConfigurationError(f"client key file {path!r}: unsupported key type {kty!r} (RSA or EC)")
    loaded = ClientKey(key=key, kid=kid or key.thumbprint(), path=path)
    with _lock:
        _cache[cache_key] = loaded
    return loaded


def signing_key(provider: Provider) -> ClientKey:
    """The key that signs this provider's client assertions (CLIENT_KEY_FILE)."""
    if not provider.CLIENT_KEY_FILE:
        raise ConfigurationError(f"provider {provider.name!r}: private_key_jwt needs CLIENT_KEY_FILE")
    return load(str(provider.CLIENT_KEY_FILE), str(provider.CLIENT_KEY_ID or ""))


def next_key(provider: Provider) -> ClientKey | None:
    """The key a rotation will move to (CLIENT_KEY_FILE_NEXT): published, not used to sign."""
    if not provider.CLIENT_KEY_FILE_NEXT:
        return None
    return load(str(provider.CLIENT_KEY_FILE_NEXT), str(provider.CLIENT_KEY_ID_NEXT or ""))


def published_keys(providers: Iterable[Provider], failures: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The public JWK Set (RFC 7517 §5) of every configured client key, current and next, each once. A key that does
    not load is left out (logged, and named in `failures`; check E021 names it too): the others stay published."""
    keys: dict[str, dict[str, Any]] = {}
    for provider in providers:
        for name in ("CLIENT_KEY_FILE", "CLIENT_KEY_FILE_NEXT"):
            if not getattr(provider, name):
                continue
            try:
                key = signing_key(provider) if name == "CLIENT_KEY_FILE" else next_key(provider)
            except ConfigurationError as exc:
                logger.error("client key not published (provider %r, %s): %s", provider.name, name, exc)
                if failures is not None:
                    failures.append(f"{provider.name}: {name}")
                continue
            if key is not None:
                # The same key configured for two providers is published once (check E023 refuses one kid for two
                # different keys).
                keys.setdefault(key.kid, key.public_jwk())
    return {"keys": list(keys.values())}


def generate(kind: str = "ec") -> jwk.JWK:
    """A new private key: EC P-256 ("ec", the default: small and fast) or RSA 3072 ("rsa")."""
    if kind == "ec":
        return jwk.JWK.generate(kty="EC", crv="P-256")
    if kind == "rsa":
        return jwk.JWK.generate(kty="RSA", size=3072)
    raise ValueError(f"unknown key kind {kind!r} (ec or rsa)")


def clear_cache() -> None:
    with _lock:
        _cache.clear()
