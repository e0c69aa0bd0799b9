"""Settings for the demo site. Everything deployment-specific comes from the environment (see README)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from django.utils.translation import gettext_lazy as _

from project import dburl

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in ("1", "true", "yes", "on")


# Off unless asked for: a deployment that forgets the variable must not serve Django's technical pages.
# `make run` and the test suite (tests/settings.py) turn it on.
DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY and DEBUG:
    SECRET_KEY = "django-insecure-dev-only-key-change-me"  # noqa: S105 - development default only
# Frames that hold a token, a code or the client secret are marked sensitive; hide them on debug pages too.
DEFAULT_EXCEPTION_REPORTER_FILTER = "oauth_client.debug.SensitiveDataFilter"
# Without DEBUG and without DJANGO_SECRET_KEY, Django refuses to use the empty key ("The SECRET_KEY setting must
# not be empty") wherever one is needed: sessions, signing, token encryption.
# Rotating the secret key: the new one in DJANGO_SECRET_KEY, the old ones here (comma-separated, newest first).
# Sessions stay valid (Django re-signs them) and so do the stored tokens (encryption keys derive from all of them).
SECRET_KEY_FALLBACKS = [k.strip() for k in os.environ.get("DJANGO_SECRET_KEY_FALLBACKS", "").split(",") if k.strip()]
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "oauth_client",
    "accounts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "oauth_client.middleware.OAuthSessionMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "oauth_client.context_processors.providers",
            ],
        },
    },
]

if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dburl.parse(os.environ["DATABASE_URL"])}
else:
    DATABASES = {"default": dburl.sqlite_config(BASE_DIR / "db.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",  # staff passwords for /admin/
    "oauth_client.backends.OAuthBackend",
]
LOGIN_URL = "oauth_client:login"
LOGIN_REDIRECT_URL = "accounts:profile"

# Server-side sessions only: the refresh token must never travel to the browser.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"  # the provider's redirect back to /oauth/callback/ is a top-level GET
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_AGE = int(os.environ.get("DJANGO_SESSION_AGE", 14 * 24 * 3600))

# One process's memory by default; with REDIS_URL (redis://host:6379/db) every worker and host shares the
# discovery document, the JWKS and the JWKS refetch limit. The prefix keeps the site's keys apart from other
# users of the same Redis database.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if os.environ.get("REDIS_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["REDIS_URL"],
            "KEY_PREFIX": os.environ.get("REDIS_KEY_PREFIX", "oauthsite"),
        }
    }

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("fr-ca", _("French (Canada)"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
# The switcher's choice (set_language) outlives the browser session; `fr` and `fr-*` browsers get fr-ca.
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
LANGUAGE_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_SECURE = SESSION_COOKIE_SECURE
USE_I18N = True
TIME_ZONE = "UTC"
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []

# --- OpenID Connect client --------------------------------------------------------------------------------
# With no OIDC_ISSUER the site uses the embedded development provider (idp/, `make idp`), whose demo client
# credentials are written by `manage.py idp_setup` to .run/demo-client.json.
EMBEDDED_IDP_URL = os.environ.get("IDP_URL", "http://127.0.0.1:8001")
_demo_client_file = BASE_DIR / ".run" / "demo-client.json"
_demo_client: dict[str, str] = {}
if not os.environ.get("OIDC_ISSUER") and _demo_client_file.exists():
    _demo_client = json.loads(_demo_client_file.read_text())

OAUTH_CLIENT: dict[str, Any] = {
    "ISSUER": os.environ.get("OIDC_ISSUER", f"{EMBEDDED_IDP_URL}/o"),
    "CLIENT_ID": os.environ.get("OIDC_CLIENT_ID", _demo_client.get("client_id", "")),
    "CLIENT_SECRET": os.environ.get("OIDC_CLIENT_SECRET", _demo_client.get("client_secret", "")),
    "SCOPES": os.environ.get("OIDC_SCOPES", "openid profile email offline_access").split(),
    "AUDIENCE": os.environ.get("OIDC_AUDIENCE", ""),
    "EXTRA_AUTH_PARAMS": dict(parse_qsl(os.environ.get("OIDC_EXTRA_AUTH_PARAMS", ""))),
    "TOKEN_AUTH_METHOD": os.environ.get("OIDC_TOKEN_AUTH_METHOD", ""),
    # POST keeps the ID token out of URLs; GET for providers that only document GET (Auth0, Okta).
    "END_SESSION_METHOD": os.environ.get("OIDC_END_SESSION_METHOD", "POST"),
    # django-oauth-toolkit does not list its RFC 7009 endpoint in discovery.
    "REVOCATION_ENDPOINT": os.environ.get(
        "OIDC_REVOCATION_ENDPOINT",
        "" if os.environ.get("OIDC_ISSUER") else f"{EMBEDDED_IDP_URL}/o/revoke_token/",
    ),
}
# private_key_jwt, PAR and DPoP (docs/configuration.md, "High-security clients"): OIDC_CLIENT_KEY_FILE (PEM, from
# `manage.py oidc_client_key --out …`), OIDC_CLIENT_KEY_ID, OIDC_CLIENT_KEY_FILE_NEXT, OIDC_CLIENT_KEY_ID_NEXT,
# OIDC_CLIENT_KEY_ALGORITHM, OIDC_CLIENT_ASSERTION_AUDIENCE, OIDC_PAR (auto|on|off), OIDC_DPOP (on|off).
_HIGH_SECURITY_KEYS = (
    "CLIENT_KEY_FILE",
    "CLIENT_KEY_ID",
    "CLIENT_KEY_FILE_NEXT",
    "CLIENT_KEY_ID_NEXT",
    "CLIENT_KEY_ALGORITHM",
    "CLIENT_ASSERTION_AUDIENCE",
    "PAR",
    "DPOP",
)
for _key in _HIGH_SECURITY_KEYS:
    if os.environ.get(f"OIDC_{_key}", "").strip():
        OAUTH_CLIENT[_key] = os.environ[f"OIDC_{_key}"].strip()
if os.environ.get("OAUTH_ENCRYPTION_KEYS"):
    OAUTH_CLIENT["ENCRYPTION_KEYS"] = os.environ["OAUTH_ENCRYPTION_KEYS"].split(",")

# Several providers at once (docs/configuration.md, "Several providers"): OIDC_PROVIDERS="corp partner" and, for
# each NAME, OIDC_<NAME>_ISSUER, _CLIENT_ID and _CLIENT_SECRET, optionally _SCOPES, _AUDIENCE, _EXTRA_AUTH_PARAMS,
# _TOKEN_AUTH_METHOD, _END_SESSION_METHOD, _REVOCATION_ENDPOINT, _REDIRECT_URI, _POST_LOGOUT_REDIRECT_URI, _LABEL and
# the high-security keys above (_CLIENT_KEY_FILE, _PAR, _DPOP, …): environment names upper case, provider names
# lower case (/oauth/login/corp/). Without it, the variables above configure the one provider.
_provider_names = [name.lower() for name in os.environ.get("OIDC_PROVIDERS", "").split()]
if _provider_names:
    _single_keys = ("ISSUER", "CLIENT_ID", "CLIENT_SECRET", "SCOPES", "AUDIENCE", "EXTRA_AUTH_PARAMS") + (
        "TOKEN_AUTH_METHOD",
        "END_SESSION_METHOD",
        "REVOCATION_ENDPOINT",
        *_HIGH_SECURITY_KEYS,
    )
    OAUTH_CLIENT = {key: value for key, value in OAUTH_CLIENT.items() if key not in _single_keys}
    _providers: dict[str, dict[str, Any]] = {}
    OAUTH_CLIENT["PROVIDERS"] = _providers
    for _name in _provider_names:
        _prefix = f"OIDC_{_name.upper().replace('-', '_')}_"
        _entry: dict[str, Any] = {}
        for _key in (
            "ISSUER",
            "CLIENT_ID",
            "CLIENT_SECRET",
            "AUDIENCE",
            "TOKEN_AUTH_METHOD",
            "END_SESSION_METHOD",
            "REVOCATION_ENDPOINT",
            "REDIRECT_URI",
            "POST_LOGOUT_REDIRECT_URI",
            "LABEL",
            *_HIGH_SECURITY_KEYS,
        ):
            if os.environ.get(_prefix + _key, "").strip():
                _entry[_key] = os.environ[_prefix + _key].strip()
        if os.environ.get(_prefix + "SCOPES", "").strip():
            _entry["SCOPES"] = os.environ[_prefix + "SCOPES"].split()
        if os.environ.get(_prefix + "EXTRA_AUTH_PARAMS", "").strip():
            _entry["EXTRA_AUTH_PARAMS"] = dict(parse_qsl(os.environ[_prefix + "EXTRA_AUTH_PARAMS"]))
        _providers[_name] = _entry

# --- Behind a TLS-terminating reverse proxy (docs/deployment.md) ------------------------------------------------
# The header the proxy sets on https requests, as `HTTP_X_FORWARDED_PROTO=https` (or `X-Forwarded-Proto=https`).
# Only when the proxy always sets it (overwriting the client's) and the site is reachable through the proxy only.
_proxy_ssl_header = os.environ.get("DJANGO_SECURE_PROXY_SSL_HEADER", "").strip()
if _proxy_ssl_header:
    _header, _equals, _header_value = (part.strip() for part in _proxy_ssl_header.partition("="))
    if not _header or not _header_value:
        raise RuntimeError("DJANGO_SECURE_PROXY_SSL_HEADER must look like HTTP_X_FORWARDED_PROTO=https")
    _header = _header.upper().replace("-", "_")
    SECURE_PROXY_SSL_HEADER = (_header if _header.startswith("HTTP_") else f"HTTP_{_header}", _header_value)
# Origins (scheme://host[:port]) whose unsafe requests (the sign-out POST) pass the CSRF check besides the host
# the site sees: the public origin when the proxy does not forward Host or the scheme.
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]
# Sent on https responses only (so behind a proxy, with SECURE_PROXY_SSL_HEADER).
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_SECURE_HSTS_SECONDS", "0") or 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD")
# Exact URLs registered at the provider, instead of URLs built from each request's scheme and host.
for _variable, _setting in (
    ("OIDC_REDIRECT_URI", "REDIRECT_URI"),
    ("OIDC_POST_LOGOUT_REDIRECT_URI", "POST_LOGOUT_REDIRECT_URI"),
):
    if os.environ.get(_variable, "").strip() and not _provider_names:
        OAUTH_CLIENT[_setting] = os.environ[_variable].strip()

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "oauth_client": {"handlers": ["console"], "level": os.environ.get("OAUTH_LOG_LEVEL", "INFO")},
    },
}
