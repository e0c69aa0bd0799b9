"""End the token record when its user signs out, and keep the event log the admin's chart is drawn from.

No receiver on Django's Session model: a session row is also deleted when its key is cycled (login, a session
hash verified with a SECRET_KEY_FALLBACKS key), and the token record carries over to the new key then. Records of
sessions that really ended are ended where the session is deleted on purpose (`TokenStore.end`) or, for expired and
vanished sessions, by `oauth_sessions_prune`; Django keeps its fast bulk delete in `clearsessions`."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.db import DatabaseError, connections, router, transaction
from django.dispatch import receiver
from django.http import HttpRequest

from oauth_client import signals, store
from oauth_client.models import OAuthEvent, OAuthSession

logger = logging.getLogger("oauth_client.receivers")
Kind = OAuthEvent.Kind


@receiver(user_logged_out)
def end_record_on_logout(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """Any sign-out — this app's logout view, the admin's, a project's own `auth.logout()` — ends the browser's
    token record and revokes its refresh token at once (otherwise only the next prune would)."""
    session = getattr(request, "session", None)
    record_id = session.get(store.SESSION_KEY) if session is not None else None
    if not record_id:
        return
    token_store = store.token_store()
    record = token_store.get(record_id)
    if record is not None:
        by = user.get_username() if user is not None else ""
        token_store.end(record, OAuthSession.EndReason.LOGOUT, ended_by=by, delete_session=False)


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
