"""System checks (`manage.py check --tag oauth_client`): configurations that would leak tokens or cannot work.

IDs are stable (docs/diagnostics.md lists them all). "Production" means DEBUG is off. Loopback hosts
(127.0.0.1, ::1, localhost) may use http, as RFC 8252 allows: traffic to them never leaves the machine.

Checks of a provider's own settings run once per provider (`checked_providers`). With OAUTH_CLIENT["PROVIDERS"],
their messages name the provider (`OAUTH_CLIENT['PROVIDERS']['corp']['CLIENT_SECRET']`) and carry it as the
message's `obj` (`manage.py check` prints "corp: (oauth_client.W003) …"; `oidc_doctor` shows each provider its own);
with the flat single-provider settings they read as they always have.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from oauth_client import discovery, dpop, providers
from oauth_client import keys as client_keys
from oauth_client.client_auth import SUPPORTED_AUTH_METHODS
from oauth_client.conf import DEFAULTS, IMPORT_STRINGS, oauth_settings
from oauth_client.exceptions import ConfigurationError
from oauth_client.providers import Provider
from oauth_client.urls_policy import insecure_endpoints, is_secure_url

TAG = "oauth_client"

SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
AUTHENTICATION = "django.contrib.auth.middleware.AuthenticationMiddleware"
MESSAGES = "django.contrib.messages.middleware.MessageMiddleware"
OAUTH = "oauth_client.middleware.OAuthSessionMiddleware"


# --- Providers ------------------------------------------------------------------------------------------------


def is_named(provider: Provider) -> bool:
    """Whether `provider` comes from OAUTH_CLIENT["PROVIDERS"] (rather than the flat single-provider keys)."""
    return bool(oauth_settings.PROVIDERS) or provider.name != providers.DEFAULT


def setting_name(provider: Provider, key: str) -> str:
    """Where a provider's `key` is set: OAUTH_CLIENT['KEY'], or OAUTH_CLIENT['PROVIDERS']['name']['KEY']."""
    if is_named(provider):
        return f"OAUTH_CLIENT['PROVIDERS']['{provider.name}']['{key}']"
    return f"OAUTH_CLIENT['{key}']"


def env_name(provider: Provider, key: str) -> str:
    """The demo site's environment variable for a provider's `key` (project/settings.py): OIDC_KEY, or
    OIDC_<NAME>_KEY with OIDC_PROVIDERS."""
    if is_named(provider):
        return f"OIDC_{provider.name.upper().replace('-', '_')}_{key}"
    return f"OIDC_{key}"


def _of(provider: Provider) -> str:
    return f" of provider '{provider.name}'" if is_named(provider) else ""


def _obj(provider: Provider) -> Provider | None:
    # The flat single provider keeps obj None: `manage.py check` prints "?: (oauth_client.W003) …" as before.
    return provider if is_named(provider) else None


def provider_setting_problems() -> tuple[list[Provider], list[str]]:
    """The providers the per-provider checks look at, and what is wrong with OAUTH_CLIENT["PROVIDERS"]: an
    entry that cannot be used (a name that is not a slug, unknown keys, not a dict) is left out and described.
    Never raises: a bad setting is a check error (E016), not a crash of `manage.py check`."""
    configured = oauth_settings.PROVIDERS
    problems: list[str] = []
    found: list[Provider] = []
    if configured and not isinstance(configured, Mapping):
        return [], [
            f"OAUTH_CLIENT['PROVIDERS'] must be a dict of provider name to settings, not {type(configured).__name__}."
        ]
    for name, own in dict(configured or {}).items():
        if not isinstance(name, str) or not providers.NAME_RE.match(name):
            problems.append(
                f"The provider name {name!r} in OAUTH_CLIENT['PROVIDERS'] is not a lower-case slug (a-z, 0-9, - "
                "and _, starting with a letter or digit, at most 64 characters)."
            )
            continue
        if not isinstance(own, Mapping):
            problems.append(
                f"OAUTH_CLIENT['PROVIDERS']['{name}'] must be a dict of settings, not {type(own).__name__}."
            )
            continue
        unknown = sorted(str(key) for key in set(own) - set(providers.PROVIDER_KEYS))
        if unknown:
            shared = [key for key in unknown if key in DEFAULTS]
            text = f"OAUTH_CLIENT['PROVIDERS']['{name}'] has unknown key(s): {', '.join(unknown)}."
            if shared:
                text += f" {', '.join(shared)} {'is' if len(shared) == 1 else 'are'} shared by every provider."
            problems.append(text)
            continue
        found.append(Provider(name, dict(own)))
    if problems:
        return found, problems
    try:
        return list(providers.registry().values()), []
    except (ConfigurationError, TypeError, ValueError) as exc:
        return found, [f"OAUTH_CLIENT['PROVIDERS'] is invalid: {exc}."]


def checked_providers() -> list[Provider]:
    return provider_setting_problems()[0]


def _leads_to_own_callback(provider: Provider) -> bool:
    """Whether the provider's REDIRECT_URI reaches its own callback view (as the site's URLconf resolves the path;
    a site mounted under a prefix is given the benefit of the doubt)."""
    from django.urls import Resolver404, resolve

    path = urlsplit(str(provider.REDIRECT_URI)).path
    try:
        match = resolve(path)
    except Resolver404:
        return True  # e.g. a SCRIPT_NAME prefix the URLconf does not see
    if match.url_name != "callback" or "oauth_client" not in match.namespaces:
        return False
    named = match.kwargs.get("provider")
    if named is not None:
        return bool(named == provider.name)
    try:
        return providers.get(None).name == provider.name
    except (LookupError, ConfigurationError):
        return False


@register(TAG)
def check_providers_setting(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for problem in provider_setting_problems()[1]:
        messages.append(
            Error(
                problem,
                hint="OAUTH_CLIENT['PROVIDERS'] maps a name (used in URLs: /oauth/login/<name>/) to that provider's "
                f"own settings ({', '.join(providers.PROVIDER_KEYS)}); everything else is shared and stays at the "
                "top level of OAUTH_CLIENT. See docs/configuration.md.",
                id="oauth_client.E016",
            )
        )
    found = checked_providers()
    by_uri: dict[str, list[str]] = {}
    for provider in found:
        if provider.REDIRECT_URI:
            by_uri.setdefault(str(provider.REDIRECT_URI), []).append(provider.name)
    for uri, names in by_uri.items():
        if len(names) > 1:
            messages.append(
                Error(
                    f"The providers {', '.join(repr(n) for n in names)} share the redirect URI {uri!r}.",
                    hint="Each provider needs its own redirect URI (its callback, /oauth/callback/<name>/): an "
                    "authorization response is accepted only at the callback of the provider it came from "
                    "(mix-up defence, RFC 9700 section 4.4). Leave REDIRECT_URI empty to build it from requests.",
                    id="oauth_client.E017",
                )
            )
    for provider in found:
        if provider.REDIRECT_URI and not _leads_to_own_callback(provider):
            messages.append(
                Warning(
                    f"The REDIRECT_URI of provider {provider.name!r}, {provider.REDIRECT_URI!r}, is not its own "
                    "callback: every answer arriving there will be refused as meant for another provider.",
                    hint="Point it at that provider's callback (/oauth/callback/<name>/, or /oauth/callback/ for the "
                    "provider named 'default' or a site's only provider), or leave it empty.",
                    id="oauth_client.W018",
                )
            )
    if oauth_settings.PROVIDERS:
        user_settings = oauth_settings.user_settings
        ignored = [key for key in providers.PROVIDER_KEYS if key in user_settings]
        if ignored:
            messages.append(
                Warning(
                    f"OAUTH_CLIENT['PROVIDERS'] is set, so the top-level OAUTH_CLIENT key(s) {', '.join(ignored)} "
                    "are ignored.",
                    hint="Each provider reads these from its own entry in OAUTH_CLIENT['PROVIDERS']: move them "
                    "there (or remove them).",
                    id="oauth_client.W017",
                )
            )
    return messages


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
    for provider in checked_providers():
        if is_named(provider):
            hint = (
                f"Set {env_name(provider, 'ISSUER')}, {env_name(provider, 'CLIENT_ID')} and "
                f"{env_name(provider, 'CLIENT_SECRET')} (the client registered at provider '{provider.name}')."
            )
        else:
            hint = (
                "Set OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET (or run `make run` for the embedded "
                "development provider)."
            )
        for number, name in enumerate(("ISSUER", "CLIENT_ID", "CLIENT_SECRET"), start=1):
            if name == "CLIENT_SECRET" and uses_private_key_jwt(provider):
                continue  # the client key stands in for it (E021 checks the key)
            if not getattr(provider, name):
                messages.append(
                    Warning(
                        f"{setting_name(provider, name)} is not set.",
                        hint=hint,
                        obj=_obj(provider),
                        id=f"oauth_client.W00{number}",
                    )
                )
    return messages


@register(TAG, deploy=True)
def check_client_settings_deploy(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for provider in checked_providers():
        keys = ("ISSUER", "CLIENT_ID", "CLIENT_SECRET")
        missing = [
            name
            for name in keys
            if not getattr(provider, name) and not (name == "CLIENT_SECRET" and uses_private_key_jwt(provider))
        ]
        if not missing:
            continue
        if is_named(provider):
            text = (
                f"OAUTH_CLIENT['PROVIDERS']['{provider.name}'] is missing {', '.join(missing)}: nobody can sign in "
                "with this provider."
            )
        else:
            text = f"OAUTH_CLIENT is missing {', '.join(missing)}: nobody can sign in."
        messages.append(
            Error(
                text,
                hint=f"Set {', '.join(env_name(provider, k) for k in keys[:2])} and {env_name(provider, keys[2])}.",
                obj=_obj(provider),
                id="oauth_client.E020",
            )
        )
    return messages


def uses_private_key_jwt(provider: Provider) -> bool:
    """Whether the provider's client authenticates with its key: private_key_jwt, set or (with no method set)
    chosen because CLIENT_KEY_FILE is."""
    method = provider.TOKEN_AUTH_METHOD
    return method == "private_key_jwt" or (not method and bool(provider.CLIENT_KEY_FILE))


@register(TAG)
def check_high_security(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """private_key_jwt keys that load, PAR and DPOP values, and (from cached discovery only) what the provider
    offers for them."""
    messages: list[CheckMessage] = []
    for provider in checked_providers():
        if uses_private_key_jwt(provider) and not provider.CLIENT_KEY_FILE:
            messages.append(
                Error(
                    f"{setting_name(provider, 'TOKEN_AUTH_METHOD')} is private_key_jwt, but "
                    f"{setting_name(provider, 'CLIENT_KEY_FILE')} is not set.",
                    hint=f"Create a key with `manage.py oidc_client_key --out PATH` and set "
                    f"{env_name(provider, 'CLIENT_KEY_FILE')} to PATH.",
                    obj=_obj(provider),
                    id="oauth_client.E021",
                )
            )
        for key in ("CLIENT_KEY_FILE", "CLIENT_KEY_FILE_NEXT"):
            if getattr(provider, key):
                try:
                    loaded = client_keys.load(str(getattr(provider, key)))
                    if key == "CLIENT_KEY_FILE" and provider.CLIENT_KEY_ALGORITHM:
                        loaded.algorithm(None, str(provider.CLIENT_KEY_ALGORITHM))
                except ConfigurationError as exc:
                    messages.append(
                        Error(
                            f"{setting_name(provider, key)}: {exc}.",
                            hint="A PEM private key, RSA (2048 bits or more) or EC P-256/P-384/P-521, readable by "
                            "the site (`manage.py oidc_client_key --out PATH` makes one), and a CLIENT_KEY_ALGORITHM "
                            "it can sign (or none).",
                            obj=_obj(provider),
                            id="oauth_client.E021",
                        )
                    )
        for key, allowed in (("PAR", ("auto", "on", "off")), ("DPOP", ("on", "off"))):
            value = getattr(provider, key)
            if not (isinstance(value, bool | str) and dpop.switch(value) in allowed):
                messages.append(
                    Error(
                        f"{setting_name(provider, key)} is {value!r}; it must be one of {', '.join(allowed)}.",
                        obj=_obj(provider),
                        id="oauth_client.E022",
                    )
                )
        messages.extend(_offered(provider))
    messages.extend(_key_id_clashes())
    return messages


def _key_id_clashes() -> list[CheckMessage]:
    """E023: one `kid` for two different keys (CLIENT_KEY_ID set twice alike): /oauth/jwks.json could publish only
    one of them, and the provider could not tell them apart."""
    seen: dict[str, str] = {}
    clashes = set()
    for provider in checked_providers():
        for path, kid in (
            (provider.CLIENT_KEY_FILE, provider.CLIENT_KEY_ID),
            (provider.CLIENT_KEY_FILE_NEXT, provider.CLIENT_KEY_ID_NEXT),
        ):
            if not path:
                continue
            try:
                key = client_keys.load(str(path), str(kid or ""))
            except ConfigurationError:
                continue  # E021 says so
            thumbprint = key.key.thumbprint()
            if seen.setdefault(key.kid, thumbprint) != thumbprint:
                clashes.add(key.kid)
    return [
        Error(
            f"The key id {kid!r} is given to two different client keys.",
            hint="Give each key its own CLIENT_KEY_ID (or leave it empty: the key's thumbprint is then its id).",
            id="oauth_client.E023",
        )
        for kid in sorted(clashes)
    ]


def _offered(provider: Provider) -> list[CheckMessage]:
    """W019: what the settings ask and the provider's (cached) discovery document does not offer."""
    metadata = discovery.cached_metadata(provider)
    if metadata is None:
        return []
    missing = []
    # Only where the key is the one way in: with no method set and a secret too, the secret is used instead.
    key_only = provider.TOKEN_AUTH_METHOD == "private_key_jwt" or (
        uses_private_key_jwt(provider) and not provider.CLIENT_SECRET
    )
    if key_only and "private_key_jwt" not in (metadata.get("token_endpoint_auth_methods_supported") or []):
        missing.append("private_key_jwt in token_endpoint_auth_methods_supported")
    if dpop.switch(provider.PAR) == "on" and not metadata.get("pushed_authorization_request_endpoint"):
        missing.append("a pushed_authorization_request_endpoint")
    if dpop.enabled(provider) and "ES256" not in (metadata.get("dpop_signing_alg_values_supported") or []):
        missing.append("ES256 in dpop_signing_alg_values_supported")
    found = []
    if missing:
        found.append(f"The provider{_of(provider)} does not advertise {' or '.join(missing)}.")
    # RFC 9126 §5: such a provider refuses every authorization request that was not pushed.
    if dpop.switch(provider.PAR) == "off" and metadata.get("require_pushed_authorization_requests") is True:
        found.append(f"The provider{_of(provider)} requires pushed authorization requests, and PAR is off.")
    return [
        Warning(
            text,
            hint="Sign-in or refresh will fail with these settings: check the provider's configuration, or the "
            "settings (run `manage.py oidc_doctor`).",
            obj=_obj(provider),
            id="oauth_client.W019",
        )
        for text in found
    ]


def _requests_offline_access(provider: Provider) -> bool:
    if "offline_access" in provider.SCOPES:
        return True
    # Google's recipe: refresh tokens come from access_type=offline, and it has no offline_access scope.
    return str(dict(provider.EXTRA_AUTH_PARAMS).get("access_type", "")) == "offline"


@register(TAG)
def check_offline_access(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    return [
        Warning(
            f"'offline_access' is not in {setting_name(provider, 'SCOPES')}: most providers then issue no refresh "
            "token, and sessions end when the access token expires.",
            hint=f"Add offline_access to {env_name(provider, 'SCOPES')} (Auth0, Keycloak, Okta, Entra ID), or for "
            f"Google set {env_name(provider, 'EXTRA_AUTH_PARAMS')}='access_type=offline&prompt=consent'. See "
            "docs/providers.md.",
            obj=_obj(provider),
            id="oauth_client.W004",
        )
        for provider in checked_providers()
        if not _requests_offline_access(provider)
    ]


@register(Tags.security, TAG)
def check_https(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG:
        return []
    messages: list[CheckMessage] = []
    for provider in checked_providers():
        messages += _https(provider)
    return messages


def _https(provider: Provider) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    issuer = provider.ISSUER
    if issuer and not is_secure_url(issuer):
        messages.append(
            Error(
                f"The issuer {issuer!r}{_of(provider)} is not an https URL.",
                hint="Tokens, codes and the client secret would cross the network in clear text. Use the "
                "provider's https issuer (http is allowed only for loopback hosts, or with DEBUG on).",
                obj=_obj(provider),
                id="oauth_client.E002",
            )
        )
    for name in ("REDIRECT_URI", "POST_LOGOUT_REDIRECT_URI", "REVOCATION_ENDPOINT"):
        url = getattr(provider, name)
        if url and not is_secure_url(url):
            messages.append(
                Error(
                    f"{setting_name(provider, name)} {url!r} is not an https URL.",
                    hint="Use https (http is allowed only for loopback hosts, or with DEBUG on).",
                    obj=_obj(provider),
                    id="oauth_client.E003",
                )
            )
    # The provider's own endpoints, as far as they are known without a network call (cached discovery); the
    # client refuses them at run time as well.
    metadata = discovery.cached_metadata(provider) if issuer else None
    for name in insecure_endpoints(metadata or {}):
        url = (metadata or {})[name]
        if is_named(provider):
            text = f"The {name} {url!r} of provider '{provider.name}' (cached discovery) is not an https URL."
        else:
            text = f"The provider's {name} {url!r} (cached discovery) is not an https URL."
        messages.append(
            Error(
                text,
                hint="The client will not send tokens, codes or the client secret there. Fix the provider's "
                "configuration (its public URL / proxy headers), or use its https issuer.",
                obj=_obj(provider),
                id="oauth_client.E013",
            )
        )
    return messages


@register(Tags.security, TAG, deploy=True)
def check_redirect_uri_scheme(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG or getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        return []
    return [
        Warning(
            f"The redirect URI{_of(provider)} is built from each request, and SECURE_PROXY_SSL_HEADER is not set.",
            hint="Behind a proxy that terminates TLS, Django sees http and sends an http redirect_uri. Set "
            f"SECURE_PROXY_SSL_HEADER, or {setting_name(provider, 'REDIRECT_URI')} to the exact https callback URL.",
            obj=_obj(provider),
            id="oauth_client.W005",
        )
        for provider in checked_providers()
        if not provider.REDIRECT_URI
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
    for provider in checked_providers():
        method = provider.TOKEN_AUTH_METHOD
        if method and method not in SUPPORTED_AUTH_METHODS:
            messages.append(
                Error(
                    f"{setting_name(provider, 'TOKEN_AUTH_METHOD')} {method!r} is not supported.",
                    hint="Use client_secret_basic, client_secret_post or private_key_jwt, or leave it empty to use "
                    "what the provider advertises.",
                    obj=_obj(provider),
                    id="oauth_client.E008",
                )
            )
        if str(provider.END_SESSION_METHOD).upper() not in ("GET", "POST"):
            messages.append(
                Error(
                    f"{setting_name(provider, 'END_SESSION_METHOD')} must be 'GET' or 'POST'.",
                    obj=_obj(provider),
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
