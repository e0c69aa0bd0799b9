"""System checks (`manage.py check --tag oauth_client`): configurations that would leak tokens or cannot work.

IDs are stable (docs/diagnostics.md lists them all). "Production" means DEBUG is off. Loopback hosts
(127.0.0.1, ::1, localhost) may use http, as RFC 8252 allows: traffic to them never leaves the machine.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from oauth_client import discovery
from oauth_client.conf import DEFAULTS, IMPORT_STRINGS, oauth_settings
from oauth_client.urls_policy import insecure_endpoints, is_secure_url

TAG = "oauth_client"

SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
AUTHENTICATION = "django.contrib.auth.middleware.AuthenticationMiddleware"
MESSAGES = "django.contrib.messages.middleware.MessageMiddleware"
OAUTH = "oauth_client.middleware.OAuthSessionMiddleware"


@register(Tags.security, TAG)
def check_session_engine(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    if settings.SESSION_ENGINE == "django.contrib.sessions.backends.signed_cookies":
        return [
            Error(
                "The signed-cookie session engine stores the session in the browser.",
                hint="Use a server-side engine (db, cache or cached_db): "
                "the refresh token must never leave the server.",
                id="oauth_client.E001",
            )
        ]
    return []


@register(TAG)
def check_client_settings(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    # Warnings, not errors: `migrate` must work before the client is registered at the provider
    # (`make run` migrates first, then creates the demo client). `check --deploy` makes them errors (E020).
    messages: list[CheckMessage] = []
    for number, name in enumerate(("ISSUER", "CLIENT_ID", "CLIENT_SECRET"), start=1):
        if not getattr(oauth_settings, name):
            messages.append(
                Warning(
                    f"OAUTH_CLIENT['{name}'] is not set.",
                    hint="Set OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET (or run `make run` for the "
                    "embedded development provider).",
                    id=f"oauth_client.W00{number}",
                )
            )
    return messages


@register(TAG, deploy=True)
def check_client_settings_deploy(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    missing = [name for name in ("ISSUER", "CLIENT_ID", "CLIENT_SECRET") if not getattr(oauth_settings, name)]
    if not missing:
        return []
    return [
        Error(
            f"OAUTH_CLIENT is missing {', '.join(missing)}: nobody can sign in.",
            hint="Set OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET.",
            id="oauth_client.E020",
        )
    ]


def _requests_offline_access() -> bool:
    if "offline_access" in oauth_settings.SCOPES:
        return True
    # Google's recipe: refresh tokens come from access_type=offline, and it has no offline_access scope.
    return str(dict(oauth_settings.EXTRA_AUTH_PARAMS).get("access_type", "")) == "offline"


@register(TAG)
def check_offline_access(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    if _requests_offline_access():
        return []
    return [
        Warning(
            "'offline_access' is not in OAUTH_CLIENT['SCOPES']: most providers then issue no refresh token, "
            "and sessions end when the access token expires.",
            hint="Add offline_access to OIDC_SCOPES (Auth0, Keycloak, Okta, Entra ID), or for Google set "
            "OIDC_EXTRA_AUTH_PARAMS='access_type=offline&prompt=consent'. See docs/providers.md.",
            id="oauth_client.W004",
        )
    ]


@register(Tags.security, TAG)
def check_https(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG:
        return []
    messages: list[CheckMessage] = []
    issuer = oauth_settings.ISSUER
    if issuer and not is_secure_url(issuer):
        messages.append(
            Error(
                f"The issuer {issuer!r} is not an https URL.",
                hint="Tokens, codes and the client secret would cross the network in clear text. Use the "
                "provider's https issuer (http is allowed only for loopback hosts, or with DEBUG on).",
                id="oauth_client.E002",
            )
        )
    for name in ("REDIRECT_URI", "POST_LOGOUT_REDIRECT_URI", "REVOCATION_ENDPOINT"):
        url = getattr(oauth_settings, name)
        if url and not is_secure_url(url):
            messages.append(
                Error(
                    f"OAUTH_CLIENT['{name}'] {url!r} is not an https URL.",
                    hint="Use https (http is allowed only for loopback hosts, or with DEBUG on).",
                    id="oauth_client.E003",
                )
            )
    # The provider's own endpoints, as far as they are known without a network call (cached discovery); the
    # client refuses them at run time as well.
    metadata = discovery.cached_metadata()
    for name in insecure_endpoints(metadata or {}):
        messages.append(
            Error(
                f"The provider's {name} {(metadata or {})[name]!r} (cached discovery) is not an https URL.",
                hint="The client will not send tokens, codes or the client secret there. Fix the provider's "
                "configuration (its public URL / proxy headers), or use its https issuer.",
                id="oauth_client.E013",
            )
        )
    return messages


@register(Tags.security, TAG, deploy=True)
def check_redirect_uri_scheme(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG or oauth_settings.REDIRECT_URI or getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        return []
    return [
        Warning(
            "The redirect URI is built from each request, and SECURE_PROXY_SSL_HEADER is not set.",
            hint="Behind a proxy that terminates TLS, Django sees http and sends an http redirect_uri. Set "
            "SECURE_PROXY_SSL_HEADER, or OAUTH_CLIENT['REDIRECT_URI'] to the exact https callback URL.",
            id="oauth_client.W005",
        )
    ]


def _position(middleware: list[str], wanted: str) -> int | None:
    """Index of `wanted` or of a subclass of it in MIDDLEWARE (like the admin's middleware check)."""
    try:
        wanted_class = import_string(wanted)
    except ImportError:
        wanted_class = None
    for index, path in enumerate(middleware):
        if path == wanted:
            return index
        try:
            candidate = import_string(path)
        except ImportError:
            continue
        if wanted_class is not None and isinstance(candidate, type) and issubclass(candidate, wanted_class):
            return index
    return None


@register(TAG)
def check_middleware(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    middleware = list(settings.MIDDLEWARE)
    ours = _position(middleware, OAUTH)
    session = _position(middleware, SESSION)
    authentication = _position(middleware, AUTHENTICATION)
    message_mw = _position(middleware, MESSAGES)
    messages: list[CheckMessage] = []
    if session is None:
        messages.append(
            Error(
                f"'{SESSION}' is not in MIDDLEWARE.",
                hint="oauth_client keeps the link to the server-side token record in the Django session.",
                id="oauth_client.E004",
            )
        )
    if ours is None:
        messages.append(
            Error(
                f"'{OAUTH}' is not in MIDDLEWARE.",
                hint="Without it tokens are not refreshed transparently and sessions ended at the provider or by "
                "an administrator stay signed in. Add it after AuthenticationMiddleware and MessageMiddleware.",
                id="oauth_client.E005",
            )
        )
        return messages
    if authentication is None or authentication > ours:
        messages.append(
            Error(
                f"'{OAUTH}' must come after '{AUTHENTICATION}' in MIDDLEWARE.",
                hint="It reads request.user, which AuthenticationMiddleware sets.",
                id="oauth_client.E006",
            )
        )
    if message_mw is not None and message_mw > ours:
        messages.append(
            Error(
                f"'{OAUTH}' must come after '{MESSAGES}' in MIDDLEWARE.",
                hint="Otherwise 'your session has expired' messages are silently lost.",
                id="oauth_client.E007",
            )
        )
    elif message_mw is None:
        messages.append(
            Warning(
                f"'{MESSAGES}' is not in MIDDLEWARE.",
                hint="People will not be told why they were signed out.",
                id="oauth_client.W009",
            )
        )
    return messages


@register(TAG)
def check_authentication_backend(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    from oauth_client.backends import OAuthBackend

    backend = "oauth_client.backends.OAuthBackend"
    for path in settings.AUTHENTICATION_BACKENDS:
        try:
            found = import_string(path)
        except ImportError:
            continue  # Django's own check reports it
        if isinstance(found, type) and issubclass(found, OAuthBackend):
            return []  # the backend, or a project's subclass of it (its own user mapping)
    return [
        Error(
            f"'{backend}' (or a subclass) is not in AUTHENTICATION_BACKENDS.",
            hint="Django reloads a signed-in user through the backend that signed them in: without it, people "
            "signed in through the provider are anonymous again on their next request.",
            id="oauth_client.E012",
        )
    ]


@register(Tags.security, TAG)
def check_secret_key(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """Sessions and (without ENCRYPTION_KEYS) the token encryption keys derive from SECRET_KEY: a site started
    without one would fail at its first sign-in, so say so at start-up."""
    try:
        empty = not settings.SECRET_KEY
    except ImproperlyConfigured:
        empty = True
    if not empty:
        return []
    return [
        Error(
            "SECRET_KEY is empty: sessions cannot be signed and stored tokens cannot be encrypted.",
            hint="Set DJANGO_SECRET_KEY (DJANGO_DEBUG is off by default, and only debug mode has a development key).",
            id="oauth_client.E015",
        )
    ]


@register(Tags.security, TAG)
def check_production_settings(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG:
        return []
    messages: list[CheckMessage] = []
    if not oauth_settings.ENCRYPTION_KEYS:
        messages.append(
            Warning(
                "Tokens at rest are encrypted with a key derived from SECRET_KEY.",
                hint="Set OAUTH_CLIENT['ENCRYPTION_KEYS'] (env OAUTH_ENCRYPTION_KEYS) to a Fernet key of its own, so "
                "rotating SECRET_KEY does not sign everybody out and a leaked SECRET_KEY does not expose tokens. "
                'Generate one with: python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())"',
                id="oauth_client.W006",
            )
        )
    if not settings.SESSION_COOKIE_SECURE:
        messages.append(
            Warning(
                "SESSION_COOKIE_SECURE is off.",
                hint="The session cookie is the key to the server-side tokens: send it over https only "
                "(DJANGO_SECURE_COOKIES=1).",
                id="oauth_client.W007",
            )
        )
    if not settings.SESSION_COOKIE_HTTPONLY:
        messages.append(
            Warning(
                "SESSION_COOKIE_HTTPONLY is off.",
                hint="Scripts (and any injected script) could read the session cookie. Turn it on.",
                id="oauth_client.W008",
            )
        )
    return messages


@register(TAG)
def check_setting_values(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    user_settings = getattr(settings, "OAUTH_CLIENT", {}) or {}
    unknown = sorted(set(user_settings) - set(DEFAULTS))
    if unknown:
        messages.append(
            Warning(
                f"Unknown OAUTH_CLIENT setting(s): {', '.join(unknown)}.",
                hint="Check the spelling against docs/configuration.md; unknown keys are ignored.",
                id="oauth_client.W010",
            )
        )
    method = oauth_settings.TOKEN_AUTH_METHOD
    if method and method not in ("client_secret_basic", "client_secret_post"):
        messages.append(
            Error(
                f"OAUTH_CLIENT['TOKEN_AUTH_METHOD'] {method!r} is not supported.",
                hint="Use client_secret_basic or client_secret_post, or leave it empty to use what the provider "
                "advertises.",
                id="oauth_client.E008",
            )
        )
    if str(oauth_settings.END_SESSION_METHOD).upper() not in ("GET", "POST"):
        messages.append(
            Error(
                "OAUTH_CLIENT['END_SESSION_METHOD'] must be 'GET' or 'POST'.",
                id="oauth_client.E009",
            )
        )
    for key in oauth_settings.ENCRYPTION_KEYS:
        try:
            Fernet(key)
        except (ValueError, TypeError):
            messages.append(
                Error(
                    "An OAUTH_CLIENT['ENCRYPTION_KEYS'] entry is not a valid Fernet key.",
                    hint="Each key is 32 url-safe base64-encoded bytes (Fernet.generate_key()).",
                    id="oauth_client.E010",
                )
            )
            break
    for name in IMPORT_STRINGS:
        value = user_settings.get(name, DEFAULTS[name])
        if isinstance(value, str):
            if not value:
                continue  # an optional hook left unset
            try:
                import_string(value)
            except ImportError as exc:
                messages.append(
                    Error(
                        f"OAUTH_CLIENT['{name}'] {value!r} cannot be imported: {exc}",
                        hint=f"Point {name} at a callable, as a dotted path (see docs/api.md, extension hooks).",
                        id="oauth_client.E011",
                    )
                )
        elif not callable(value):
            messages.append(Error(f"OAUTH_CLIENT['{name}'] is not callable.", id="oauth_client.E011"))
    return messages


@register(TAG)
def check_sqlite_transaction_mode(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """On SQLite, `select_for_update()` is a no-op: the refresh lock is SQLite's write lock, taken at BEGIN only in
    IMMEDIATE mode. In the default DEFERRED mode two requests both read the old refresh token and both present it."""
    from django.db import connections, router

    from oauth_client.models import OAuthSession

    alias = router.db_for_write(OAuthSession)
    if connections[alias].vendor != "sqlite":
        return []
    mode = str(settings.DATABASES[alias].get("OPTIONS", {}).get("transaction_mode", "")).upper()
    if mode == "IMMEDIATE":
        return []
    return [
        Error(
            f"The SQLite database {alias!r} holding the token records does not use transaction_mode IMMEDIATE: "
            "concurrent requests of one session could refresh twice (and a rotating provider would revoke the "
            "whole token family).",
            hint=f'Set DATABASES[{alias!r}]["OPTIONS"]["transaction_mode"] = "IMMEDIATE" (Django 5.1+), or use '
            "PostgreSQL.",
            id="oauth_client.E014",
        )
    ]


@register(TAG)
def check_sqlite_atomic_requests(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """A refresh inside a view's transaction runs in its own connection and transaction (TokenStore.refresh), so
    the view's rollback cannot undo it, except on SQLite: the view's transaction may hold SQLite's one write lock,
    so the refresh has to join it, and a view that then fails rolls back the rotated refresh token too."""
    from django.db import connections, router

    from oauth_client.models import OAuthSession

    alias = router.db_for_write(OAuthSession)
    if connections[alias].vendor != "sqlite" or not settings.DATABASES[alias].get("ATOMIC_REQUESTS"):
        return []
    return [
        Warning(
            f"ATOMIC_REQUESTS is on for the SQLite database {alias!r} holding the token records: a token refresh "
            "made inside a view (get_tokens, api_session) is rolled back with a view that fails.",
            hint="Use PostgreSQL, or turn ATOMIC_REQUESTS off for this database. Refreshes made by the middleware "
            "and by @refresh_tokens / RefreshTokensMixin run before the view's transaction and are not affected.",
            id="oauth_client.W016",
        )
    ]
