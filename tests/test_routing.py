"""Multi-database routing: every read and write of the token store goes through the router.

A router sends the whole site (users, sessions, token records) to the "other" database; the token store must then
create, read, lock, refresh-decide and end records there, and never touch "default" (a `transaction.atomic()` on
the wrong alias would leave `SELECT … FOR UPDATE` outside any transaction, which Django refuses).
"""

from __future__ import annotations

from datetime import timedelta
from importlib import import_module
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import RequestFactory
from django.utils import timezone

from oauth_client import providers
from oauth_client.client import TokenResponse
from oauth_client.exceptions import EndReason, ReauthenticationRequired
from oauth_client.models import OAuthEvent, OAuthSession
from oauth_client.store import TokenStore, token_store

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


class EverythingElsewhere:
    def db_for_read(self, model: Any, **hints: Any) -> str:
        return "other"

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return "other"

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True


class OfflineStore(TokenStore):
    """A store for a test without a provider: nothing to fetch before taking the lock."""

    def prepare(self, provider) -> None:  # type: ignore[no-untyped-def]
        pass


@pytest.fixture
def routed(settings):
    settings.DATABASE_ROUTERS = [f"{__name__}.EverythingElsewhere"]
    settings.OAUTH_CLIENT = {**settings.OAUTH_CLIENT, "TOKEN_STORE_CLASS": f"{__name__}.OfflineStore"}


def request_with_session(user: Any):
    request = RequestFactory().get("/", REMOTE_ADDR="192.0.2.1")
    request.session = import_module(django_settings.SESSION_ENGINE).SessionStore()
    request.user = user
    return request


def test_the_token_store_follows_the_router_and_is_swappable(routed):
    store = token_store()
    assert type(store) is OfflineStore  # TOKEN_STORE_CLASS

    user = get_user_model().objects.create_user("routed-person")
    request = request_with_session(user)
    now = timezone.now()
    tokens = TokenResponse(access_token="access-routed", expires_in=600, id_token="id-routed", refresh_token="")
    claims = {"iss": providers.get().ISSUER, "sub": "routed", "exp": int((now + timedelta(minutes=10)).timestamp())}
    record = store.create(request, user, tokens, claims)

    assert OAuthSession.objects.using("other").filter(pk=record.pk).exists()
    assert not OAuthSession.objects.using("default").exists()

    fresh = request_with_session(user)
    fresh.session = request.session
    assert store.load(fresh).pk == record.pk
    store.touch(fresh)

    # Due, and no refresh token: the locked path ends the session, on "other".
    OAuthSession.objects.using("other").filter(pk=record.pk).update(access_expires_at=now, id_token_expires_at=now)
    due = request_with_session(user)
    due.session = request.session
    with pytest.raises(ReauthenticationRequired) as excinfo:
        store.ensure_fresh(due)
    assert excinfo.value.reason == EndReason.NO_REFRESH_TOKEN
    ended = OAuthSession.objects.using("other").get(pk=record.pk)
    assert ended.ended_reason == EndReason.NO_REFRESH_TOKEN and ended.access_token == ""
    assert OAuthEvent.objects.using("other").filter(kind=OAuthEvent.Kind.ENDED).exists()

    second = store.create(request_with_session(user), user, tokens, {**claims, "sub": "routed-2"})
    assert store.end(second, EndReason.ADMIN, ended_by="admin", revoke=False) is False
    assert OAuthSession.objects.using("other").get(pk=second.pk).ended_reason == EndReason.ADMIN
    assert not OAuthSession.objects.using("default").exists()
    assert not OAuthEvent.objects.using("default").exists()
