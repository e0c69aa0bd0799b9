"""Typed errors of the client pipeline. Messages never contain tokens, codes or secrets."""

from __future__ import annotations


class OAuthClientError(Exception):
    """Base class for every error raised by oauth_client."""


class ConfigurationError(OAuthClientError):
    """The client or provider is misconfigured (missing settings, unusable discovery document)."""


class ProviderError(OAuthClientError):
    """The provider answered with an OAuth error response (RFC 6749 §5.2)."""

    def __init__(self, error: str, description: str = "", status: int | None = None) -> None:
        self.error = error
        self.description = description
        self.status = status
        super().__init__(f"{error}: {description}" if description else error)


class InvalidGrant(ProviderError):
    """The code or refresh token is invalid, expired, revoked or was reused: the user must sign in again."""


class InvalidClient(ProviderError):
    """The provider rejected our client credentials (invalid_client / unauthorized_client)."""


class TransientProviderError(OAuthClientError):
    """The provider could not be reached or answered with a temporary failure; worth retrying later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class InvalidResponse(OAuthClientError):
    """The provider answered something that is not a valid response for the request (e.g. not JSON)."""


class TokenValidationError(OAuthClientError):
    """An ID token or logout token failed validation."""


class ClockSkew(TokenValidationError):
    """A token's iat is in the future or its exp already past, beyond CLOCK_LEEWAY: a clock is wrong somewhere."""


class SubjectChanged(TokenValidationError):
    """A refreshed ID token names another subject than the signed-in one (OIDC Core §12.2)."""


class ReauthenticationRequired(OAuthClientError):
    """The session's tokens can no longer be refreshed; the user must sign in again."""

    def __init__(self, reason: str = "reauthentication_required") -> None:
        self.reason = reason
        super().__init__(reason)


class TokenRefreshUnavailable(OAuthClientError):
    """A refresh was needed but could not be done now (provider down, lock wait exceeded); try again later."""
