"""The errors of the client pipeline, in two tiers. Messages never contain tokens, codes or secrets.

1. Provider errors (`ProviderFailure` and subclasses): something went wrong with a call to the provider or with
   what it answered. `retryable` says whether the person's grant is still good (keep the session, try later) or
   not (the session must end).
2. Session outcomes (`ReauthenticationRequired`, `TokenRefreshUnavailable`): what a view, decorator or the API
   raises. The middleware's `process_exception` is the one place that turns them into the sign-in redirect, the
   401 JSON or the 503 page.
"""

from __future__ import annotations

import math

from django.core.exceptions import PermissionDenied
from django.db import models
from django.utils.translation import gettext_lazy as _


class OAuthClientError(Exception):
    """Base class for every error raised by oauth_client."""


# --- tier 1: provider errors ---------------------------------------------------------------------------------


class ProviderFailure(OAuthClientError):
    """A call to the provider failed, or its answer cannot be used.

    `retryable` is True when the failure says nothing about the person's grant (an outage, a bad answer, the
    site's own configuration): sessions are kept and the call may succeed later. False means the grant or the
    answer is refused for good: the session ends."""

    retryable: bool = True


class ConfigurationError(ProviderFailure):
    """The client or provider is misconfigured (missing settings, unusable discovery document)."""


class ProviderNotConfigured(ConfigurationError):
    """A session's provider is no longer in the settings (or now names another issuer): its tokens cannot be used
    with any configured client, so the session ends (no retry can help)."""

    retryable = False


class TransientProviderError(ProviderFailure):
    """The provider could not be reached or answered with a temporary failure; worth retrying later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class InvalidResponse(ProviderFailure):
    """The provider answered something that is not a valid response for the request (e.g. not JSON)."""


class ProviderError(ProviderFailure):
    """The provider answered with an OAuth error response (RFC 6749 §5.2)."""

    def __init__(self, error: str, description: str = "", status: int | None = None) -> None:
        self.error = error
        self.description = description
        self.status = status
        super().__init__(f"{error}: {description}" if description else error)


class InvalidGrant(ProviderError):
    """The code or refresh token is invalid, expired, revoked or was reused: the user must sign in again."""

    retryable = False


class InvalidClient(ProviderError):
    """The provider rejected our client credentials (invalid_client / unauthorized_client): the site's fault, not
    the person's, so sessions are kept."""


class TokenValidationError(ProviderFailure):
    """An ID token or logout token failed validation."""

    retryable = False


class ClockSkew(TokenValidationError):
    """A token's iat is in the future or its exp already past, beyond CLOCK_LEEWAY: a clock is wrong somewhere."""

    retryable = True


class SubjectChanged(TokenValidationError):
    """A refreshed ID token names another subject than the signed-in one (OIDC Core §12.2)."""


# --- tier 2: session outcomes --------------------------------------------------------------------------------


class EndReason(models.TextChoices):
    """Why a token record ended (stored on the record; `OAuthSession.EndReason` is this class)."""

    LOGOUT = "logout", _("Signed out")
    REFRESH_REJECTED = "refresh_rejected", _("Provider refused the refresh")
    NO_REFRESH_TOKEN = "no_refresh_token", _("Tokens expired and no refresh token")
    SUBJECT_CHANGED = "subject_changed", _("Refreshed ID token was for another subject")
    ADMIN = "admin", _("Ended by an administrator")
    USER = "user", _("Ended by the user from another session")
    BACKCHANNEL = "backchannel", _("Back-channel logout from the provider")
    EXPIRED = "expired", _("Expired")
    SESSION_GONE = "session_gone", _("Browser session ended")
    PROVIDER_GONE = "provider_gone", _("Provider no longer configured")


class ReauthenticationRequired(OAuthClientError):
    """The person must sign in (again).

    `reason` is the `EndReason` of a session that ended (its tokens are gone: the person is signed out first), or
    `NOT_SIGNED_IN` when the request never had a provider session (anonymous, or staff signed in with a password:
    their Django session is kept)."""

    NOT_SIGNED_IN = "not_signed_in"
    # The session's record ended or vanished elsewhere (its EndReason is not known to this request).
    SESSION_ENDED = "session_ended"

    def __init__(self, reason: EndReason | str = NOT_SIGNED_IN) -> None:
        self.reason = reason
        super().__init__(str(reason))

    @property
    def signed_in(self) -> bool:
        """Whether the request had a provider session that has now ended."""
        return self.reason != self.NOT_SIGNED_IN


def retry_after_seconds(value: float | None, default: int = 30) -> int:
    """A `Retry-After` for our own 503s from what the provider said: whole seconds, 1 to 300 (a provider's
    "inf", a date years ahead or a fraction of a second is no useful answer to pass on)."""
    if value is None or not math.isfinite(value):
        return default
    return int(min(max(math.ceil(value), 1), 300))


class TokenRefreshUnavailable(OAuthClientError):
    """A refresh was needed but could not be done now (provider down, lock wait exceeded); the session is kept."""

    def __init__(self, message: str = "token refresh unavailable", retry_after: float | None = None) -> None:
        self.retry_after = retry_after_seconds(retry_after)
        super().__init__(message)


class UserRejected(OAuthClientError, PermissionDenied):
    """Raised by user mapping (the backend's steps, or a USER_MAPPER) to refuse a sign-in; the message is shown to
    the person. A PermissionDenied, so Django's `authenticate` sends `user_login_failed`."""
