"""oauth_client: a confidential OpenID Connect client for Django with server-side, rotation-safe refresh tokens.

Public API (see docs/api.md):

    from oauth_client import get_tokens, get_access_token, api_session, provider_metadata
    from oauth_client import oauth_login_required, refresh_tokens, refresh_before, signed_in
    from oauth_client import OAuthLoginRequiredMixin, RefreshTokensMixin
    from oauth_client import OAuthClientError, ReauthenticationRequired, TokenRefreshUnavailable, TokenSet
    from oauth_client import UserRejected  # for USER_MAPPER hooks
    from oauth_client import SessionListView  # "your sessions" page, mount it where you like
    from oauth_client import signals
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oauth_client import signals
    from oauth_client.api import BearerAuth, api_session, get_access_token, get_tokens, provider_metadata
    from oauth_client.decorators import oauth_login_required, refresh_before, refresh_tokens, signed_in
    from oauth_client.exceptions import OAuthClientError, ReauthenticationRequired, TokenRefreshUnavailable
    from oauth_client.mixins import OAuthLoginRequiredMixin, RefreshTokensMixin
    from oauth_client.store import TokenSet
    from oauth_client.user_sessions import SessionListView
    from oauth_client.users import UserRejected

# Exports resolve lazily so that `import oauth_client` works before Django's app registry is ready.
_EXPORTS = {
    "get_tokens": "oauth_client.api",
    "get_access_token": "oauth_client.api",
    "api_session": "oauth_client.api",
    "BearerAuth": "oauth_client.api",
    "provider_metadata": "oauth_client.api",
    "oauth_login_required": "oauth_client.decorators",
    "refresh_tokens": "oauth_client.decorators",
    "refresh_before": "oauth_client.decorators",
    "signed_in": "oauth_client.decorators",
    "OAuthLoginRequiredMixin": "oauth_client.mixins",
    "RefreshTokensMixin": "oauth_client.mixins",
    "OAuthClientError": "oauth_client.exceptions",
    "ReauthenticationRequired": "oauth_client.exceptions",
    "TokenRefreshUnavailable": "oauth_client.exceptions",
    "TokenSet": "oauth_client.store",
    "UserRejected": "oauth_client.users",
    "signals": "oauth_client.signals",
    "SessionListView": "oauth_client.user_sessions",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name == "signals":
        return import_module("oauth_client.signals")
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'oauth_client' has no attribute {name!r}")
