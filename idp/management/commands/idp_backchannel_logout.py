"""Send an OpenID Connect Back-Channel Logout token to a relying party, as a real provider would.

django-oauth-toolkit cannot send back-channel logout itself (feature request #1545), so this command signs a
logout token with the provider's own OIDC key (same `kid` as in its JWKS) and POSTs it::

    DJANGO_SETTINGS_MODULE=idp.settings python manage.py idp_backchannel_logout \\
        --username demo --client-id demo-site --uri http://127.0.0.1:8000/oauth/backchannel-logout/
"""

from __future__ import annotations

import json
import secrets
import time
from argparse import ArgumentParser
from typing import Any

import requests
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from jwcrypto import jwt
from oauth2_provider.models import get_application_model
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.utils import jwk_from_pem

# The relying party's own constant: one spelling of the event URI for both sides (Back-Channel Logout 1.0 §2.4).
from oauth_client.validation import BACKCHANNEL_LOGOUT_EVENT


def logout_token(
    *, private_pem: str, issuer: str, client_id: str, sub: str | None, sid: str | None, lifetime: int = 120
) -> str:
    """A logout token (Back-Channel Logout 1.0 §2.4), RS256-signed, `kid` = the key's JWK thumbprint (as DOT)."""
    key = jwk_from_pem(private_pem)
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": client_id,
        "iat": now,
        "exp": now + lifetime,
        "jti": secrets.token_urlsafe(24),
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    if sub:
        claims["sub"] = sub
    if sid:
        claims["sid"] = sid
    header = {"alg": "RS256", "typ": "logout+jwt", "kid": key.thumbprint()}
    token = jwt.JWT(header=header, claims=claims)
    token.make_signed_token(key)
    return str(token.serialize())


class Command(BaseCommand):
    help = "Sign a back-channel logout token for a user (by sub) and/or a provider session (sid) and POST it."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--username", help="the user whose sessions end (sends sub = the user's id)")
        parser.add_argument("--sid", help="the provider session id to end (DOT issues none; for testing)")
        parser.add_argument("--client-id", default="demo-site", help="the relying party (token audience)")
        parser.add_argument("--uri", required=True, help="the relying party's backchannel_logout_uri")
        parser.add_argument("--timeout", type=float, default=10.0)

    def handle(self, *args: Any, **options: Any) -> None:
        username, sid = options["username"], options["sid"]
        if not username and not sid:
            raise CommandError("give --username, --sid, or both")
        sub = None
        if username:
            user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
            if user is None:
                raise CommandError(f"no user {username!r}")
            sub = str(user.pk)  # DOT's `sub` claim
        client_id = options["client_id"]
        if not get_application_model().objects.filter(client_id=client_id).exists():
            raise CommandError(f"no client {client_id!r}")
        if not oauth2_settings.OIDC_RSA_PRIVATE_KEY:
            raise CommandError("OIDC_RSA_PRIVATE_KEY is not set")
        token = logout_token(
            private_pem=oauth2_settings.OIDC_RSA_PRIVATE_KEY,
            issuer=oauth2_settings.OIDC_ISS_ENDPOINT,
            client_id=client_id,
            sub=sub,
            sid=sid,
        )
        try:
            resp = requests.post(
                options["uri"],
                data={"logout_token": token},
                headers={"Accept": "application/json"},
                timeout=options["timeout"],
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise CommandError(f"could not reach {options['uri']}: {type(exc).__name__}") from None
        body = resp.text[:500]
        try:
            body = json.dumps(resp.json())
        except ValueError:
            pass
        if resp.status_code != 200:
            raise CommandError(f"the relying party answered HTTP {resp.status_code}: {body}")
        self.stdout.write(f"HTTP {resp.status_code}: {body}")
