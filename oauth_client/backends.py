"""The authentication backend for people the provider vouched for.

The callback view signs people in with `django.contrib.auth.authenticate(request, id_token_claims=claims)`, so
Django's auth signals fire as for any backend (the argument's name has "token" in it, so Django masks the claims,
personal data, in what `user_login_failed` receivers get) (`user_logged_in`, and `user_login_failed` when a sign-in is
refused). User mapping is three small steps a project overrides in a subclass listed in AUTHENTICATION_BACKENDS:
`find_user` (by issuer and subject, never by email), `create_user` and `update_user`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.db import IntegrityError, router, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from oauth_client.conf import oauth_settings
from oauth_client.exceptions import UserRejected
from oauth_client.models import OAuthIdentity

# Where `authenticate` leaves a refusal's message for the callback to show (Django's `authenticate` turns the
# PermissionDenied into None and a `user_login_failed` signal).
REJECTION_ATTR = "oauth_user_rejected"


class OAuthBackend(ModelBackend):
    """Maps validated provider claims to a local user; never checks a password."""

    def authenticate(  # type: ignore[override]
        self, request: HttpRequest | None, id_token_claims: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        if id_token_claims is None:
            return None  # not a provider sign-in: other backends' credentials
        try:
            user = self.map_user(request, id_token_claims)
        except UserRejected as exc:
            if request is not None:
                setattr(request, REJECTION_ATTR, exc)
            raise
        return user

    def map_user(self, request: HttpRequest | None, claims: Mapping[str, Any]) -> Any:
        """The user for these claims (ID token claims merged with userinfo, ID token values winning). Raises
        `UserRejected` to refuse the sign-in with a message for the person."""
        if oauth_settings.USER_MAPPER:
            return oauth_settings.USER_MAPPER(request, claims)  # a project's function, as before the backend steps
        return self.user_for_claims(claims)

    def user_for_claims(self, claims: Mapping[str, Any]) -> Any:
        issuer, subject = str(claims["iss"]), str(claims["sub"])
        user = self.find_user(issuer, subject)
        if user is None:
            linked = self.link_user(issuer, subject, claims)
            user = self.link(linked, issuer, subject) if linked is not None else None
        if user is None:
            user = self.create_user(issuer, subject, claims)
        if not self.user_can_authenticate(user):
            raise UserRejected(_("This account is disabled."))
        OAuthIdentity.objects.filter(issuer=issuer, subject=subject).update(last_login_at=timezone.now())
        self.update_user(user, claims)
        return user

    def find_user(self, issuer: str, subject: str) -> Any:
        """The user linked to (issuer, subject), or None. The same email at two providers is two identities."""
        identity = OAuthIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
        return identity.user if identity is not None else None

    def link_user(self, issuer: str, subject: str, claims: Mapping[str, Any]) -> Any:
        """An existing user this new (issuer, subject) identity should sign in as, or None (the default: a new user).

        The one place to link several identities to one user — e.g. the same verified email at a second provider
        you trust for it. Nothing is ever merged by email unless a project overrides this on purpose; the link is
        recorded (OAuthIdentity), so later sign-ins find the user by (issuer, subject)."""
        return None

    def link(self, user: Any, issuer: str, subject: str) -> Any:
        """Record (issuer, subject) → user; returns the user the identity belongs to (the first link wins)."""
        identity, _created = OAuthIdentity.objects.get_or_create(
            issuer=issuer, subject=subject, defaults={"user": user}
        )
        return identity.user

    def create_user(self, issuer: str, subject: str, claims: Mapping[str, Any]) -> Any:
        """A new user (no usable password) linked to (issuer, subject), on first sign-in."""
        User = get_user_model()
        try:
            # Both rows or neither, wherever the router puts them.
            with (
                transaction.atomic(using=router.db_for_write(User)),
                transaction.atomic(using=router.db_for_write(OAuthIdentity)),
            ):
                user = User(**{User.USERNAME_FIELD: self.username_for(issuer, subject, claims)})
                user.set_unusable_password()
                user.save()
                OAuthIdentity.objects.create(user=user, issuer=issuer, subject=subject)
        except IntegrityError:
            # Two first sign-ins of the same person raced; the other one created the link.
            user = self.find_user(issuer, subject)
            if user is None:
                raise
        return user

    def username_for(self, issuer: str, subject: str, claims: Mapping[str, Any]) -> str:
        # Deterministic and unique per (iss, sub): preferred_username is neither stable nor unique across issuers.
        digest = hashlib.sha256(f"{issuer}\0{subject}".encode()).hexdigest()[:12]
        base = str(claims.get("preferred_username") or claims.get("email") or "user").split("@")[0]
        return f"{base[:100]}-{digest}"

    def update_user(self, user: Any, claims: Mapping[str, Any]) -> None:
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
