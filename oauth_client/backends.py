"""Authentication backend for users signed in through the provider (no passwords are checked here)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.contrib.auth.backends import ModelBackend

_preloaded: ContextVar[Any] = ContextVar("oauth_client_preloaded_user", default=None)


@contextmanager
def preloaded_user(user: Any) -> Iterator[None]:
    """Let `get_user` use a user already loaded with the token record (saves one query per request).

    Django's `get_user` still checks the session's auth hash against this user, as for any backend."""
    token = _preloaded.set(user)
    try:
        yield
    finally:
        _preloaded.reset(token)


class OAuthBackend(ModelBackend):
    """Loads users for sessions created by the callback view; never authenticates credentials itself."""

    def authenticate(self, request, **credentials):  # type: ignore[no-untyped-def, override]
        return None

    def get_user(self, user_id: Any) -> Any:
        user = _preloaded.get()
        if user is not None and str(user.pk) == str(user_id):
            return user if self.user_can_authenticate(user) else None
        return super().get_user(user_id)
