"""Batch clean-up of token records, for cron (`manage.py oauth_sessions_prune`), safe on several hosts at once.

1. Records ended without revocation (their Django session was deleted, e.g. by `clearsessions`): revoke.
2. Active records whose Django session is gone or expired: end (SESSION_GONE) and revoke.
3. Active records that can no longer be refreshed (refresh token expired, or none and the tokens expired):
   end (EXPIRED) and revoke what is left.
4. Delete ended records older than `keep_ended`, used logout-token jtis past their lifetime, and events older
   than `keep_events`.

Each batch is claimed in one short transaction that locks its rows with `SELECT … FOR UPDATE SKIP LOCKED` on
PostgreSQL (concurrent runs take different rows and never wait for each other; SQLite serializes writers
anyway), strips the tokens and commits; the revocation calls happen after the commit, so no lock is held
across the network — the same order as `store.end`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import import_module
from typing import Any

from django.conf import settings
from django.db import connections, router, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from oauth_client import signals, store
from oauth_client.models import OAuthEvent, OAuthSession, UsedLogoutToken
from oauth_client.redaction import TOKEN_FIELDS

logger = logging.getLogger("oauth_client.prune")
Reason = OAuthSession.EndReason


@dataclass
class PruneResult:
    revoked_pending: int = 0
    ended_session_gone: int = 0
    ended_expired: int = 0
    revocations_confirmed: int = 0
    deleted_records: int = 0
    deleted_logout_tokens: int = 0
    deleted_events: int = 0


def _has_tokens() -> Q:
    return ~Q(refresh_token="") | ~Q(access_token="") | ~Q(id_token="")


def pending_revocation() -> QuerySet[OAuthSession]:
    """Ended records that still hold tokens."""
    return OAuthSession.objects.filter(ended_at__isnull=False).filter(_has_tokens())


def _session_model() -> Any:
    """The Django session model when sessions live in the database (db, cached_db), else None."""
    engine = import_module(settings.SESSION_ENGINE).SessionStore
    get_model_class = getattr(engine, "get_model_class", None)
    return get_model_class() if get_model_class else None


def session_gone(now: datetime, batch_size: int) -> Iterator[QuerySet[OAuthSession]]:
    """Querysets of active records whose Django session no longer exists (or has expired)."""
    model = _session_model()
    active = OAuthSession.objects.active()
    if model is not None:
        live = model.objects.filter(session_key=OuterRef("session_key"), expire_date__gt=now)
        yield active.filter(~Exists(live))
        return
    # Cache or file sessions: ask the session engine, one page of records at a time.
    engine = import_module(settings.SESSION_ENGINE).SessionStore
    last = None
    while True:
        page = active.order_by("pk").only("pk", "session_key")
        if last is not None:
            page = page.filter(pk__gt=last)
        rows = list(page[:batch_size])
        if not rows:
            return
        last = rows[-1].pk
        gone = [r.pk for r in rows if not r.session_key or not engine().exists(r.session_key)]
        if gone:
            yield active.filter(pk__in=gone)


def _claim(qs: QuerySet[OAuthSession], batch_size: int, reason: str | None, now: datetime) -> list[OAuthSession]:
    """Lock one batch (skipping rows another run holds), strip its tokens (and end it), commit.

    Returns the records as read under the lock, tokens included, for revocation after the commit."""
    using = router.db_for_write(OAuthSession)
    skip_locked = bool(connections[using].features.has_select_for_update_skip_locked)
    with transaction.atomic(using=using):
        rows = list(qs.using(using).select_for_update(skip_locked=skip_locked).order_by("pk")[:batch_size])
        if rows:
            changes: dict[str, object] = dict.fromkeys(TOKEN_FIELDS, "")
            if reason is not None:
                changes.update(ended_at=now, ended_reason=reason, ended_by="prune")
            OAuthSession.objects.using(using).filter(pk__in=[r.pk for r in rows]).update(
                version=F("version") + 1, **changes
            )
    return rows


def _drain(
    qs: QuerySet[OAuthSession],
    *,
    reason: str | None,
    batch_size: int,
    now: datetime,
    result: PruneResult,
) -> int:
    """Claim and revoke batch after batch until nothing in `qs` is left; returns how many were claimed."""
    total = 0
    while True:
        rows = _claim(qs, batch_size, reason, now)
        if not rows:
            return total
        total += len(rows)
        token_store = store.token_store()
        for record in rows:
            provider = token_store.provider_of(record)
            if token_store.revoke_tokens(provider, record.refresh_token, record.access_token):
                result.revocations_confirmed += 1
            if reason is not None:
                record.ended_at, record.ended_reason, record.ended_by = now, reason, "prune"
                signals.oauth_session_ended.send(OAuthSession, record=record, reason=reason, ended_by="prune")


def _delete_in_batches(make_qs: Callable[[], QuerySet], batch_size: int) -> int:
    """Delete what `make_qs()` selects, `batch_size` rows per statement (short locks, bounded memory)."""
    deleted = 0
    while True:
        qs = make_qs()
        pks = list(qs.values_list("pk", flat=True)[:batch_size])
        if not pks:
            return deleted
        deleted += qs.model.objects.filter(pk__in=pks).delete()[1].get(qs.model._meta.label, 0)


def run(
    *,
    batch_size: int = 200,
    keep_ended: timedelta = timedelta(days=30),
    keep_events: timedelta = timedelta(days=30),
    now: datetime | None = None,
) -> PruneResult:
    now = now or timezone.now()
    result = PruneResult()
    result.revoked_pending = _drain(pending_revocation(), reason=None, batch_size=batch_size, now=now, result=result)
    for qs in session_gone(now, batch_size):
        result.ended_session_gone += _drain(
            qs, reason=Reason.SESSION_GONE, batch_size=batch_size, now=now, result=result
        )
    expired = OAuthSession.objects.in_state(OAuthSession.State.EXPIRED, now)
    result.ended_expired = _drain(expired, reason=Reason.EXPIRED, batch_size=batch_size, now=now, result=result)

    cutoff = now - keep_ended
    result.deleted_records = _delete_in_batches(
        lambda: OAuthSession.objects.filter(ended_at__lt=cutoff).exclude(_has_tokens()), batch_size
    )
    result.deleted_logout_tokens = _delete_in_batches(
        lambda: UsedLogoutToken.objects.filter(expires_at__lt=now), batch_size
    )
    result.deleted_events = _delete_in_batches(
        lambda: OAuthEvent.objects.filter(created_at__lt=now - keep_events), batch_size
    )
    logger.info("prune: %s", result)
    return result


def preview(*, keep_ended: timedelta, keep_events: timedelta, now: datetime | None = None) -> dict[str, int]:
    """What `run` would do, counted without changing anything (`--dry-run`)."""
    now = now or timezone.now()
    return {
        "revoke_pending": pending_revocation().count(),
        "end_session_gone": sum(qs.count() for qs in session_gone(now, 1000)),
        "end_expired": OAuthSession.objects.in_state(OAuthSession.State.EXPIRED, now).count(),
        "delete_records": OAuthSession.objects.filter(ended_at__lt=now - keep_ended).exclude(_has_tokens()).count(),
        "delete_logout_tokens": UsedLogoutToken.objects.filter(expires_at__lt=now).count(),
        "delete_events": OAuthEvent.objects.filter(created_at__lt=now - keep_events).count(),
    }
