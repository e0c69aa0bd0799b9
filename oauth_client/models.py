"""One authoritative token record per signed-in browser session, plus the (issuer, subject) → user link.

Tokens live here, encrypted, and not in the session dict: two concurrent requests each save their own copy
of the session dict, and a stale copy would write back a rotated-out refresh token. The session dict holds
only this record's id (which survives session key cycling).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Coalesce, Least
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from oauth_client.conf import oauth_settings
from oauth_client.crypto import EncryptedTextField
from oauth_client.exceptions import EndReason

# Refresh-ahead: a refresh falls due REFRESH_LEEWAY seconds before the first token expires, or this fraction of
# the tokens' lifetime before, whichever is less. With 10-second tokens and a 60-second leeway, a token would be
# due the moment it arrives and every request would refresh; this way it serves three quarters of its life.
REFRESH_AHEAD_FRACTION = 0.25


def refresh_margin(lifetime: timedelta) -> timedelta:
    """How long before expiry a token set of this lifetime (issued → first expiry) falls due for a refresh."""
    leeway = timedelta(seconds=oauth_settings.REFRESH_LEEWAY)
    return max(timedelta(0), min(leeway, lifetime * REFRESH_AHEAD_FRACTION))


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

    def in_state(self, state: str, now: datetime | None = None) -> OAuthSessionQuerySet:
        """Records in `state` (an `OAuthSession.State`), with the same rules as `OAuthSession.state_at`."""
        now = now or timezone.now()
        # The first of the access and ID token expiries, as in OAuthSession.expires_at.
        qs = self.alias(
            first_expiry=Least("access_expires_at", Coalesce("id_token_expires_at", "access_expires_at")),
        )
        refresh_expired = Q(refresh_expires_at__lte=now)
        no_refresh_token = Q(refresh_token="")
        if state == OAuthSession.State.ENDED:
            return qs.filter(ended_at__isnull=False)
        qs = qs.filter(ended_at__isnull=True)
        if state == OAuthSession.State.EXPIRED:
            return qs.filter(refresh_expired | (no_refresh_token & Q(first_expiry__lte=now)))
        qs = qs.exclude(refresh_expired)
        if state == OAuthSession.State.ACTIVE:
            return qs.filter(first_expiry__gt=now)
        if state == OAuthSession.State.GRACE:
            return qs.filter(first_expiry__lte=now).exclude(no_refresh_token)
        return qs.none()


class OAuthSession(models.Model):
    EndReason = EndReason

    class State(models.TextChoices):
        ACTIVE = "active", _("Active")
        # Past expiry but still refreshable: the next request of that browser refreshes the tokens.
        GRACE = "grace", _("Grace: refresh due")
        EXPIRED = "expired", _("Expired: cannot refresh")
        ENDED = "ended", _("Ended")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oauth_sessions")
    # The configured provider (oauth_client.providers) whose tokens these are: refresh, revocation, userinfo and
    # logout use its endpoints and client credentials.
    provider = models.CharField(_("provider"), max_length=64, default="default")
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
    # The session's DPoP key pair (private JWK, JSON), encrypted like the tokens; empty without DPoP. With a key, the
    # access token is bound to it (a token answer that is not DPoP-bound is refused, at sign-in and at refresh).
    dpop_key = EncryptedTextField(blank=True)
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
            # The admin sorts by these (created_at and last_refreshed_at have their own db_index).
            models.Index(fields=["last_seen_at"], name="oauth_sess_last_seen"),
        ]
        permissions = [("end_oauthsession", _("Can end sessions and revoke their tokens at the provider"))]

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
    def tokens_issued_at(self) -> datetime:
        """When the current access and ID tokens were received (every successful refresh sets last_refreshed_at)."""
        return self.last_refreshed_at or self.created_at

    @property
    def refresh_due_at(self) -> datetime:
        """The moment a refresh falls due: the one home of that rule (see `refresh_margin`)."""
        expires_at = self.expires_at
        return expires_at - refresh_margin(expires_at - self.tokens_issued_at)

    @property
    def token_type(self) -> str:
        """ "DPoP" when the access token is bound to `dpop_key` (RFC 9449: resource calls say `Authorization: DPoP`
        and carry a proof signed with the key), else "Bearer"."""
        return "DPoP" if self.dpop_key else "Bearer"

    @property
    def has_refresh_token(self) -> bool:
        return bool(self.refresh_token)

    def state_at(self, now: datetime | None = None, *, has_refresh_token: bool | None = None) -> str:
        """This record's `State`. Pass `has_refresh_token` when the token columns were not loaded."""
        now = now or timezone.now()
        if self.ended_at is not None:
            return self.State.ENDED
        if self.refresh_expires_at is not None and self.refresh_expires_at <= now:
            return self.State.EXPIRED
        if self.expires_at > now:
            return self.State.ACTIVE
        if not (self.has_refresh_token if has_refresh_token is None else has_refresh_token):
            return self.State.EXPIRED
        return self.State.GRACE


class OAuthEvent(models.Model):
    """What happened to sessions, for the admin's activity chart (written by receivers of our signals)."""

    class Kind(models.TextChoices):
        LOGIN = "login", _("Sign-in")
        REFRESH = "refresh", _("Token refresh")
        REFRESH_FAILED = "refresh_failed", _("Refresh failure")
        ENDED = "ended", _("Session ended")

    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    created_at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)
    session = models.ForeignKey(OAuthSession, on_delete=models.SET_NULL, null=True, blank=True, related_name="events")
    # End reason or error class; never a token or a provider message.
    detail = models.CharField(_("detail"), max_length=100, blank=True)

    class Meta:
        verbose_name = _("session event")
        verbose_name_plural = _("session events")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.created_at:%Y-%m-%d %H:%M}"


class UsedLogoutToken(models.Model):
    """The `jti` of every accepted back-channel logout token, until it would be rejected as too old anyway.

    A table rather than the cache: the unique constraint refuses a replay atomically across processes and
    hosts, which a per-process LocMemCache cannot."""

    # sha256(issuer NUL jti): fixed length, and jti values of different issuers cannot collide.
    key = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = _("used logout token")
        verbose_name_plural = _("used logout tokens")

    def __str__(self) -> str:
        return self.key[:12]
