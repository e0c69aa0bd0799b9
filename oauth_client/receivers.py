"""Keep token records in step with Django sessions, and keep the event log the admin's chart is drawn from."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.sessions.models import Session
from django.db import DatabaseError, connections, router, transaction
from django.db.models import F
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

from oauth_client import signals
from oauth_client.models import OAuthEvent, OAuthSession

logger = logging.getLogger("oauth_client.receivers")
Kind = OAuthEvent.Kind


@receiver(post_delete, sender=Session)
def end_records_of_deleted_session(sender: Any, instance: Session, **kwargs: Any) -> None:
    """`clearsessions` and session deletion end the matching token records at once, so nothing can use them.

    Their tokens stay (encrypted) until `oauth_sessions_prune` revokes them at the provider in batches:
    revoking needs the network, which has no place inside a bulk session delete."""
    records = list(
        OAuthSession.objects.filter(session_key=instance.session_key, ended_at__isnull=True).defer(
            "access_token", "id_token", "refresh_token"
        )
    )
    if not records:
        return
    now = timezone.now()
    reason = OAuthSession.EndReason.SESSION_GONE
    OAuthSession.objects.filter(pk__in=[r.pk for r in records], ended_at__isnull=True).update(
        ended_at=now, ended_reason=reason, version=F("version") + 1
    )
    for record in records:
        record.ended_at, record.ended_reason = now, reason
        signals.oauth_session_ended.send(OAuthSession, record=record, reason=reason, ended_by="")


def record_event(kind: str, record: OAuthSession | None, detail: str = "") -> None:
    """Append one event; a failure is logged, never raised (the chart must not break sign-in or refresh)."""
    using = router.db_for_write(OAuthEvent)
    try:
        with transaction.atomic(using=using):
            OAuthEvent.objects.using(using).create(
                kind=kind, session_id=getattr(record, "pk", None), detail=str(detail)[:100]
            )
    except DatabaseError as exc:
        logger.warning("session event not recorded (%s)", type(exc).__name__)


@receiver(signals.oauth_login)
def _login_event(sender: Any, record: OAuthSession, **kwargs: Any) -> None:
    record_event(Kind.LOGIN, record)


@receiver(signals.tokens_refreshed)
def _refresh_event(sender: Any, record: OAuthSession, **kwargs: Any) -> None:
    record_event(Kind.REFRESH, record)


@receiver(signals.token_refresh_failed)
def _refresh_failed_event(sender: Any, record: OAuthSession, error: Exception, transient: bool, **kwargs: Any) -> None:
    if isinstance(error, DatabaseError) and connections[router.db_for_write(OAuthEvent)].vendor == "sqlite":
        # SQLite's one write lock was just busy past its timeout: another write would only wait again.
        return
    record_event(Kind.REFRESH_FAILED, record, f"{type(error).__name__}{' (transient)' if transient else ''}")


@receiver(signals.oauth_session_ended)
def _ended_event(sender: Any, record: OAuthSession, reason: str, **kwargs: Any) -> None:
    record_event(Kind.ENDED, record, reason)
