"""Clean-up: oauth_sessions_prune ends the token records of expired or vanished sessions, and revokes and removes
what is dead."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.utils import timezone

from oauth_client import prune, signals
from oauth_client.models import OAuthEvent, OAuthSession, UsedLogoutToken
from tests.conftest import requires_postgres
from tests.session_helpers import is_signed_in, newest_record, signed_in_as

pytestmark = pytest.mark.django_db(transaction=True)


def run_prune(*args: str) -> str:
    out = StringIO()
    call_command("oauth_sessions_prune", *args, stdout=out)
    return out.getvalue()


def expire_django_session(record: OAuthSession) -> None:
    Session.objects.filter(session_key=record.session_key).update(expire_date=timezone.now() - timedelta(seconds=1))


def test_after_clearsessions_prune_ends_the_record_and_revokes_its_token(site):
    browser = signed_in_as(site)
    record = newest_record()
    refresh_token = record.refresh_token
    expire_django_session(record)

    call_command("clearsessions")  # Django's own fast delete: no receiver of ours, no network call
    assert not is_signed_in(site, browser)
    assert not site.provider.is_refresh_token_revoked(refresh_token)

    out = run_prune()
    assert "ended_session_gone: 1" in out and "revocations_confirmed: 1" in out
    assert site.provider.is_refresh_token_revoked(refresh_token)
    record.refresh_from_db()
    assert record.ended_reason == OAuthSession.EndReason.SESSION_GONE
    assert not record.refresh_token and not record.access_token and not record.id_token
    assert OAuthEvent.objects.filter(kind=OAuthEvent.Kind.ENDED, session=record).count() == 1
    # Nothing left to do the second time.
    assert "revocations_confirmed: 0" in run_prune()


def test_prune_ends_records_whose_session_vanished_without_a_signal(site):
    """Cache sessions evicted, rows deleted by hand: no post_delete, so prune has to notice."""
    gone_browser = signed_in_as(site)
    gone = newest_record()
    kept_browser = signed_in_as(site)
    refresh_token = gone.refresh_token
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_session WHERE session_key = %s", [gone.session_key])

    out = run_prune()
    assert "ended_session_gone: 1" in out
    gone.refresh_from_db()
    assert gone.ended_reason == OAuthSession.EndReason.SESSION_GONE and gone.ended_by == "prune"
    assert site.provider.is_refresh_token_revoked(refresh_token)
    assert not is_signed_in(site, gone_browser)
    assert is_signed_in(site, kept_browser)


def test_prune_ends_records_that_can_no_longer_refresh(site):
    expired_browser = signed_in_as(site)
    expired = newest_record()
    healthy_browser = signed_in_as(site)
    healthy = newest_record()
    OAuthSession.objects.filter(pk=expired.pk).update(refresh_expires_at=timezone.now() - timedelta(minutes=1))

    out = run_prune()
    assert "ended_expired: 1" in out
    expired.refresh_from_db()
    assert expired.ended_reason == OAuthSession.EndReason.EXPIRED and not expired.refresh_token
    assert not is_signed_in(site, expired_browser)
    assert is_signed_in(site, healthy_browser)
    healthy.refresh_from_db()
    assert healthy.is_active and healthy.refresh_token


def _record(user, **fields) -> OAuthSession:
    values = {
        "user": user,
        "issuer": "https://issuer.example",
        "subject": "s",
        "session_key": uuid.uuid4().hex,
        "access_expires_at": timezone.now() + timedelta(minutes=5),
        **fields,
    }
    return OAuthSession.objects.create(**values)


def test_old_records_logout_token_ids_and_events_are_deleted(site, django_user_model):
    user = django_user_model.objects.create_user("someone")
    now = timezone.now()
    old = _record(user, ended_at=now - timedelta(days=40), ended_reason="logout")
    recent = _record(user, ended_at=now - timedelta(days=2), ended_reason="logout")
    # An old ended record that still holds a token is revoked first, and only then deleted.
    pending = _record(user, ended_at=now - timedelta(days=40), ended_reason="session_gone", access_token="opaque")
    OAuthEvent.objects.create(kind=OAuthEvent.Kind.LOGIN, session=old, created_at=now - timedelta(days=31))
    fresh_event = OAuthEvent.objects.create(kind=OAuthEvent.Kind.ENDED, session=old)
    UsedLogoutToken.objects.create(key="a" * 64, expires_at=now - timedelta(seconds=1))
    UsedLogoutToken.objects.create(key="b" * 64, expires_at=now + timedelta(minutes=5))

    dry = run_prune("--dry-run")
    assert "delete_records: 1" in dry and "revoke_pending: 1" in dry and "delete_events: 1" in dry
    assert OAuthSession.objects.count() == 3

    out = run_prune("--batch-size", "1")
    assert "deleted_records: 2" in out and "deleted_events: 1" in out and "deleted_logout_tokens: 1" in out
    assert list(OAuthSession.objects.all()) == [recent]
    assert not OAuthSession.objects.filter(pk=pending.pk).exists()
    fresh_event.refresh_from_db()
    assert fresh_event.session is None  # the chart keeps counting it
    assert list(UsedLogoutToken.objects.values_list("key", flat=True)) == ["b" * 64]


def test_bad_options_are_refused(site):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        run_prune("--batch-size", "0")
    with pytest.raises(CommandError):
        run_prune("--keep-ended-days", "-1")


def _dead_records(user, n: int) -> list[OAuthSession]:
    # Session keys that never existed and no tokens: no network calls, only the claiming is exercised.
    return OAuthSession.objects.bulk_create(
        [
            OAuthSession(
                user=user,
                issuer="https://issuer.example",
                subject="s",
                session_key=f"never-{i}",
                access_expires_at=timezone.now() + timedelta(minutes=5),
            )
            for i in range(n)
        ]
    )


@requires_postgres
def test_concurrent_runs_share_the_work_and_end_each_record_once(site, django_user_model):
    user = django_user_model.objects.create_user("someone")
    records = _dead_records(user, 300)
    ended: list = []
    lock = threading.Lock()

    def on_end(sender, record, **kwargs):
        with lock:
            ended.append(record.pk)

    signals.oauth_session_ended.connect(on_end)
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def host() -> None:
        try:
            barrier.wait(timeout=30)
            prune.run(batch_size=20)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    try:
        threads = [threading.Thread(target=host) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        signals.oauth_session_ended.disconnect(on_end)
    assert not errors
    assert sorted(ended) == sorted(r.pk for r in records)
    assert not OAuthSession.objects.active().exists()


@requires_postgres
def test_rows_locked_by_another_run_are_skipped_not_waited_for(site, django_user_model):
    user = django_user_model.objects.create_user("someone")
    locked, free = _dead_records(user, 2)
    holding, release = threading.Event(), threading.Event()

    def other_host() -> None:
        try:
            with transaction.atomic():
                OAuthSession.objects.select_for_update().get(pk=locked.pk)
                holding.set()
                release.wait(timeout=60)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_host)
    thread.start()
    try:
        assert holding.wait(timeout=30)
        result = prune.run(batch_size=10)
        assert result.ended_session_gone == 1
        assert OAuthSession.objects.get(pk=free.pk).ended_at is not None
        assert OAuthSession.objects.get(pk=locked.pk).ended_at is None
    finally:
        release.set()
        thread.join(timeout=60)
    assert prune.run(batch_size=10).ended_session_gone == 1
    assert not OAuthSession.objects.active().exists()


def test_prune_asks_the_session_engine_when_sessions_are_not_in_the_database(site, settings, django_user_model):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    from django.contrib.sessions.backends.cache import SessionStore

    live = SessionStore()
    live["x"] = 1
    live.save()
    user = django_user_model.objects.create_user("someone")
    kept = _record(user, session_key=live.session_key)
    gone = _record(user, session_key="evicted-from-the-cache")

    assert prune.run().ended_session_gone == 1
    assert OAuthSession.objects.get(pk=kept.pk).is_active
    assert OAuthSession.objects.get(pk=gone.pk).ended_reason == OAuthSession.EndReason.SESSION_GONE
