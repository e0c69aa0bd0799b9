"""oauth_client: a confidential OpenID Connect client for Django with server-side, rotation-safe refresh tokens.

The public API is documented in docs/api.md. `_EXPORTS` below is its one list: `__all__` and the lazy
`__getattr__` come from it, and tests/test_public_api.py checks that the `TYPE_CHECKING` imports (which static
type checkers need) and docs/api.md name exactly the same exports.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oauth_client import signals
    from oauth_client.api import (
        AsyncBearerAuth,
        BearerAuth,
        aget_access_token,
        aget_tokens,
        api_session,
        asession_provider_metadata,
        async_api_client,
        authorization_headers,
        get_access_token,
        get_tokens,
        provider_metadata,
        session_provider_metadata,
    )
    from oauth_client.decorators import (
        arefresh_before,
        asigned_in,
        oauth_login_required,
        refresh_before,
        refresh_tokens,
        signed_in,
    )
    from oauth_client.exceptions import (
        OAuthClientError,
        ReauthenticationRequired,
        TokenRefreshUnavailable,
        UserRejected,
    )
    from oauth_client.mixins import OAuthLoginRequiredMixin, RefreshTokensMixin
    from oauth_client.store import TokenSet
    from oauth_client.user_sessions import SessionListView

# Each public name and the module that defines it (a submodule exports itself). Exports resolve lazily so that
# `import oauth_client` works before Django's app registry is ready.
_EXPORTS = {
    "get_tokens": "oauth_client.api",
    "get_access_token": "oauth_client.api",
    "api_session": "oauth_client.api",
    "BearerAuth": "oauth_client.api",
    "provider_metadata": "oauth_client.api",
    "aget_tokens": "oauth_client.api",
    "asigned_in": "oauth_client.decorators",
    "arefresh_before": "oauth_client.decorators",
    "aget_access_token": "oauth_client.api",
    "asession_provider_metadata": "oauth_client.api",
    "AsyncBearerAuth": "oauth_client.api",
    "async_api_client": "oauth_client.api",
    "authorization_headers": "oauth_client.api",
    "session_provider_metadata": "oauth_client.api",
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
    "UserRejected": "oauth_client.exceptions",
    "signals": "oauth_client.signals",
    "SessionListView": "oauth_client.user_sessions",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'oauth_client' has no attribute {name!r}")
    module = import_module(_EXPORTS[name])
    return module if module.__name__ == f"{__name__}.{name}" else getattr(module, name)
