"""Settings for oauth_client, with every default in one place (modelled on django-oauth-toolkit's
`oauth2_settings`). Read them as `oauth_settings.NAME`; a project overrides them in `settings.OAUTH_CLIENT`."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

DEFAULTS: dict[str, Any] = {
    # Provider and client registration.
    "ISSUER": "",
    "CLIENT_ID": "",
    "CLIENT_SECRET": "",
    "SCOPES": ["openid", "profile", "email", "offline_access"],
    "AUDIENCE": "",
    "EXTRA_AUTH_PARAMS": {},
    # client_secret_basic, client_secret_post or private_key_jwt; "" = the best one the provider advertises that
    # this site has credentials for (private_key_jwt when CLIENT_KEY_FILE is set).
    "TOKEN_AUTH_METHOD": "",
    # private_key_jwt (oauth_client.keys): a PEM private key file (RSA or EC), never committed; its key id ("" = its
    # RFC 7638 thumbprint). CLIENT_KEY_FILE_NEXT: the next key during a rotation, published at /oauth/jwks.json but
    # not used to sign until it becomes CLIENT_KEY_FILE.
    "CLIENT_KEY_FILE": "",
    "CLIENT_KEY_ID": "",
    "CLIENT_KEY_FILE_NEXT": "",
    "CLIENT_KEY_ID_NEXT": "",
    # The assertion's JWS algorithm, for a registration that pins one; "" = ES256/ES384/ES512 by the EC key's curve,
    # or for RSA PS256 where the provider takes it, else RS256.
    "CLIENT_KEY_ALGORITHM": "",
    # The client assertion's `aud`: "issuer" (RFC 9126 §2, FAPI 2.0), "token_endpoint", or an absolute URL.
    "CLIENT_ASSERTION_AUDIENCE": "issuer",
    # Pushed authorization requests (RFC 9126): "auto" = when the provider advertises its endpoint; "on" = always
    # (sign-in fails clearly without the endpoint); "off" = never.
    "PAR": "auto",
    # DPoP (RFC 9449): "on" binds each session's access tokens to a key pair of its own; "off" = Bearer tokens.
    "DPOP": "off",
    # Absolute URL; "" = built from the request (reverse("oauth_client:callback")).
    "REDIRECT_URI": "",
    # Where the provider sends the browser after RP-initiated logout; "" = the site's root URL.
    "POST_LOGOUT_REDIRECT_URI": "",
    # Overrides for endpoints a provider does not advertise in discovery (DOT omits revocation).
    "REVOCATION_ENDPOINT": "",
    "SEND_UI_LOCALES": True,
    # How to send the browser to end_session_endpoint: "POST" keeps the id_token_hint out of URLs;
    # "GET" for providers that only accept a query string.
    "END_SESSION_METHOD": "POST",
    "FETCH_USERINFO": True,
    # Shown on the "Sign in with …" button; "" = the provider's name.
    "LABEL": "",
    # Several providers at once: {"name": {per-provider keys above}, ...} (oauth_client.providers). Empty = one
    # provider named "default", configured by the keys above.
    "PROVIDERS": {},
    # Token validation.
    "ALLOWED_ALGORITHMS": [
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
    ],
    "CLOCK_LEEWAY": 60,
    # Back-channel logout tokens issued longer ago than this are refused (whatever their exp), which also
    # bounds how long their jti must be remembered to refuse replays.
    "LOGOUT_TOKEN_MAX_AGE": 600,
    # Discovery and JWKS cache.
    "DISCOVERY_CACHE_SECONDS": 3600,
    "JWKS_MIN_REFETCH_SECONDS": 60,
    "CACHE_ALIAS": "default",
    # HTTP: (connect, read) timeouts per socket operation; a hard deadline per attempt (connect, headers and
    # body together, however slowly they come); transient failures are retried within a total time budget.
    "HTTP_TIMEOUT": (3.05, 5.0),
    "HTTP_DEADLINE": 5.0,
    "HTTP_RETRIES": 2,
    "HTTP_RETRY_BUDGET": 8.0,
    "HTTP_MAX_RESPONSE_BYTES": 512 * 1024,
    # Sign-in attempts (state, nonce, PKCE verifier) kept per session.
    "LOGIN_ATTEMPT_SECONDS": 600,
    "MAX_LOGIN_ATTEMPTS": 5,
    # Refresh: refresh when the access or ID token expires within REFRESH_LEEWAY seconds, or within a quarter
    # of the tokens' lifetime if that is less (models.refresh_margin); on a transient provider failure keep
    # serving non-sensitive requests for REFRESH_GRACE seconds past expiry.
    "REFRESH_LEEWAY": 60,
    "REFRESH_GRACE": 300,
    # Longest wait for another request's refresh of the same session (row lock), in seconds.
    "LOCK_TIMEOUT": 10,
    # Throttle for the "last seen" timestamp written on the token record.
    "LAST_SEEN_INTERVAL": 300,
    # Most sessions one run of the admin's "end sessions" action ends (each is a revocation call).
    "ADMIN_END_LIMIT": 100,
    # Fernet keys for tokens at rest, newest first; empty = one key derived from SECRET_KEY.
    "ENCRYPTION_KEYS": [],
    # Extension hooks (dotted paths).
    # The token store class (oauth_client.store.TokenStore or a subclass).
    "TOKEN_STORE_CLASS": "oauth_client.store.TokenStore",
    # A function (request, claims) -> user that replaces OAuthBackend's user mapping; "" = the backend's methods.
    "USER_MAPPER": "",
    "ERROR_VIEW": "oauth_client.views.error_view",
    "LOGIN_REDIRECT": "oauth_client.views.default_login_redirect",
}

IMPORT_STRINGS = ("TOKEN_STORE_CLASS", "USER_MAPPER", "ERROR_VIEW", "LOGIN_REDIRECT")


class OAuthClientSettings:
    """Attribute access to `settings.OAUTH_CLIENT` with defaults; dotted-path hooks are imported lazily."""

    def __init__(self, defaults: dict[str, Any] | None = None) -> None:
        self.defaults = defaults or DEFAULTS
        self._cached: dict[str, Any] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        return getattr(settings, "OAUTH_CLIENT", {}) or {}

    def __getattr__(self, name: str) -> Any:
        if name not in self.defaults:
            raise AttributeError(f"Invalid oauth_client setting: {name!r}")
        if name in self._cached:
            return self._cached[name]
        value = self.user_settings.get(name, self.defaults[name])
        if name in IMPORT_STRINGS and isinstance(value, str) and value:
            value = import_string(value)
        self._cached[name] = value
        return value

    def reload(self) -> None:
        self._cached.clear()


oauth_settings = OAuthClientSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "OAUTH_CLIENT":
        oauth_settings.reload()
        from oauth_client import discovery, providers

        providers.reset()
        discovery.clear_cache()


setting_changed.connect(_reload)
