"""One authoritative token record per signed-in browser session, plus the (issuer, subject) → user link.

Tokens live here, encrypted, and not in the session dict: two concurrent requests each save their own copy
of the session dict, and a stale copy would write back a rotated-out refresh token. The session dict holds
only this record's id (which survives session key cycling).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from oauth_client.crypto import EncryptedTextField


class OAuthIdentity(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oauth_identities")
    issuer = models.CharField(_("issuer"), max_length=255)
    subject = models.CharField(_("subject"), max_length=255)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    last_login_at = models.DateTimeField(_("last sign-in"), default=timezone.now)

    class Meta:
        verbose_name = _("provider identity")
        verbose_name_plural = _("provider identities")
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="oauth_identity_iss_sub")]

    def __str__(self) -> str:
        return f"{self.subject} @ {self.issuer}"


class OAuthSessionQuerySet(models.QuerySet["OAuthSession"]):
    def active(self) -> OAuthSessionQuerySet:
        return self.filter(ended_at__isnull=True)


class OAuthSession(models.Model):
    class EndReason(models.TextChoices):
        LOGOUT = "logout", _("Signed out")
        REFRESH_REJECTED = "refresh_rejected", _("Provider refused the refresh")
        NO_REFRESH_TOKEN = "no_refresh_token", _("Tokens expired and no refresh token")
        SUBJECT_CHANGED = "subject_changed", _("Refreshed ID token was for another subject")
        ADMIN = "admin", _("Ended by an administrator")
        USER = "user", _("Ended by the user from another session")
        BACKCHANNEL = "backchannel", _("Back-channel logout from the provider")
        EXPIRED = "expired", _("Expired")
        SESSION_GONE = "session_gone", _("Browser session ended")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oauth_sessions")
    issuer = models.CharField(_("issuer"), max_length=255)
    subject = models.CharField(_("subject"), max_length=255)
    sid = models.CharField(_("provider session id"), max_length=255, blank=True, db_index=True)
    session_key = models.CharField(_("session key"), max_length=64, db_index=True)

    created_at = models.DateTimeField(_("signed in"), default=timezone.now, db_index=True)
    last_seen_at = models.DateTimeField(_("last seen"), default=timezone.now)
    last_refreshed_at = models.DateTimeField(_("last refreshed"), null=True, blank=True, db_index=True)
    refresh_count = models.PositiveIntegerField(_("refreshes"), default=0)
    # Bumped on every token write; a writer that did not hold the row lock cannot overwrite a newer set.
    version = models.PositiveIntegerField(default=0)

    access_token = EncryptedTextField(blank=True)
    id_token = EncryptedTextField(blank=True)
    refresh_token = EncryptedTextField(blank=True)
    access_expires_at = models.DateTimeField(_("access token expires"))
    id_token_expires_at = models.DateTimeField(_("ID token expires"), null=True, blank=True)
    refresh_expires_at = models.DateTimeField(_("refresh token expires"), null=True, blank=True)
    scope = models.TextField(_("scope"), blank=True)
    claims = models.JSONField(_("ID token claims"), default=dict)
    userinfo = models.JSONField(_("userinfo"), default=dict, blank=True)

    client_ip = models.GenericIPAddressField(_("IP address"), null=True, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=300, blank=True)

    ended_at = models.DateTimeField(_("ended"), null=True, blank=True, db_index=True)
    ended_reason = models.CharField(_("end reason"), max_length=40, choices=EndReason.choices, blank=True)
    ended_by = models.CharField(_("ended by"), max_length=150, blank=True)

    objects = OAuthSessionQuerySet.as_manager()

    class Meta:
        verbose_name = _("OAuth session")
        verbose_name_plural = _("OAuth sessions")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["issuer", "subject"], name="oauth_sess_iss_sub"),
            models.Index(fields=["user", "ended_at"], name="oauth_sess_user_ended"),
            models.Index(fields=["refresh_expires_at"], name="oauth_sess_refresh_exp"),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.issuer})"

    @property
    def is_active(self) -> bool:
        return self.ended_at is None

    @property
    def expires_at(self) -> datetime:
        """When the first of the access and ID tokens expires: the moment a refresh is due."""
        if self.id_token_expires_at and self.id_token_expires_at < self.access_expires_at:
            return self.id_token_expires_at
        return self.access_expires_at

    @property
    def has_refresh_token(self) -> bool:
        return bool(self.refresh_token)
