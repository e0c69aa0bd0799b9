"""The identity providers the site signs people in with: one (the flat settings, named "default") or several
(OAUTH_CLIENT["PROVIDERS"]). Each has its own issuer, client credentials, scopes, audience and logout; the shared
keys (leeways, timeouts, encryption keys, hooks) stay at the top level of OAUTH_CLIENT.

Everything that talks to a provider takes a `Provider`: discovery and JWKS are cached per issuer, token records
remember their provider's name, and a sign-in attempt is bound to the provider it started at (mix-up defence,
RFC 9700 §4.4).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from oauth_client.conf import DEFAULTS, oauth_settings
from oauth_client.exceptions import ConfigurationError, ProviderNotConfigured

DEFAULT = "default"

# The settings each provider has for itself; every other key is shared (read from the top level).
PROVIDER_KEYS = (
    "ISSUER",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "SCOPES",
    "AUDIENCE",
    "EXTRA_AUTH_PARAMS",
    "TOKEN_AUTH_METHOD",
    "CLIENT_KEY_FILE",
    "CLIENT_KEY_ID",
    "CLIENT_KEY_FILE_NEXT",
    "CLIENT_KEY_ID_NEXT",
    "CLIENT_KEY_ALGORITHM",
    "CLIENT_ASSERTION_AUDIENCE",
    "PAR",
    "DPOP",
    "REDIRECT_URI",
    "POST_LOGOUT_REDIRECT_URI",
    "REVOCATION_ENDPOINT",
    "SEND_UI_LOCALES",
    "END_SESSION_METHOD",
    "FETCH_USERINFO",
    "ALLOWED_ALGORITHMS",
    "LABEL",
)

# Provider names appear in URLs (/oauth/login/<name>/) and on token records.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Provider:
    """One configured provider: its own keys (`PROVIDER_KEYS`), the shared ones from `oauth_settings`."""

    name: str
    own: Mapping[str, Any] = field(repr=False)

    def __getattr__(self, key: str) -> Any:
        if key in PROVIDER_KEYS:
            return self.own.get(key, DEFAULTS[key])
        return getattr(oauth_settings, key)

    @property
    def label(self) -> str:
        return str(self.own.get("LABEL") or self.name.replace("-", " ").replace("_", " ").title())

    def __str__(self) -> str:
        return self.name


_registry: dict[str, Provider] | None = None


def _build() -> dict[str, Provider]:
    configured = oauth_settings.PROVIDERS
    if not configured:
        flat = {key: oauth_settings.user_settings[key] for key in PROVIDER_KEYS if key in oauth_settings.user_settings}
        return {DEFAULT: Provider(DEFAULT, flat)}
    if not isinstance(configured, Mapping):
        raise ConfigurationError("OAUTH_CLIENT['PROVIDERS'] must be a dict of provider name → settings")
    registry = {}
    for name, own in configured.items():
        if not isinstance(own, Mapping):
            raise ConfigurationError(f"provider {name!r}: its settings must be a dict")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ConfigurationError(f"provider name {name!r} is not a lower-case slug (a-z, 0-9, - and _)")
        unknown = set(own) - set(PROVIDER_KEYS)
        if unknown:
            raise ConfigurationError(f"provider {name!r}: unknown keys {', '.join(sorted(unknown))}")
        registry[name] = Provider(name, dict(own))
    return registry


def registry() -> dict[str, Provider]:
    """Every configured provider by name, in configuration order."""
    global _registry
    if _registry is None:
        _registry = _build()
    return _registry


def get(name: str | None = None) -> Provider:
    """The provider `name`; None means the only one (or the one named "default"). Raises `LookupError`."""
    providers = registry()
    if name is None:
        if len(providers) == 1:
            return next(iter(providers.values()))
        name = DEFAULT
    try:
        return providers[name]
    except KeyError:
        raise LookupError(f"no provider named {name!r}") from None


def several() -> bool:
    return len(registry()) > 1


def _same_issuer(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def for_record(record: Any) -> Provider:
    """The provider a token record came from: the one of its name, if that still has the record's issuer; else the
    only provider with the record's issuer (a provider renamed in settings). Tokens are never sent to another issuer,
    and never guessed between two clients of one issuer. Raises `ProviderNotConfigured`."""
    providers = registry()
    named = providers.get(record.provider)
    if named is not None and _same_issuer(named.ISSUER, record.issuer):
        return named
    same_issuer = [p for p in providers.values() if _same_issuer(p.ISSUER, record.issuer)]
    if named is None and len(same_issuer) == 1:
        return same_issuer[0]
    raise ProviderNotConfigured(f"the provider {record.provider!r} of this session is no longer configured")


def serves(provider: Provider, record_provider: str) -> bool:
    """Whether records named `record_provider` (with this provider's issuer) belong to `provider` (for_record's rule,
    for queries: its own name, or an unconfigured name when it is the only provider of its issuer)."""
    if record_provider == provider.name:
        return True
    providers = registry()
    return record_provider not in providers and [
        p for p in providers.values() if _same_issuer(p.ISSUER, provider.ISSUER)
    ] == [provider]


def reset() -> None:
    """Forget the registry (settings changed: conf's setting_changed receiver calls this)."""
    global _registry
    _registry = None
