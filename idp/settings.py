"""Settings of the embedded development OpenID Connect provider. Everything comes from IDP_* variables."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from idp.keys import load_or_create_private_key, read_private_keys

BASE_DIR = Path(__file__).resolve().parent.parent
IDP_DIR = BASE_DIR / "idp"


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in ("1", "true", "yes", "on")


def env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer") from exc


DEBUG = env_bool("IDP_DEBUG", True)
SECRET_KEY = os.environ.get("IDP_SECRET_KEY") or "idp-insecure-development-only-key"  # noqa: S105

IDP_ISSUER = os.environ.get("IDP_ISSUER", "http://127.0.0.1:8001/o").rstrip("/")
_issuer_host = urlsplit(IDP_ISSUER).hostname
if not _issuer_host:
    raise ImproperlyConfigured(f"IDP_ISSUER is not an absolute URL: {IDP_ISSUER!r}")
ALLOWED_HOSTS = list(dict.fromkeys(["127.0.0.1", "localhost", _issuer_host]))

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.admin",
    "oauth2_provider",
    "idp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # LocaleMiddleware that honours the relying party's `ui_locales`.
    "idp.middleware.UiLocalesMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "idp.urls"
WSGI_APPLICATION = "idp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Listed explicitly so these templates win over oauth2_provider's and admin's app templates.
        "DIRS": [IDP_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("IDP_DATABASE_PATH") or str(BASE_DIR / "idp.sqlite3"),
        # IMMEDIATE takes the write lock when a transaction starts, so concurrent token requests
        # queue (up to `timeout` seconds) instead of failing with "database is locked".
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "idp.hashers.ClientSecretHasher",
]
if os.environ.get("IDP_FAST_PASSWORD_HASHING") == "1":
    # Test suites only (tests/provider.py): every sign-in checks the demo password, and PBKDF2's
    # deliberate ~0.5 s per check would dominate the suite's run time.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", "idp.hashers.ClientSecretHasher"]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "idp-home"

# Site and provider share a host (different ports) and browsers do not isolate cookies by port.
SESSION_COOKIE_NAME = "idp_sessionid"
CSRF_COOKIE_NAME = "idp_csrftoken"
LANGUAGE_COOKIE_NAME = "idp_language"
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600  # remembered across browser restarts
LANGUAGE_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("fr-ca", _("French (Canada)"))]
LOCALE_PATHS = [IDP_DIR / "locale"]
USE_I18N = True
TIME_ZONE = "UTC"
USE_TZ = True

STATIC_URL = "static/"

# The signing key lives outside git (idp/.keys/ is ignored) and is created on first start.
IDP_KEY_FILE = Path(os.environ.get("IDP_KEY_FILE") or IDP_DIR / ".keys" / "oidc.pem")
_old_key_files = [Path(p.strip()) for p in os.environ.get("IDP_OLD_KEY_FILES", "").split(",") if p.strip()]
try:
    _inactive_keys = read_private_keys(_old_key_files)
except OSError as exc:
    raise ImproperlyConfigured(f"IDP_OLD_KEY_FILES: cannot read {exc.filename}") from exc

OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_ISS_ENDPOINT": IDP_ISSUER,
    "OIDC_RSA_PRIVATE_KEY": load_or_create_private_key(IDP_KEY_FILE),
    # Retired keys stay in the JWKS (verification only) so tokens they signed remain checkable.
    "OIDC_RSA_PRIVATE_KEYS_INACTIVE": _inactive_keys,
    "OAUTH2_VALIDATOR_CLASS": "idp.validators.IdpOAuth2Validator",
    "SCOPES": {
        "openid": _("Sign you in with your account"),
        "profile": _("See your name and username"),
        "email": _("See your email address"),
        "offline_access": _("Keep you signed in when you are not using the application"),
    },
    "DEFAULT_SCOPES": ["openid"],
    "PKCE_REQUIRED": True,
    "ROTATE_REFRESH_TOKEN": True,
    # Reusing a rotated refresh token revokes its whole family, as Auth0 does.
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "ACCESS_TOKEN_EXPIRE_SECONDS": env_int("IDP_ACCESS_TOKEN_SECONDS", 120),
    "ID_TOKEN_EXPIRE_SECONDS": env_int("IDP_ID_TOKEN_SECONDS", 120),
    "REFRESH_TOKEN_EXPIRE_SECONDS": env_int("IDP_REFRESH_TOKEN_SECONDS", 30 * 24 * 3600),
    "OIDC_RP_INITIATED_LOGOUT_ENABLED": True,
    "OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT": False,
    # http is needed for the loopback development site. (ALLOWED_SCHEMES only governs CORS
    # `allowed_origins`, which no client here uses; an http issuer needs nothing else in DOT 3.4.1.)
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"],
    "CLIENT_SECRET_HASHER": "idp_client_secret_pbkdf2_sha256",
    # RFC 9700 gates that only reject what a well-behaved confidential client never sends, so the
    # client under test is held to the stricter behaviour of real providers (S256-only PKCE, ...).
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    # RFC 9207: the authorization response carries `iss` (advertised in discovery).
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "OIDC_RESPONSE_TYPES_SUPPORTED": ["code"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        # DEBUG explains "Mismatching redirect URI" and failed client authentication.
        "oauth2_provider": {"level": os.environ.get("IDP_LOG_LEVEL", "INFO").upper()},
    },
}
