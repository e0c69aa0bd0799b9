"""Mapping provider claims to local users. Replace with OAUTH_CLIENT['USER_MAPPER'] = "dotted.path".

A mapper is called as `mapper(request, claims)` with the ID token claims merged with userinfo (ID token
values win) and returns a user, or raises `UserRejected` to refuse the sign-in with a message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from oauth_client.exceptions import OAuthClientError
from oauth_client.models import OAuthIdentity


class UserRejected(OAuthClientError):
    """Raised by a user mapper to refuse a sign-in; the message is shown to the person."""


def _username_for(claims: Mapping[str, Any]) -> str:
    # Deterministic and unique per (iss, sub): preferred_username is neither stable nor unique across issuers.
    digest = hashlib.sha256(f"{claims['iss']}\0{claims['sub']}".encode()).hexdigest()[:12]
    base = str(claims.get("preferred_username") or claims.get("email") or "user").split("@")[0]
    return f"{base[:100]}-{digest}"


def update_user_from_claims(user: Any, claims: Mapping[str, Any]) -> None:
    """Copy name and email from the claims onto the user, for the fields the user model has."""
    field_names = {f.name for f in user._meta.get_fields()}
    values = {
        "email": claims.get("email"),
        "first_name": claims.get("given_name"),
        "last_name": claims.get("family_name"),
    }
    changed = []
    for name, value in values.items():
        if name in field_names and isinstance(value, str) and getattr(user, name) != value:
            max_length = user._meta.get_field(name).max_length
            setattr(user, name, value[:max_length] if max_length else value)
            changed.append(name)
    if changed:
        user.save(update_fields=changed)


def default_user_mapper(request: HttpRequest, claims: Mapping[str, Any]) -> Any:
    """Find the user linked to (iss, sub), or create one on first sign-in; refresh name and email."""
    issuer, subject = str(claims["iss"]), str(claims["sub"])
    User = get_user_model()
    identity = OAuthIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
    if identity is None:
        try:
            with transaction.atomic():
                user = User(**{User.USERNAME_FIELD: _username_for(claims)})
                user.set_unusable_password()
                user.save()
                identity = OAuthIdentity.objects.create(user=user, issuer=issuer, subject=subject)
        except IntegrityError:
            # Two first sign-ins of the same person raced; the other one created the link.
            identity = OAuthIdentity.objects.select_related("user").get(issuer=issuer, subject=subject)
    user = identity.user
    if not user.is_active:
        raise UserRejected(_("This account is disabled."))
    OAuthIdentity.objects.filter(pk=identity.pk).update(last_login_at=timezone.now())
    update_user_from_claims(user, claims)
    return user
