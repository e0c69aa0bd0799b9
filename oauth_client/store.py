"""The token store: one record per signed-in session, and the only code that writes tokens.

A refresh runs under the record's row lock (`SELECT … FOR UPDATE` on PostgreSQL; SQLite's IMMEDIATE
transactions serialize writers), re-reads the record once the lock is granted, and calls the provider only
if the tokens are *still* due. So any number of concurrent requests of one session — threads, workers, hosts —
make exactly one token-endpoint call per expiry, and the writes are versioned so an older token set can never
overwrite a newer one. Different sessions lock different rows and refresh in parallel.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import import_module
from types import MappingProxyType
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import DatabaseError, connections, router, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from oauth_client import client, discovery, queries, signals
from oauth_client.backends import preloaded_user
from oauth_client.client import TokenResponse
from oauth_client.conf import oauth_settings
from oauth_client.exceptions import (
    ClockSkew,
    ConfigurationError,
    InvalidClient,
    InvalidGrant,
    InvalidResponse,
    OAuthClientError,
    ProviderError,
    ReauthenticationRequired,
    SubjectChanged,
    TokenRefreshUnavailable,
    TokenValidationError,
    TransientProviderError,
)
from oauth_client.models import OAuthSession, refresh_margin
from oauth_client.validation import validate_refreshed_id_token

logger = logging.getLogger("oauth_client.store")

SESSION_KEY = "_oauth_session_id"
_REQUEST_CACHE = "_oauth_record"
_FAILED_FLAG = "_oauth_refresh_failed"
Reason = OAuthSession.EndReason


@dataclass(frozen=True)
class TokenSet:
    """An immutable snapshot of a session's tokens. The refresh token is deliberately not part of it."""

    access_token: str = field(repr=False)
    id_token: str = field(repr=False)
    claims: Mapping[str, Any]
    access_expires_at: datetime
    id_token_expires_at: datetime | None
    refresh_expires_at: datetime | None
    scopes: frozenset[str]
    last_refreshed_at: datetime | None
    has_refresh_token: bool
    # When the next refresh falls due (OAuthSession.refresh_due_at); None for a snapshot not read from a record.
    refresh_due_at: datetime | None = None

    @property
    def expires_at(self) -> datetime:
        """When the first of the access and ID tokens expires (the next refresh is due a little before)."""
        if self.id_token_expires_at and self.id_token_expires_at < self.access_expires_at:
            return self.id_token_expires_at
        return self.access_expires_at

    @classmethod
    def from_record(cls, record: OAuthSession) -> TokenSet:
        return cls(
            access_token=record.access_token,
            id_token=record.id_token,
            claims=MappingProxyType(dict(record.claims)),
            access_expires_at=record.access_expires_at,
            id_token_expires_at=record.id_token_expires_at,
            refresh_expires_at=record.refresh_expires_at,
            scopes=frozenset(record.scope.split()),
            last_refreshed_at=record.last_refreshed_at,
            has_refresh_token=record.has_refresh_token,
            refresh_due_at=record.refresh_due_at,
        )


# --- reading ------------------------------------------------------------------------------------------------


def load(request: HttpRequest) -> OAuthSession | None:
    """The active record of this request's session (one indexed query, then cached on the request)."""
    if hasattr(request, _REQUEST_CACHE):
        return getattr(request, _REQUEST_CACHE)
    record_id = request.session.get(SESSION_KEY) if hasattr(request, "session") else None
    record = None
    if record_id:
        record = queries.active_record(record_id)
        # The record brings its user along: if request.user is still lazy, Django's get_user takes it from
        # OAuthBackend instead of querying again (and still verifies the session's auth hash).
        with preloaded_user(record.user if record is not None else None):
            user_pk = getattr(request.user, "pk", None)
        if record is not None and record.user_id != user_pk:
            record = None
    setattr(request, _REQUEST_CACHE, record)
    return record


def _remember(request: HttpRequest, record: OAuthSession | None) -> None:
    setattr(request, _REQUEST_CACHE, record)


def refresh_due(record: OAuthSession, now: datetime | None = None) -> bool:
    return record.refresh_due_at <= (now or timezone.now())


def within_grace(record: OAuthSession, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return now < record.expires_at + timedelta(seconds=oauth_settings.REFRESH_GRACE)


# --- writing ------------------------------------------------------------------------------------------------


def _expiry(seconds: int | None, now: datetime) -> datetime | None:
    return now + timedelta(seconds=seconds) if seconds else None


# Issuers whose tokens were already reported as living less than REFRESH_LEEWAY (once per process: the lifetime
# seen varies by a second from token to token, as `exp` is whole seconds).
_short_lifetimes_logged: set[str] = set()


def _warn_if_short_lived(record: OAuthSession, now: datetime) -> None:
    lifetime = int((record.expires_at - now).total_seconds())
    if lifetime < oauth_settings.REFRESH_LEEWAY and record.issuer not in _short_lifetimes_logged:
        _short_lifetimes_logged.add(record.issuer)
        logger.warning(
            "tokens from %s live %d s, less than REFRESH_LEEWAY (%d s): refreshing %s before expiry instead",
            record.issuer,
            lifetime,
            oauth_settings.REFRESH_LEEWAY,
            refresh_margin(record.expires_at - now),
        )


def _apply(record: OAuthSession, tokens: TokenResponse, claims: Mapping[str, Any] | None, now: datetime) -> None:
    record.access_token = tokens.access_token
    id_exp = datetime.fromtimestamp(claims["exp"], tz=UTC) if claims else None
    # Without expires_in, fall back to the ID token's lifetime, then to a conservative five minutes.
    record.access_expires_at = _expiry(tokens.expires_in, now) or id_exp or now + timedelta(minutes=5)
    if claims is not None and tokens.id_token:
        record.id_token = tokens.id_token
        # OIDC Core §12.2 compares a refreshed ID token with the original authentication's: a refreshed token may
        # omit auth_time and nonce, so the session keeps the original ones for the next comparison.
        original = {k: record.claims[k] for k in ("auth_time", "nonce") if record.claims and k in record.claims}
        record.claims = {**original, **claims}
        record.id_token_expires_at = id_exp
        record.sid = str(claims.get("sid") or record.sid or "")[:255]
    else:
        # No new ID token: keep the old claims and let the access token drive the next refresh.
        record.id_token_expires_at = None
    if tokens.refresh_token:
        record.refresh_token = tokens.refresh_token
        record.refresh_expires_at = _expiry(tokens.refresh_expires_in, now)
    if tokens.scope:
        record.scope = tokens.scope
    _warn_if_short_lived(record, now)


@sensitive_variables()
def create(
    request: HttpRequest,
    user: Any,
    tokens: TokenResponse,
    claims: Mapping[str, Any],
    userinfo: Mapping[str, Any] | None = None,
) -> OAuthSession:
    """Store the tokens of a fresh sign-in for this (already logged-in, key-cycled) session."""
    now = timezone.now()
    if request.session.session_key is None:
        request.session.save()
    record = OAuthSession(
        user=user,
        issuer=str(claims["iss"]),
        subject=str(claims["sub"]),
        session_key=request.session.session_key or "",
        created_at=now,
        last_seen_at=now,
        scope=tokens.scope or " ".join(oauth_settings.SCOPES),
        userinfo=dict(userinfo or {}),
        client_ip=request.META.get("REMOTE_ADDR") or None,
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
    )
    _apply(record, tokens, claims, now)
    record.save()
    request.session[SESSION_KEY] = str(record.pk)
    _remember(request, record)
    return record


def _lock_timeout(using: str) -> None:
    """Bound the wait for another request's refresh, so a stuck provider call cannot pile up workers.

    Backstop: the provider calls made while the row is locked end by HTTP_RETRY_BUDGET each (http.py); should a
    worker stay idle in the transaction far past that (stuck), PostgreSQL ends its session and the lock."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        ms = int(oauth_settings.LOCK_TIMEOUT * 1000)
        idle_ms = int((2 * oauth_settings.HTTP_RETRY_BUDGET + 5) * 1000)
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = {ms}")
            cursor.execute(f"SET LOCAL idle_in_transaction_session_timeout = {idle_ms}")


def _end(record: OAuthSession, reason: str, ended_by: str = "") -> None:
    record.ended_at = timezone.now()
    record.ended_reason = reason
    record.ended_by = ended_by[:150]
    record.access_token = record.id_token = record.refresh_token = ""
    record.version += 1
    record.save()


def _is_due(record: OAuthSession, now: datetime, force_since: datetime | None) -> bool:
    if force_since is not None:
        return record.last_refreshed_at is None or record.last_refreshed_at < force_since
    return refresh_due(record, now)


def _first_in(seconds: int, what: str) -> bool:
    """True for the first caller in each window of `seconds`, across processes sharing the cache."""
    try:
        return bool(caches[oauth_settings.CACHE_ALIAS].add(f"oauth_client:once:{what}", 1, seconds))
    except Exception:  # noqa: BLE001 - a cache outage must not hide the message
        return True


# Failures of the provider or of our view of it that say nothing about the person's grant: the session is kept.
_TRANSIENT = (TransientProviderError, InvalidResponse, ProviderError, ConfigurationError)


def _token_columns(record: OAuthSession) -> dict[str, Any]:
    # Not session_key: `touch` keeps it in step with the browser's session without the row lock.
    return {
        f.attname: getattr(record, f.attname)
        for f in OAuthSession._meta.concrete_fields
        if not f.primary_key and f.attname != "session_key"
    }


def _versioned_update(using: str, record: OAuthSession, previous_version: int, **columns: Any) -> bool:
    """Write `columns` only if nobody else wrote the row since `previous_version`: an older token set can never
    overwrite a newer one."""
    return OAuthSession.objects.using(using).filter(pk=record.pk, version=previous_version).update(**columns) == 1


@sensitive_variables()
def _keep_refresh_token(using: str, record: OAuthSession, tokens: TokenResponse, previous_version: int) -> bool:
    """The provider rotated the refresh token but the rest of its answer cannot be used now (a key we could not
    fetch, a database error): store the new refresh token alone, keep the old access and ID tokens, so the next
    attempt presents the new one and never a spent one (which a provider treats as theft)."""
    record.refresh_token = tokens.refresh_token or record.refresh_token
    if tokens.refresh_token and tokens.refresh_expires_in:
        record.refresh_expires_at = _expiry(tokens.refresh_expires_in, timezone.now())
    record.version = previous_version + 1
    kept = _versioned_update(
        using,
        record,
        previous_version,
        refresh_token=record.refresh_token,
        refresh_expires_at=record.refresh_expires_at,
        version=record.version,
    )
    if not kept:
        # Only a writer that ignored the row lock can get here; say so loudly, the next refresh may fail.
        logger.error("new refresh token not stored: the token record was changed without its lock")
    return kept


@sensitive_variables()
def refresh(
    record: OAuthSession, *, force_since: datetime | None = None, request: HttpRequest | None = None
) -> OAuthSession:
    """Refresh `record` if it is due, under its row lock, and return the current record.

    Steps: keys first (no fetch under the lock that could fail after the provider rotated) → lock → re-read and
    decide → call the token endpoint → validate → persist → after commit: signals, revocations. Once the token
    endpoint has answered 200 with a new refresh token, that token is persisted whatever happens next.

    `force_since`: refresh unless a refresh already happened at or after this moment (sensitive operations
    pass the request's start, or now - max_age). Raises `ReauthenticationRequired` (the session was ended)
    or `TokenRefreshUnavailable` (transient or a configuration fault of the site; the session is kept).
    """
    using = router.db_for_write(OAuthSession)
    ended: tuple[str, OAuthClientError] | None = None
    refreshed = False
    to_revoke: TokenResponse | None = None  # a rotated token set we refused: revoked after the commit
    unusable: Exception | None = None  # why a 200 could not be used (its refresh token was kept)
    tokens: TokenResponse | None = None
    previous_version = record.version
    current = record
    try:
        discovery.get_metadata()
        discovery.get_jwks()
        with transaction.atomic(using=using):
            _lock_timeout(using)
            current = OAuthSession.objects.using(using).select_for_update().get(pk=record.pk)
            previous_version = current.version
            now = timezone.now()
            if current.ended_at is not None:
                raise ReauthenticationRequired(current.ended_reason or "ended")
            if not _is_due(current, now, force_since):
                # Another request refreshed while we waited for the lock: use its tokens.
                return current
            if not current.refresh_token:
                _end(current, Reason.NO_REFRESH_TOKEN)
                ended = (Reason.NO_REFRESH_TOKEN, ReauthenticationRequired(Reason.NO_REFRESH_TOKEN))
            else:
                try:
                    tokens = client.refresh(current.refresh_token)
                except InvalidGrant as exc:
                    _end(current, Reason.REFRESH_REJECTED)
                    ended = (Reason.REFRESH_REJECTED, exc)
                else:
                    # From here on the provider may have rotated the refresh token: it must not be lost.
                    try:
                        claims = (
                            validate_refreshed_id_token(tokens.id_token, current.claims) if tokens.id_token else None
                        )
                    except ClockSkew as exc:
                        # iat in the future / exp already past beyond CLOCK_LEEWAY: a clock's fault (ours or the
                        # provider's), not the person's. Keep the new refresh token, answer as for an outage.
                        _keep_refresh_token(using, current, tokens, previous_version)
                        unusable = exc
                    except TokenValidationError as exc:
                        # A response we can never trust (another subject, issuer, audience): end the session.
                        _end(
                            current,
                            Reason.SUBJECT_CHANGED if isinstance(exc, SubjectChanged) else Reason.REFRESH_REJECTED,
                        )
                        ended, to_revoke = (current.ended_reason, exc), tokens
                    except _TRANSIENT as exc:
                        # E.g. the ID token names a new key and the JWKS cannot be fetched right now.
                        _keep_refresh_token(using, current, tokens, previous_version)
                        unusable = exc
                    else:
                        _apply(current, tokens, claims, now)
                        current.last_refreshed_at = now
                        current.refresh_count += 1
                        current.version = previous_version + 1
                        current.last_seen_at = now
                        if not _versioned_update(using, current, previous_version, **_token_columns(current)):
                            raise TokenRefreshUnavailable("token record changed during refresh")
                        refreshed = True
    except InvalidClient as exc:
        # invalid_client / unauthorized_client: the site's credentials or registration (an expired client secret),
        # not this person's grant. Keep every session and its tokens; refreshes resume once it is fixed. One
        # ERROR line a minute across processes (the shared cache), not one per request of every user.
        level = logging.ERROR if _first_in(60, "client-rejected") else logging.WARNING
        logger.log(
            level, "token refresh refused: the provider rejected this client (%s); sessions kept, run oidc_doctor", exc
        )
        signals.client_rejected.send(OAuthSession, error=exc, request=request)
        signals.token_refresh_failed.send(OAuthSession, record=record, request=request, error=exc, transient=True)
        raise TokenRefreshUnavailable(str(exc)) from None
    except _TRANSIENT as exc:
        logger.warning("token refresh failed, session kept (%s): %s", type(exc).__name__, exc)
        signals.token_refresh_failed.send(OAuthSession, record=record, request=request, error=exc, transient=True)
        raise TokenRefreshUnavailable(str(exc)) from None
    except DatabaseError as exc:
        if tokens is not None and ended is None:
            # The provider answered and then the write or the COMMIT failed: save the new refresh token in a
            # transaction of its own (the failed one was rolled back) before anything can present the spent one.
            # A no-op if the commit did go through (the version moved on).
            _rescue_refresh_token(using, record.pk, tokens, previous_version)
            logger.warning("token refresh not stored (%s); new refresh token kept", type(exc).__name__)
        elif to_revoke is not None:
            # A response refused for good, and ending the session failed: at least do not leave its token alive.
            revoke_tokens(to_revoke.refresh_token or "", to_revoke.access_token)
            logger.warning("token refresh refused, and the session could not be ended: %s", type(exc).__name__)
        else:
            # PostgreSQL lock_timeout, SQLite "database is locked": another refresh is taking too long.
            logger.warning("token refresh lock not acquired in time: %s", type(exc).__name__)
        signals.token_refresh_failed.send(OAuthSession, record=record, request=request, error=exc, transient=True)
        raise TokenRefreshUnavailable("token record could not be written") from None

    if to_revoke is not None:
        revoke_tokens(to_revoke.refresh_token or "", to_revoke.access_token)
    if ended is not None:
        reason, error = ended
        logger.warning("token refresh refused, session ended (%s): %s", reason, error)
        signals.token_refresh_failed.send(OAuthSession, record=current, request=request, error=error, transient=False)
        signals.oauth_session_ended.send(OAuthSession, record=current, reason=reason, ended_by="")
        raise ReauthenticationRequired(reason)
    if unusable is not None:
        logger.warning(
            "token refresh answer not usable now, new refresh token kept (%s): %s", type(unusable).__name__, unusable
        )
        signals.token_refresh_failed.send(OAuthSession, record=current, request=request, error=unusable, transient=True)
        raise TokenRefreshUnavailable(str(unusable))
    if refreshed:
        logger.info("tokens refreshed for session %s (refresh #%d)", current.pk, current.refresh_count)
        signals.tokens_refreshed.send(OAuthSession, record=current, request=request)
    return current


@sensitive_variables()
def _rescue_refresh_token(using: str, pk: Any, tokens: TokenResponse, previous_version: int) -> None:
    try:
        with transaction.atomic(using=using):
            record = OAuthSession.objects.using(using).select_for_update().get(pk=pk)
            if record.version == previous_version and record.ended_at is None:
                _keep_refresh_token(using, record, tokens, previous_version)
    except DatabaseError as exc:
        logger.error("new refresh token could not be stored (%s): the next refresh may fail", type(exc).__name__)


def ensure_fresh(request: HttpRequest, *, force_since: datetime | None = None) -> OAuthSession | None:
    """Make this request's tokens fresh (refreshing if due, or if older than `force_since`).

    With `force_since` every failure raises. Without it, a transient failure is swallowed while the tokens
    are within REFRESH_GRACE of expiry, so a provider outage does not sign anybody out.
    """
    record = load(request)
    if record is None:
        return None
    now = timezone.now()
    if not _is_due(record, now, force_since):
        return record
    try:
        if getattr(request, _FAILED_FLAG, False):
            # One attempt per request: the middleware already tried and the provider is unavailable.
            raise TokenRefreshUnavailable("refresh already failed in this request")
        record = refresh(record, force_since=force_since, request=request)
    except TokenRefreshUnavailable:
        setattr(request, _FAILED_FLAG, True)
        if force_since is None and within_grace(record, now):
            return record
        raise
    except ReauthenticationRequired:
        _remember(request, None)
        raise
    _remember(request, record)
    return record


def touch(request: HttpRequest, record: OAuthSession) -> None:
    """Keep last-seen and the session key current, with at most one small UPDATE per interval."""
    now = timezone.now()
    changes: dict[str, Any] = {}
    if (now - record.last_seen_at).total_seconds() >= oauth_settings.LAST_SEEN_INTERVAL:
        changes["last_seen_at"] = now
    key = request.session.session_key
    if key and key != record.session_key:
        changes["session_key"] = key
    if changes:
        # Only non-token columns: this never races with a token write.
        OAuthSession.objects.filter(pk=record.pk).update(**changes)
        for name, value in changes.items():
            setattr(record, name, value)


def session_store(session_key: str) -> Any:
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key)


@sensitive_variables()
def end(
    record: OAuthSession,
    reason: str,
    *,
    ended_by: str = "",
    revoke: bool = True,
    delete_session: bool = True,
) -> bool | None:
    """End a session for good: revoke its refresh token at the provider, discard the tokens, and delete
    the browser's Django session so its next request is signed out.

    Returns None when there was nothing to end (already ended or gone), else whether the provider
    confirmed the revocation."""
    with transaction.atomic():
        current = OAuthSession.objects.select_for_update().filter(pk=record.pk).first()
        if current is None or current.ended_at is not None:
            return None
        refresh_token, access_token = current.refresh_token, current.access_token
        _end(current, reason, ended_by)
    revoked = revoke_tokens(refresh_token, access_token) if revoke else False
    if delete_session and current.session_key:
        session_store(current.session_key).delete()
    signals.oauth_session_ended.send(OAuthSession, record=current, reason=reason, ended_by=ended_by)
    return revoked


@sensitive_variables()
def revoke_tokens(refresh_token: str, access_token: str = "") -> bool:
    """Best-effort RFC 7009 revocation; failures are logged, never raised (the local session ends anyway)."""
    token, hint = (refresh_token, "refresh_token") if refresh_token else (access_token, "access_token")
    if not token:
        return False
    try:
        return client.revoke(token, hint)
    except OAuthClientError as exc:
        logger.warning("token revocation failed (%s): %s", type(exc).__name__, exc)
        return False
