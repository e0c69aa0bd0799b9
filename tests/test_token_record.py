"""The token record as stored and read: the store's one indexed read (public ORM), the session's "next due" hint,
and the record loaded lazily, once per request."""

from __future__ import annotations

import logging
import pickle
import uuid
from datetime import timedelta
from importlib import import_module

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.db.models import F
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from oauth_client.models import OAuthSession
from oauth_client.store import DUE_AT_KEY, SESSION_KEY, TokenSet, token_store

pytestmark = pytest.mark.django_db

CLAIMS = {
    "iss": "https://id.example/",
    "sub": "auth0|5f1c",
    "aud": ["demo-site", "https://api.example/"],
    "exp": 4_102_444_800,
    "name": "Zoé Côté 🦫",
    "address": {"locality": "Montréal", "nested": [1, 2.5, None, True]},
}


def make_record(**overrides: object) -> OAuthSession:
    user = get_user_model().objects.create_user(
        username=f"u{uuid.uuid4().hex[:8]}", email="z@example.com", first_name="Zoé", last_name="Côté"
    )
    now = timezone.now()
    fields: dict[str, object] = dict(
        user=user,
        issuer=CLAIMS["iss"],
        subject=CLAIMS["sub"],
        sid="sid-1",
        session_key="k" * 32,
        access_token="access-" + "a" * 700,
        id_token="id-" + "i" * 900,
        refresh_token="refresh-" + "r" * 40,
        access_expires_at=now + timedelta(minutes=10),
        id_token_expires_at=now + timedelta(minutes=5),
        refresh_expires_at=now + timedelta(days=30),
        last_refreshed_at=now - timedelta(minutes=1),
        refresh_count=3,
        version=7,
        scope="openid profile email offline_access",
        claims=CLAIMS,
        userinfo={"sub": CLAIMS["sub"], "email": "z@example.com"},
        client_ip="2001:db8::1",
        user_agent="Mozilla/5.0",
    )
    fields.update(overrides)
    return OAuthSession.objects.create(**fields)


def field_values(record: OAuthSession) -> dict[str, object]:
    return {f.attname: getattr(record, f.attname) for f in OAuthSession._meta.concrete_fields}


def user_values(user: object) -> dict[str, object]:
    return {f.attname: getattr(user, f.attname) for f in get_user_model()._meta.concrete_fields}


def test_the_store_reads_one_record_with_one_indexed_query_through_the_orm():
    record = make_record()
    expected = OAuthSession.objects.get(pk=record.pk)
    with CaptureQueriesContext(connection) as captured:
        loaded = token_store().get(str(record.pk))
    assert loaded is not None and len(captured.captured_queries) == 1
    assert field_values(loaded) == field_values(expected)
    assert loaded.claims["address"]["locality"] == "Montréal" and loaded.claims["name"].endswith("🦫")
    # An ordinary ORM instance: it can be saved and re-read.
    loaded.sid = "sid-2"
    loaded.save()
    assert OAuthSession.objects.get(pk=record.pk).sid == "sid-2"


@pytest.mark.parametrize("record_id", ["", "not-a-uuid", "1 OR 1=1", "'; DROP TABLE x; --", 12, None])
def test_malformed_ids_read_as_no_record(record_id):
    make_record()
    assert token_store().get(record_id) is None


def test_unknown_and_ended_records_read_as_none():
    record = make_record()
    assert token_store().get(str(uuid.uuid4())) is None
    OAuthSession.objects.filter(pk=record.pk).update(ended_at=timezone.now())
    assert token_store().get(record.pk) is None


def request_for(record: OAuthSession, user: object | None = None):
    request = RequestFactory().get("/")
    request.session = import_module(django_settings.SESSION_ENGINE).SessionStore()
    request.session[SESSION_KEY] = str(record.pk)
    request.user = user if user is not None else record.user
    return request


def test_the_record_is_read_once_per_request_and_sets_the_due_hint():
    record = make_record()
    request = request_for(record)
    store = token_store()
    with CaptureQueriesContext(connection) as captured:
        assert store.load(request).pk == record.pk
        assert store.load(request).pk == record.pk
    assert len(captured.captured_queries) == 1
    due = request.session[DUE_AT_KEY]
    assert due == int(record.refresh_due_at.timestamp())
    assert store.hint_is_fresh(request, now=record.refresh_due_at - timedelta(seconds=1))
    assert not store.hint_is_fresh(request, now=record.refresh_due_at)


def test_a_record_of_another_user_or_an_anonymous_request_is_not_loaded():
    record = make_record()
    other = make_record().user
    assert token_store().load(request_for(record, other)) is None
    assert token_store().load(request_for(record, AnonymousUser())) is None


def test_a_stale_hint_is_corrected_by_the_read_without_a_refresh():
    """Another request refreshed: this session's hint still names the old due moment; the read corrects it and
    no lock is taken (the record is not due)."""
    record = make_record()
    request = request_for(record)
    request.session[DUE_AT_KEY] = int((timezone.now() - timedelta(minutes=1)).timestamp())
    assert not token_store().hint_is_fresh(request)
    with CaptureQueriesContext(connection) as captured:
        assert token_store().ensure_fresh(request).pk == record.pk
    assert [q["sql"] for q in captured.captured_queries if "FOR UPDATE" in q["sql"].upper()] == []
    assert token_store().hint_is_fresh(request)


def test_a_token_whose_key_was_removed_reads_as_empty(settings, caplog):
    record = make_record()
    settings.OAUTH_CLIENT = {**settings.OAUTH_CLIENT, "ENCRYPTION_KEYS": [Fernet.generate_key().decode()]}
    with caplog.at_level(logging.WARNING, logger="oauth_client.crypto"):
        loaded = token_store().get(record.pk)
        assert loaded is not None
        assert not loaded.has_refresh_token  # unusable, so not "held on the server"
        assert loaded.refresh_token == ""
        assert not TokenSet.from_record(loaded).has_refresh_token
    assert "could not be decrypted" in caplog.text and "refresh-" not in caplog.text


def test_tokens_are_encrypted_in_the_database_and_plain_in_every_read():
    record = make_record()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT access_token, id_token, refresh_token FROM oauth_client_oauthsession WHERE id = %s",
            [OAuthSession._meta.pk.get_db_prep_value(record.pk, connection)],
        )
        raw = cursor.fetchone()
    assert all(value.startswith("gAAAA") for value in raw)
    assert not any(token in "".join(raw) for token in ("access-", "id-", "refresh-"))
    qs = OAuthSession.objects.filter(pk=record.pk)
    assert list(qs.values_list("refresh_token", flat=True)) == [record.refresh_token]
    assert list(qs.values("access_token")) == [{"access_token": record.access_token}]
    assert qs.annotate(t=F("id_token")).get().t == record.id_token
    assert qs.get().access_token == record.access_token


def test_a_loaded_record_survives_pickling_and_reload():
    record = make_record()
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        loaded = token_store().get(record.pk)
        copy = pickle.loads(pickle.dumps(loaded, protocol))
        assert (copy.access_token, copy.refresh_token) == (record.access_token, record.refresh_token)
    loaded = token_store().get(record.pk)
    assert loaded is not None
    OAuthSession.objects.filter(pk=record.pk).update(access_token="access-changed")
    loaded.refresh_from_db(fields=["access_token"])
    assert loaded.access_token == "access-changed"


@pytest.mark.parametrize(
    "form", [str.upper, lambda s: "{" + s + "}", lambda s: "urn:uuid:" + s, lambda s: s.replace("-", "")]
)
def test_equivalent_id_spellings_find_what_the_orm_finds(form):
    record = make_record()
    spelled = form(str(record.pk))
    expected = OAuthSession.objects.filter(pk=spelled).first()
    loaded = token_store().get(spelled)
    assert expected is not None and loaded is not None and loaded.pk == expected.pk


def test_the_record_follows_a_cycled_session_key_once():
    record = make_record()
    request = request_for(record)
    store = token_store()
    store.create(request, record.user, _tokens(), CLAIMS_FOR_CREATE)
    created = token_store().load(request)
    request.session.cycle_key()  # e.g. Django re-hashing the session under a SECRET_KEY_FALLBACKS key
    new_key = request.session.session_key
    assert created.session_key != new_key
    store.follow_session_key(request)
    assert OAuthSession.objects.get(pk=created.pk).session_key == new_key
    with CaptureQueriesContext(connection) as captured:
        store.follow_session_key(request)  # the session notes the key the record has: no query now
    assert captured.captured_queries == []


def test_last_seen_is_not_written_for_a_session_django_signed_out():
    record = make_record()
    request = request_for(record, AnonymousUser())
    with CaptureQueriesContext(connection) as captured:
        token_store().touch(request)
    assert captured.captured_queries == []


@pytest.mark.parametrize(
    ("given", "sent"), [(None, 30), (float("inf"), 30), (float("nan"), 30), (0.4, 1), (7, 7), (86400, 300)]
)
def test_retry_after_passed_on_is_whole_seconds_within_bounds(given, sent):
    from oauth_client.exceptions import TokenRefreshUnavailable, retry_after_seconds

    assert retry_after_seconds(given) == sent
    assert TokenRefreshUnavailable("x", retry_after=given).retry_after == sent


CLAIMS_FOR_CREATE = {"iss": "https://id.example/", "sub": "cycled", "exp": 4_102_444_800}


def _tokens():
    from oauth_client.client import TokenResponse

    return TokenResponse(access_token="access-c", expires_in=600, id_token="id-c", refresh_token="refresh-c")
