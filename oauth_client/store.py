"""The token store: one record per signed-in session, and the only code that writes tokens.

`TokenStore` is one class, swappable with OAUTH_CLIENT["TOKEN_STORE_CLASS"] (a dotted path, like
django-oauth-toolkit's OAUTH2_VALIDATOR_CLASS); `token_store()` returns the configured instance.

A refresh runs under the record's row lock (`SELECT … FOR UPDATE` on PostgreSQL; SQLite's IMMEDIATE
transactions serialize writers), re-reads the record once the lock is granted, and calls the provider only if
the tokens are *still* due. So any number of concurrent requests of one session — threads, workers, hosts — make
exactly one token-endpoint call per expiry, and the writes are versioned so an older token set can never
overwrite a newer one. Different sessions lock different rows and refresh in parallel.

Per request, the Django session carries the record's id and a hint: the moment its tokens next fall due. While
the hint says "fresh", a request touches no OAuth table; the record is read (one indexed query, public ORM) only
when a view reads tokens or the hint says "due", and that read corrects the hint.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import import_module
from types import MappingProxyType
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.core.signals import setting_changed
from django.db import DatabaseError, connections, router, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from oauth_client import client, discovery, dpop, providers, signals
from oauth_client.client import TokenResponse
from oauth_client.conf import oauth_settings
from oauth_client.exceptions import (
    EndReason,
    InvalidClient,
    InvalidGrant,
    InvalidResponse,
    ProviderFailure,
    ProviderNotConfigured,
    ReauthenticationRequired,
    SubjectChanged,
    TokenRefreshUnavailable,
)
from oauth_client.models import OAuthSession, refresh_margin
from oauth_client.providers import Provider
from oauth_client.redaction import TOKEN_FIELDS
from oauth_client.validation import validate_refreshed_id_token

logger = logging.getLogger("oauth_client.store")
T = TypeVar("T")

# Keys in the Django session: the record's id (it survives session key cycling), when its tokens next fall due
# (epoch seconds; a hint, the record is the authority) and when last-seen was last written (epoch seconds).
SESSION_KEY = "_oauth_session_id"
DUE_AT_KEY = "_oauth_due_at"
SEEN_AT_KEY = "_oauth_seen_at"
BOUND_KEY = "_oauth_bound_key"  # the session key the record knows (see follow_session_key)
# Per-request state, on the request object (as AuthenticationMiddleware caches its user in `_cached_user`).
_CACHED_RECORD = "_oauth_cached_record"
_FAILED_FLAG = "_oauth_refresh_failed"


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
    # "Bearer", or "DPoP" when the access token is bound to the session's key: send it with `api_session` (or the
    # headers of `api.authorization_headers`), which add the proof a DPoP token needs.
    token_type: str = "Bearer"
    # When the next refresh falls due (OAuthSession.refresh_due_at); None for a snapshot not read from a record.
    refresh_due_at: datetime | None = None
    # The name of the provider the session signed in with (oauth_client.providers), and what people call it: its
    # LABEL, or its issuer if it is no longer configured. `several_providers`: whether the site has more than one.
    provider: str = providers.DEFAULT
    provider_label: str = ""
    several_providers: bool = False

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
            token_type=record.token_type,
            refresh_due_at=record.refresh_due_at,
            provider=record.provider,
            provider_label=_provider_label(record),
            several_providers=_several_providers(),
        )


def _provider_label(record: OAuthSession) -> str:
    try:
        return providers.for_record(record).label
    except ProviderFailure:
        return record.issuer


def _several_providers() -> bool:
    try:
        return providers.several()
    except ProviderFailure:
        return False


def _expiry(seconds: int | None, now: datetime) -> datetime | None:
    return now + timedelta(seconds=seconds) if seconds else None


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _first_in(seconds: int, what: str) -> bool:
    """True for the first caller in each window of `seconds`, across processes sharing the cache."""
    try:
        return bool(caches[oauth_settings.CACHE_ALIAS].add(f"oauth_client:once:{what}", 1, seconds))
    except Exception:  # noqa: BLE001 - a cache outage must not hide the message
        return True


def session_store(session_key: str) -> Any:
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key)


# Issuers whose tokens were already reported as living less than REFRESH_LEEWAY (once per process: the lifetime
# seen varies by a second from token to token, as `exp` is whole seconds).
_short_lifetimes_logged: set[str] = set()


@functools.cache
def _executor() -> ThreadPoolExecutor:
    # Its own threads (not asyncio's default pool of cpu + 4): refreshes waiting on a slow provider or on a row lock
    # must not queue up every other refresh of the process behind them.
    return ThreadPoolExecutor(max_workers=32, thread_name_prefix="oauth-client")


async def in_worker_thread(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Await `func` run in a worker thread of its own database connections (closed when it is done), never on
    the event loop and never in the one thread Django's async ORM shares: a refresh waiting on a slow provider
    holds up nobody else's request."""

    def work() -> T:
        try:
            return func(*args, **kwargs)
        finally:
            connections.close_all()  # this thread's connections only

    return await sync_to_async(work, thread_sensitive=False, executor=_executor())()


def run_in_own_connection(func: Callable[..., T], *args: Any) -> T:
    """Run `func` in a worker thread, which has its own database connections (closed when it is done), and return
    its result or raise its exception here."""
    result: list[T] = []
    error: list[BaseException] = []

    def work() -> None:
        try:
            result.append(func(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            error.append(exc)
        finally:
            connections.close_all()

    worker = threading.Thread(target=work, name="oauth-client-refresh")
    worker.start()
    worker.join()
    if error:
        raise error[0]
    return result[0]


@dataclass
class RefreshAttempt:
    """What one `TokenStore.refresh` call knows as it goes through its steps."""

    record: OAuthSession  # as the caller had it
    request: HttpRequest | None
    using: str
    force_since: datetime | None
    previous_version: int = 0
    provider: Provider | None = None  # the record's provider, resolved first
    current: OAuthSession | None = None  # the locked, re-read record
    tokens: TokenResponse | None = None  # the provider's 200, once it answered: its refresh token must not be lost
    outcome: Exception | None = None  # raised once the transaction is over (the session ended, or kept unrefreshed)
    refused: TokenResponse | None = None  # a rotated token set refused for good: revoked after the commit
    unusable: ProviderFailure | None = None  # why a 200 cannot be used now (its refresh token was kept)


class TokenStore:
    """Reads, creates, refreshes and ends token records. Subclass and point TOKEN_STORE_CLASS at it to change a
    step; the refresh is `prepare` → `lock` → `is_due` → `call_provider` → `persist` → after commit."""

    model = OAuthSession

    # --- routing: every read and write of the store goes through the database router ---------------------------

    def db_for_read(self) -> str:
        return router.db_for_read(self.model)

    def db_for_write(self) -> str:
        return router.db_for_write(self.model)

    # --- the session's hint -------------------------------------------------------------------------------------

    def hint_is_fresh(self, request: HttpRequest, now: datetime | None = None) -> bool:
        """Whether the session's hint says the tokens are not due yet (no OAuth query needed)."""
        due = request.session.get(DUE_AT_KEY)
        return isinstance(due, int) and _epoch(now or timezone.now()) < due

    def remember(self, request: HttpRequest, record: OAuthSession | None) -> None:
        """Cache `record` for the rest of this request and keep the session's hint in step with it."""
        setattr(request, _CACHED_RECORD, record)
        if record is not None and hasattr(request, "session"):
            due = _epoch(record.refresh_due_at)  # rounded down: the hint never says fresh past the due moment
            if request.session.get(DUE_AT_KEY) != due:
                request.session[DUE_AT_KEY] = due

    def forget(self, request: HttpRequest) -> None:
        setattr(request, _CACHED_RECORD, None)
        request.session.pop(DUE_AT_KEY, None)

    # --- reading ------------------------------------------------------------------------------------------------

    def get(self, record_id: Any) -> OAuthSession | None:
        """The active record `record_id`, or None (ended, gone, or a malformed id). One indexed query."""
        try:
            return self.model.objects.using(self.db_for_read()).get(pk=record_id, ended_at__isnull=True)
        except (self.model.DoesNotExist, ValidationError, ValueError):
            return None

    async def aget(self, record_id: Any) -> OAuthSession | None:
        """`get` for async code: Django's async ORM."""
        try:
            return await self.model.objects.using(self.db_for_read()).aget(pk=record_id, ended_at__isnull=True)
        except (self.model.DoesNotExist, ValidationError, ValueError):
            return None

    async def aload(self, request: HttpRequest) -> OAuthSession | None:
        """`load` for async code: the session, the user and the record read through Django's async APIs."""
        if hasattr(request, _CACHED_RECORD):
            return getattr(request, _CACHED_RECORD)
        session = getattr(request, "session", None)
        record_id = await session.aget(SESSION_KEY) if session is not None else None
        record = None
        if record_id:
            user = await request.auser()
            if user.is_authenticated:
                record = await self.aget(record_id)
                if record is not None and record.user_id != user.pk:
                    record = None
        if record is None:
            setattr(request, _CACHED_RECORD, None)
        else:
            self.remember(request, record)  # the session is loaded by now: no I/O
        return record

    async def aensure_fresh(self, request: HttpRequest, *, force_since: datetime | None = None) -> OAuthSession:
        """`ensure_fresh` for async code. Fresh tokens cost the async reads only; a refresh (or the answer for an
        ended session) needs a transaction, which Django's ORM offers in sync code only, so it runs in a worker
        thread with its own connection, with the same row lock and the same exactly-one-refresh guarantee."""
        record = await self.aload(request)
        if record is not None and not self.is_due(record, timezone.now(), force_since):
            return record
        return await in_worker_thread(self.ensure_fresh, request, force_since=force_since)

    async def atouch(self, request: HttpRequest) -> None:
        """`touch` for async code."""
        now = timezone.now()
        seen = await request.session.aget(SEEN_AT_KEY)
        if isinstance(seen, int) and _epoch(now) - seen < oauth_settings.LAST_SEEN_INTERVAL:
            return
        if not (await request.auser()).is_authenticated:
            return
        record_id = await request.session.aget(SESSION_KEY)
        if not record_id:
            return
        await self.model.objects.using(self.db_for_write()).filter(pk=record_id).aupdate(last_seen_at=now)
        await request.session.aset(SEEN_AT_KEY, _epoch(now))

    async def afollow_session_key(self, request: HttpRequest) -> None:
        """`follow_session_key` for async code."""
        session = getattr(request, "session", None)
        key = session.session_key if session is not None else None
        if session is None or not key or await session.aget(BOUND_KEY) == key:
            return
        record_id = await session.aget(SESSION_KEY)
        if not record_id:
            return
        await self.model.objects.using(self.db_for_write()).filter(pk=record_id).aupdate(session_key=key)
        await session.aset(BOUND_KEY, key)

    def load(self, request: HttpRequest) -> OAuthSession | None:
        """This request's active record: read on first use, then cached on the request (as `request.user` is)."""
        if hasattr(request, _CACHED_RECORD):
            return getattr(request, _CACHED_RECORD)
        session = getattr(request, "session", None)
        record_id = session.get(SESSION_KEY) if session is not None else None
        record = None
        if record_id and request.user.is_authenticated:
            record = self.get(record_id)
            if record is not None and record.user_id != request.user.pk:
                record = None
        if record is None:
            setattr(request, _CACHED_RECORD, None)
        else:
            self.remember(request, record)
        return record

    # --- per request --------------------------------------------------------------------------------------------

    def ensure_fresh(self, request: HttpRequest, *, force_since: datetime | None = None) -> OAuthSession:
        """This request's record with fresh tokens (refreshed first if due, or if older than `force_since`).

        Raises `ReauthenticationRequired`: not signed in through the provider, or the session ended (here or
        elsewhere). Raises `TokenRefreshUnavailable` when a refresh was needed and could not be done; without
        `force_since` that is only past REFRESH_GRACE (a provider outage signs nobody out early)."""
        record = self.load(request)
        if record is None:
            if SESSION_KEY in getattr(request, "session", {}) and request.user.is_authenticated:
                raise ReauthenticationRequired(ReauthenticationRequired.SESSION_ENDED)
            raise ReauthenticationRequired(ReauthenticationRequired.NOT_SIGNED_IN)
        now = timezone.now()
        if not self.is_due(record, now, force_since):
            return record
        try:
            failed = getattr(request, _FAILED_FLAG, None)
            if failed is not None:
                # One attempt per request: the middleware already tried and the provider is unavailable.
                raise TokenRefreshUnavailable("refresh already failed in this request", retry_after=failed.retry_after)
            record = self.refresh(record, force_since=force_since, request=request)
        except TokenRefreshUnavailable as exc:
            setattr(request, _FAILED_FLAG, exc)
            if force_since is None and self.within_grace(record, now):
                return record
            raise
        except ReauthenticationRequired:
            self.forget(request)
            raise
        self.remember(request, record)
        if record.last_seen_at >= now:  # the refresh wrote last-seen too: no separate write for it this request
            request.session[SEEN_AT_KEY] = _epoch(record.last_seen_at)
        return record

    def touch(self, request: HttpRequest) -> None:
        """Write last-seen at most once per LAST_SEEN_INTERVAL, from the session's note (no read of the record)."""
        now = timezone.now()
        seen = request.session.get(SEEN_AT_KEY)
        if isinstance(seen, int) and _epoch(now) - seen < oauth_settings.LAST_SEEN_INTERVAL:
            return
        if not request.user.is_authenticated:
            return  # Django signed this session out (user deactivated, auth hash changed): not "seen"
        # Only a non-token column: this never races with a token write.
        self.model.objects.using(self.db_for_write()).filter(pk=request.session[SESSION_KEY]).update(last_seen_at=now)
        request.session[SEEN_AT_KEY] = _epoch(now)

    def follow_session_key(self, request: HttpRequest) -> None:
        """The browser's session key was cycled (Django re-hashed the session under a SECRET_KEY_FALLBACKS key, a
        view called `cycle_key`): point the record at the new key, or ending the session from the admin or by
        back-channel logout would miss it and prune would take it for gone. The session notes the key the record
        has, so this costs no query until the key changes."""
        session = getattr(request, "session", None)
        if session is None or SESSION_KEY not in session:
            return
        key = session.session_key
        if not key or session.get(BOUND_KEY) == key:
            return
        self.model.objects.using(self.db_for_write()).filter(pk=session[SESSION_KEY]).update(session_key=key)
        session[BOUND_KEY] = key

    # --- the "due" rule (OAuthSession.refresh_due_at is its one home) -------------------------------------------

    def is_due(self, record: OAuthSession, now: datetime, force_since: datetime | None = None) -> bool:
        if force_since is not None:
            return record.last_refreshed_at is None or record.last_refreshed_at < force_since
        return record.refresh_due_at <= now

    def within_grace(self, record: OAuthSession, now: datetime) -> bool:
        return now < record.expires_at + timedelta(seconds=oauth_settings.REFRESH_GRACE)

    # --- writing ------------------------------------------------------------------------------------------------

    @sensitive_variables()
    def create(
        self,
        request: HttpRequest,
        user: Any,
        tokens: TokenResponse,
        claims: Mapping[str, Any],
        userinfo: Mapping[str, Any] | None = None,
        provider: Provider | None = None,
        dpop_key: str = "",
    ) -> OAuthSession:
        """Store the tokens of a fresh sign-in for this (already logged-in, key-cycled) session; `dpop_key`: the key
        pair its access tokens are bound to (DPoP), kept with them."""
        provider = provider or providers.get()
        now = timezone.now()
        if request.session.session_key is None:
            request.session.save()
        record = self.model(
            user=user,
            provider=provider.name,
            issuer=str(claims["iss"]),
            subject=str(claims["sub"]),
            session_key=request.session.session_key or "",
            created_at=now,
            last_seen_at=now,
            scope=tokens.scope or " ".join(provider.SCOPES),
            userinfo=dict(userinfo or {}),
            client_ip=request.META.get("REMOTE_ADDR") or None,
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
            dpop_key=dpop_key,
        )
        self.apply(record, tokens, claims, now)
        record.save(using=self.db_for_write())
        request.session[SESSION_KEY] = str(record.pk)
        request.session[SEEN_AT_KEY] = _epoch(now)
        request.session[BOUND_KEY] = record.session_key
        self.remember(request, record)
        return record

    def apply(
        self, record: OAuthSession, tokens: TokenResponse, claims: Mapping[str, Any] | None, now: datetime
    ) -> None:
        """Copy a token response (and its validated ID token claims) onto the record."""
        record.access_token = tokens.access_token
        id_exp = datetime.fromtimestamp(claims["exp"], tz=UTC) if claims else None
        # Without expires_in, fall back to the ID token's lifetime, then to a conservative five minutes.
        record.access_expires_at = _expiry(tokens.expires_in, now) or id_exp or now + timedelta(minutes=5)
        if claims is not None and tokens.id_token:
            record.id_token = tokens.id_token
            # OIDC Core §12.2 compares a refreshed ID token with the original authentication's: a refreshed token
            # may omit auth_time and nonce, so the session keeps the original ones for the next comparison.
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
        self._warn_if_short_lived(record, now)

    def _warn_if_short_lived(self, record: OAuthSession, now: datetime) -> None:
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

    # --- the refresh, step by step ------------------------------------------------------------------------------

    @sensitive_variables()
    def refresh(
        self, record: OAuthSession, *, force_since: datetime | None = None, request: HttpRequest | None = None
    ) -> OAuthSession:
        """Refresh `record` if it is due, under its row lock, and return the current record.

        Steps: `prepare` (keys, before the lock) → `lock` (and re-read) → `is_due` (another request may have
        refreshed while this one waited) → `call_provider` → `persist` → after commit: signals, revocations. Once
        the token endpoint has answered 200 with a new refresh token, that token is stored whatever happens next.

        `force_since`: refresh unless a refresh already happened at or after this moment (sensitive operations).
        Raises `ReauthenticationRequired` (the session was ended) or `TokenRefreshUnavailable` (transient, or a
        configuration fault of the site; the session and its tokens are kept).

        Called inside a transaction of the caller's (a view under ATOMIC_REQUESTS, say), the refresh runs in a worker
        thread with its own connection and transaction: what the provider answered is committed even if the caller's
        transaction rolls back. Except on SQLite, whose one write lock the caller's transaction may already hold: the
        refresh then joins that transaction (check W016)."""
        using = self.db_for_write()
        connection = connections[using]
        if connection.in_atomic_block and connection.vendor != "sqlite":
            return run_in_own_connection(self._refresh, record, force_since, request)
        return self._refresh(record, force_since, request)

    @sensitive_variables()
    def _refresh(self, record: OAuthSession, force_since: datetime | None, request: HttpRequest | None) -> OAuthSession:
        attempt = RefreshAttempt(
            record=record,
            request=request,
            using=self.db_for_write(),
            force_since=force_since,
            previous_version=record.version,
        )
        try:
            attempt.provider = providers.for_record(record)
        except ProviderNotConfigured as exc:
            # No configured client may use these tokens (and no retry can change that): end the session here, with
            # no call to any provider, rather than answer 503 until someone edits the settings.
            logger.warning("session ended: %s", exc)
            self.end(record, EndReason.PROVIDER_GONE, revoke=False, delete_session=False)
            raise ReauthenticationRequired(EndReason.PROVIDER_GONE) from None
        except ProviderFailure as exc:  # an unusable PROVIDERS setting (check E016): keep the session
            self.unavailable(attempt, exc, "token refresh impossible")
            assert attempt.outcome is not None
            raise attempt.outcome from None
        try:
            self.prepare(attempt.provider)
            with transaction.atomic(using=attempt.using):
                current = attempt.current = self.lock(attempt)
                if not self.is_due(current, timezone.now(), force_since):
                    return current  # another request refreshed while we waited for the lock: use its tokens
                tokens = self.call_provider(attempt)
                if tokens is not None:
                    self.persist(attempt, tokens)
        except InvalidClient as exc:
            self.client_rejected(attempt, exc)
        except ProviderFailure as exc:
            self.unavailable(attempt, exc, "token refresh failed, session kept")
        except DatabaseError as exc:
            self.database_failed(attempt, exc)
        else:
            if attempt.refused is not None:
                self.revoke_tokens(attempt.provider, attempt.refused.refresh_token or "", attempt.refused.access_token)
            if attempt.unusable is not None:
                self.unavailable(attempt, attempt.unusable, "token refresh answer not usable now, refresh token kept")
        if attempt.outcome is not None:
            raise attempt.outcome
        return attempt.current or record

    def prepare(self, provider: Provider) -> None:
        """Fetch what validating the answer needs before taking the lock: no fetch under the lock can then fail
        after the provider rotated the refresh token."""
        discovery.get_metadata(provider)
        discovery.get_jwks(provider)

    def lock(self, attempt: RefreshAttempt) -> OAuthSession:
        """Take the record's row lock and re-read it; an ended record raises `ReauthenticationRequired`."""
        self._lock_timeout(attempt.using)
        current = self.model.objects.using(attempt.using).select_for_update().get(pk=attempt.record.pk)
        attempt.previous_version = current.version
        if current.ended_at is not None:
            raise ReauthenticationRequired(current.ended_reason or ReauthenticationRequired.SESSION_ENDED)
        return current

    def _lock_timeout(self, using: str) -> None:
        """Bound the wait for another request's refresh, so a stuck provider call cannot pile up workers.

        Backstop: the provider calls made while the row is locked end by HTTP_RETRY_BUDGET each (http.py); should
        a worker stay idle in the transaction far past that (stuck), PostgreSQL ends its session and the lock."""
        connection = connections[using]
        if connection.vendor == "postgresql":
            ms = int(oauth_settings.LOCK_TIMEOUT * 1000)
            idle_ms = int((2 * oauth_settings.HTTP_RETRY_BUDGET + 5) * 1000)
            with connection.cursor() as cursor:
                # Both as SET LOCAL (is_local = true), in one round trip.
                cursor.execute(
                    "SELECT set_config('lock_timeout', %s, true), "
                    "set_config('idle_in_transaction_session_timeout', %s, true)",
                    [f"{ms}ms", f"{idle_ms}ms"],
                )

    @sensitive_variables()
    def call_provider(self, attempt: RefreshAttempt) -> TokenResponse | None:
        """The token endpoint call (grant_type=refresh_token). Returns its answer, or None when the session ended
        instead (no refresh token, or the provider refused the grant): then `attempt.outcome` says why."""
        current = attempt.current
        assert current is not None
        if not current.refresh_token:
            self.end_locked(attempt, EndReason.NO_REFRESH_TOKEN, ReauthenticationRequired(EndReason.NO_REFRESH_TOKEN))
            return None
        try:
            assert attempt.provider is not None
            # With DPoP, the new access token is bound to the session's key (its refresh token is not: RFC 9449 §5,
            # so a session without a key — signed in before DPOP was on — gets one now, stored with the answer).
            if not current.dpop_key and dpop.enabled(attempt.provider):
                current.dpop_key = dpop.new_key()
            attempt.tokens = client.refresh(attempt.provider, current.refresh_token, dpop_key=current.dpop_key or None)
        except InvalidGrant as exc:
            self.end_locked(attempt, EndReason.REFRESH_REJECTED, exc)
            return None
        return attempt.tokens

    @sensitive_variables()
    def persist(self, attempt: RefreshAttempt, tokens: TokenResponse) -> None:
        """Validate the answer and write it, versioned. From here on the provider may have rotated the refresh
        token, so every way out stores it: a refused answer ends the session (and is revoked after the commit), an
        answer that cannot be used now keeps the new refresh token alone."""
        current, provider = attempt.current, attempt.provider
        assert current is not None and provider is not None
        if current.dpop_key and tokens.token_type != dpop.SCHEME:
            # A proof was sent and the provider answered an unbound token (RFC 9449 §5): DPOP on says the binding
            # matters, so the answer is refused, its refresh token revoked after the commit, the session ended.
            attempt.refused = tokens
            error = InvalidResponse("the provider answered a Bearer token to a DPoP-bound refresh")
            self.end_locked(attempt, EndReason.REFRESH_REJECTED, error)
            return
        try:
            claims = validate_refreshed_id_token(provider, tokens.id_token, current.claims) if tokens.id_token else None
        except ProviderFailure as exc:
            if exc.retryable:
                # E.g. the ID token names a key the JWKS cannot give us right now, or a clock is wrong (ours or the
                # provider's): not the person's fault. Keep the new refresh token, answer as for an outage.
                self._keep_refresh_token(attempt)
                attempt.unusable = exc
                return
            # A response we can never trust (another subject, issuer, audience): end the session.
            reason = EndReason.SUBJECT_CHANGED if isinstance(exc, SubjectChanged) else EndReason.REFRESH_REJECTED
            attempt.refused = tokens  # revoked once the transaction is over, whatever became of it
            self.end_locked(attempt, reason, exc)
            return
        now = timezone.now()
        self.apply(current, tokens, claims, now)
        current.last_refreshed_at = now
        current.refresh_count += 1
        current.version = attempt.previous_version + 1
        current.last_seen_at = now
        if not self._versioned_update(attempt, **self._token_columns(current)):
            raise TokenRefreshUnavailable("token record changed during refresh")
        request = attempt.request
        logger.info("tokens refreshed for session %s (refresh #%d)", current.pk, current.refresh_count)
        transaction.on_commit(
            lambda: signals.tokens_refreshed.send(self.model, record=current, request=request), using=attempt.using
        )

    # --- how a refresh can end otherwise ------------------------------------------------------------------------

    def end_locked(self, attempt: RefreshAttempt, reason: EndReason, error: Exception) -> None:
        """End the locked record (the session is over); signals follow the commit, then the caller gets
        `ReauthenticationRequired(reason)`."""
        current = attempt.current
        assert current is not None
        self._end(current, reason, attempt.using)
        request = attempt.request
        logger.warning("token refresh refused, session ended (%s): %s", reason, error)

        def after_commit() -> None:
            signals.token_refresh_failed.send(self.model, record=current, request=request, error=error, transient=False)
            signals.oauth_session_ended.send(self.model, record=current, reason=reason, ended_by="")

        transaction.on_commit(after_commit, using=attempt.using)
        attempt.outcome = ReauthenticationRequired(reason)

    def unavailable(self, attempt: RefreshAttempt, error: Exception, message: str) -> None:
        """The refresh could not be done now; the session and its tokens are kept."""
        logger.warning("%s (%s): %s", message, type(error).__name__, error)
        signals.token_refresh_failed.send(
            self.model, record=attempt.current or attempt.record, request=attempt.request, error=error, transient=True
        )
        attempt.outcome = TokenRefreshUnavailable(str(error), retry_after=getattr(error, "retry_after", None))

    def client_rejected(self, attempt: RefreshAttempt, error: InvalidClient) -> None:
        """invalid_client / unauthorized_client: the site's credentials or registration (an expired client secret),
        not this person's grant. Every session keeps its tokens; refreshes resume once it is fixed. One ERROR line
        a minute across processes (the shared cache), not one per request of every user."""
        level = logging.ERROR if _first_in(60, "client-rejected") else logging.WARNING
        logger.log(level, "token refresh refused: the provider rejected this client (%s); run oidc_doctor", error)
        signals.client_rejected.send(self.model, error=error, request=attempt.request)
        self.unavailable(attempt, error, "token refresh failed, sessions kept")

    def database_failed(self, attempt: RefreshAttempt, error: DatabaseError) -> None:
        if attempt.tokens is not None and attempt.refused is None:
            # The provider answered and then the write or the COMMIT failed: save the new refresh token in a
            # transaction of its own (the failed one was rolled back) before anything can present the spent one.
            # A no-op if the commit did go through (the version moved on).
            self._rescue_refresh_token(attempt)
            message = "token refresh not stored; new refresh token kept"  # i18n: ignore - log
        elif attempt.refused is not None:
            # A response refused for good, and ending the session failed: at least do not leave its token alive.
            self.revoke_tokens(attempt.provider, attempt.refused.refresh_token or "", attempt.refused.access_token)
            message = "token refresh refused; the session could not be ended"  # i18n: ignore - log
        else:
            # PostgreSQL lock_timeout, SQLite "database is locked": another refresh is taking too long.
            message = "token refresh lock not acquired in time"  # i18n: ignore - log
        self.unavailable(attempt, error, message)
        attempt.outcome = TokenRefreshUnavailable("token record could not be written")

    # --- versioned writes ---------------------------------------------------------------------------------------

    def _token_columns(self, record: OAuthSession) -> dict[str, Any]:
        # Not session_key: `follow_session_key` keeps it in step with the browser's session without the row lock.
        return {
            f.attname: getattr(record, f.attname)
            for f in self.model._meta.concrete_fields
            if not f.primary_key and f.attname != "session_key"
        }

    def _versioned_update(self, attempt: RefreshAttempt, **columns: Any) -> bool:
        """Write `columns` only if nobody else wrote the row since the version read under the lock: an older token
        set can never overwrite a newer one."""
        qs = self.model.objects.using(attempt.using).filter(pk=attempt.record.pk, version=attempt.previous_version)
        return qs.update(**columns) == 1

    @sensitive_variables()
    def _keep_refresh_token(self, attempt: RefreshAttempt) -> bool:
        """The provider rotated the refresh token but the rest of its answer cannot be used now: store the new
        refresh token alone, keep the old access and ID tokens, so the next attempt presents the new one and never
        a spent one (which a provider treats as theft)."""
        current, tokens = attempt.current, attempt.tokens
        assert current is not None and tokens is not None
        current.refresh_token = tokens.refresh_token or current.refresh_token
        if tokens.refresh_token and tokens.refresh_expires_in:
            current.refresh_expires_at = _expiry(tokens.refresh_expires_in, timezone.now())
        current.version = attempt.previous_version + 1
        kept = self._versioned_update(
            attempt,
            refresh_token=current.refresh_token,
            refresh_expires_at=current.refresh_expires_at,
            version=current.version,
        )
        if not kept:
            # Only a writer that ignored the row lock can get here; say so loudly, the next refresh may fail.
            logger.error("new refresh token not stored: the token record was changed without its lock")
        return kept

    @sensitive_variables()
    def _rescue_refresh_token(self, attempt: RefreshAttempt) -> None:
        try:
            with transaction.atomic(using=attempt.using):
                current = self.model.objects.using(attempt.using).select_for_update().get(pk=attempt.record.pk)
                if current.version == attempt.previous_version and current.ended_at is None:
                    attempt.current = current
                    self._keep_refresh_token(attempt)
        except DatabaseError as exc:
            logger.error("new refresh token could not be stored (%s): the next refresh may fail", type(exc).__name__)

    def _end(self, record: OAuthSession, reason: str, using: str, ended_by: str = "") -> None:
        record.ended_at = timezone.now()
        record.ended_reason = reason
        record.ended_by = ended_by[:150]
        for name in TOKEN_FIELDS:
            setattr(record, name, "")
        record.version += 1
        record.save(using=using)

    # --- ending -------------------------------------------------------------------------------------------------

    @sensitive_variables()
    def end(
        self,
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
        using = self.db_for_write()
        with transaction.atomic(using=using):
            current = self.model.objects.using(using).select_for_update().filter(pk=record.pk).first()
            if current is None or current.ended_at is not None:
                return None
            refresh_token, access_token = current.refresh_token, current.access_token
            self._end(current, reason, using, ended_by)
        revoked = self.revoke_tokens(self.provider_of(current), refresh_token, access_token) if revoke else False
        if delete_session and current.session_key:
            session_store(current.session_key).delete()
        signals.oauth_session_ended.send(self.model, record=current, reason=reason, ended_by=ended_by)
        return revoked

    def provider_of(self, record: OAuthSession) -> Provider | None:
        """The record's provider, or None (logged) if it is no longer configured."""
        try:
            return providers.for_record(record)
        except ProviderFailure as exc:
            logger.warning("%s", exc)
            return None

    @sensitive_variables()
    def revoke_tokens(self, provider: Provider | None, refresh_token: str, access_token: str = "") -> bool:
        """Best-effort RFC 7009 revocation at `provider`; failures are logged, never raised (the local session ends
        anyway)."""
        token, hint = (refresh_token, "refresh_token") if refresh_token else (access_token, "access_token")
        if not token or provider is None:
            return False
        try:
            return client.revoke(provider, token, hint)
        except ProviderFailure as exc:
            logger.warning("token revocation failed (%s): %s", type(exc).__name__, exc)
            return False


_instance: TokenStore | None = None


def token_store() -> TokenStore:
    """The configured token store (OAUTH_CLIENT["TOKEN_STORE_CLASS"]), one instance per process."""
    global _instance
    if _instance is None:
        _instance = oauth_settings.TOKEN_STORE_CLASS()
    return _instance


def _reset(*, setting: str, **kwargs: Any) -> None:
    global _instance
    if setting == "OAUTH_CLIENT":
        _instance = None


setting_changed.connect(_reset)
