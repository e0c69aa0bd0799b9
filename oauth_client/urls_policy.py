"""Which provider URLs the client may use: https, or plain http to a loopback host (a provider on this machine,
in development and tests), or anything with DEBUG on."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

# Discovery metadata the client sends tokens, codes or the client secret to, or takes keys from.
PROVIDER_ENDPOINTS = (
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "revocation_endpoint",
    "end_session_endpoint",
)


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_secure_url(url: str) -> bool:
    """https, or http to a loopback host."""
    scheme = urlsplit(url).scheme
    return scheme == "https" or (scheme == "http" and is_loopback(url))


def insecure_endpoints(metadata: dict[str, Any]) -> list[str]:
    """The advertised endpoints the client must not use (plain http to another host) unless DEBUG is on."""
    if settings.DEBUG:
        return []
    return [
        name
        for name in PROVIDER_ENDPOINTS
        if isinstance(metadata.get(name), str) and metadata[name] and not is_secure_url(metadata[name])
    ]
