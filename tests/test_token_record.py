"""The token record as stored: the per-request read (compiled once, `oauth_client.queries`) and lazy decryption."""

from __future__ import annotations

import logging
import pickle
import threading
import uuid
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from oauth_client import crypto, queries
from oauth_client.models import OAuthSession
from oauth_client.store import TokenSet

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


def test_per_request_read_equals_the_orm_and_brings_the_user_in_one_query():
    record = make_record()
    expected = OAuthSession.objects.select_related("user").get(pk=record.pk)

    with CaptureQueriesContext(connection) as captured:
        loaded = queries.active_record(str(record.pk))
        assert loaded is not None
        user = loaded.user  # attached, not fetched
    assert len(captured.captured_queries) == 1
    assert queries.compiled(connection.alias) is not None  # the compiled statement, not the fallback

    assert field_values(loaded) == field_values(expected)
    assert user_values(user) == user_values(expected.user)
    assert loaded.claims["address"]["locality"] == "Montréal" and loaded.claims["name"].endswith("🦫")
    assert loaded._state.adding is False and loaded._state.db == connection.alias
    # The instance behaves as an ORM one: it can be saved and re-read.
    loaded.sid = "sid-2"
    loaded.save()
    assert OAuthSession.objects.get(pk=record.pk).sid == "sid-2"


@pytest.mark.parametrize("record_id", ["", "not-a-uuid", "1 OR 1=1", "'; DROP TABLE x; --", 12, None])
def test_malformed_ids_read_as_no_record(record_id):
    make_record()
    assert queries.active_record(record_id) is None


def test_unknown_and_ended_records_read_as_none():
    record = make_record()
    assert queries.active_record(str(uuid.uuid4())) is None
    OAuthSession.objects.filter(pk=record.pk).update(ended_at=timezone.now())
    assert queries.active_record(record.pk) is None


def test_falls_back_to_the_orm_when_the_statement_cannot_be_compiled(monkeypatch):
    record = make_record()
    monkeypatch.setattr(queries, "_compiled", {connection.alias: None})
    loaded = queries.active_record(record.pk)
    assert loaded is not None and field_values(loaded) == field_values(OAuthSession.objects.get(pk=record.pk))
    assert queries.active_record("not-a-uuid") is None


def test_tokens_are_decrypted_only_when_read(monkeypatch):
    record = make_record()
    calls: list[str] = []
    real = crypto.decrypt
    monkeypatch.setattr(crypto, "decrypt", lambda value: calls.append(value) or real(value))

    loaded = queries.active_record(record.pk)
    assert loaded is not None
    assert loaded.expires_at == record.id_token_expires_at
    assert calls == []  # a freshness check decrypts nothing
    assert "access-" not in repr(loaded.__dict__)  # and nothing readable sits in the instance
    assert loaded.access_token == record.access_token
    assert len(calls) == 1
    assert loaded.access_token == record.access_token
    assert len(calls) == 1  # decrypted once, then kept
    assert loaded.has_refresh_token and len(calls) == 2


def test_saving_without_touching_tokens_keeps_their_ciphertext():
    record = make_record()

    def raw() -> tuple[str, str, str]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT access_token, id_token, refresh_token FROM oauth_client_oauthsession WHERE id = %s",
                [OAuthSession._meta.pk.get_db_prep_value(record.pk, connection)],
            )
            return cursor.fetchone()

    before = raw()
    loaded = queries.active_record(record.pk)
    assert loaded is not None
    loaded.refresh_count += 1
    loaded.save()
    assert raw() == before  # written back as read, not re-encrypted

    loaded.access_token = "access-new"
    loaded.save()
    after = raw()
    assert after[0] != before[0] and after[0].startswith("gAAAA") and "access-new" not in after[0]
    assert after[1:] == before[1:]
    assert OAuthSession.objects.get(pk=record.pk).access_token == "access-new"


def test_a_token_whose_key_was_removed_reads_as_empty(settings, caplog):
    record = make_record()
    settings.OAUTH_CLIENT = {**settings.OAUTH_CLIENT, "ENCRYPTION_KEYS": [Fernet.generate_key().decode()]}
    loaded = queries.active_record(record.pk)
    assert loaded is not None
    with caplog.at_level(logging.WARNING, logger="oauth_client.crypto"):
        assert not loaded.has_refresh_token  # unusable, so not "held on the server"
        assert loaded.refresh_token == ""
        assert not TokenSet.from_record(loaded).has_refresh_token
    assert "could not be decrypted" in caplog.text and "refresh-" not in caplog.text


def test_every_other_read_gives_plain_tokens():
    record = make_record()
    qs = OAuthSession.objects.filter(pk=record.pk)
    assert list(qs.values_list("refresh_token", flat=True)) == [record.refresh_token]
    assert list(qs.values("access_token")) == [{"access_token": record.access_token}]
    assert qs.annotate(t=F("id_token")).get().t == record.id_token
    assert qs.values_list("pk", "refresh_token").in_bulk([record.pk])  # no sealed values anywhere
    assert qs.get().__dict__["access_token"] == record.access_token  # ORM instances are decrypted at once


def test_sealed_tokens_cannot_be_mistaken_for_tokens():
    record = make_record()
    loaded = queries.active_record(record.pk)
    assert loaded is not None
    sealed = loaded.__dict__["refresh_token"]
    assert isinstance(sealed, crypto.Sealed) and repr(sealed) == "<Sealed token>"
    with pytest.raises(TypeError):
        str(sealed)
    with pytest.raises(TypeError):
        f"{sealed}"


def test_a_loaded_record_survives_pickling_del_and_reload():
    record = make_record()
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        loaded = queries.active_record(record.pk)
        copy = pickle.loads(pickle.dumps(loaded, protocol))
        assert (copy.access_token, copy.refresh_token) == (record.access_token, record.refresh_token)
    loaded = queries.active_record(record.pk)
    assert loaded is not None
    OAuthSession.objects.filter(pk=record.pk).update(access_token="access-changed")
    del loaded.access_token  # Django's way to reload one field
    assert loaded.access_token == "access-changed"


@pytest.mark.parametrize(
    "form", [str.upper, lambda s: "{" + s + "}", lambda s: "urn:uuid:" + s, lambda s: s.replace("-", "")]
)
def test_equivalent_id_spellings_find_what_the_orm_finds(form):
    record = make_record()
    spelled = form(str(record.pk))
    expected = OAuthSession.objects.filter(pk=spelled).first()
    loaded = queries.active_record(spelled)
    assert expected is not None and loaded is not None and loaded.pk == expected.pk


@pytest.mark.django_db(transaction=True)
def test_another_thread_reads_with_its_own_connection():
    record = make_record()
    first = connections["default"]  # this thread's connection object (django.db.connection is only a proxy)
    assert queries.active_record(record.pk) is not None  # compiled here
    expected = field_values(OAuthSession.objects.get(pk=record.pk))
    seen: dict[str, object] = {}

    def read() -> None:
        try:
            loaded = queries.active_record(record.pk)
            seen["values"] = field_values(loaded) if loaded is not None else None
            own = connections["default"]
            statement = queries.compiled(own.alias)
            assert statement is not None
            bound = [
                f.__self__.connection
                for _pos, funcs, _col in queries.converters(statement, own)
                for f in funcs
                if hasattr(getattr(f, "__self__", None), "connection")
            ]
            seen["own"] = own is not first
            seen["bound"] = len(bound)
            seen["foreign"] = [c for c in bound if c is not own]
        finally:
            connections.close_all()

    thread = threading.Thread(target=read)
    thread.start()
    thread.join(30)
    assert seen["values"] == expected
    assert seen["own"] is True
    assert seen["foreign"] == []  # no converter bound to the first thread's connection
    if first.vendor == "sqlite":
        assert seen["bound"]  # SQLite's converters are bound to a connection: the check above had something to check
