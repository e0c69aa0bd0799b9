"""System checks (`manage.py check`): configurations that would leak tokens or cannot work."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from oauth_client.conf import oauth_settings


@register(Tags.security)
def check_session_engine(app_configs: Any, **kwargs: Any) -> list[Error]:
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


@register()
def check_client_settings(app_configs: Any, **kwargs: Any) -> list[Warning]:
    # Warnings, not errors: `migrate` must work before the client is registered at the provider.
    errors = []
    for name in ("ISSUER", "CLIENT_ID", "CLIENT_SECRET"):
        if not getattr(oauth_settings, name):
            errors.append(
                Warning(
                    f"OAUTH_CLIENT['{name}'] is not set.",
                    hint="Set OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET (or run `make run` for the "
                    "embedded development provider).",
                    id=f"oauth_client.W00{1 + ('ISSUER', 'CLIENT_ID', 'CLIENT_SECRET').index(name)}",
                )
            )
    return errors
