"""The older user-mapping hook, OAUTH_CLIENT['USER_MAPPER'] = "dotted.path", kept for projects that use it.

New code overrides `find_user`, `create_user` or `update_user` on a subclass of `oauth_client.backends.OAuthBackend`
instead. A mapper is called as `mapper(request, claims)` and returns a user, or raises `UserRejected`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.auth import get_backends
from django.http import HttpRequest

from oauth_client.backends import OAuthBackend
from oauth_client.exceptions import UserRejected

__all__ = ["UserRejected", "backend", "default_user_mapper", "update_user_from_claims"]


def backend() -> OAuthBackend:
    """The project's OAuthBackend: the first one (or subclass) in AUTHENTICATION_BACKENDS."""
    for found in get_backends():
        if isinstance(found, OAuthBackend):
            return found
    return OAuthBackend()


def default_user_mapper(request: HttpRequest | None, claims: Mapping[str, Any]) -> Any:
    """Find the user linked to (iss, sub), or create one on first sign-in; refresh name and email (the steps of
    the project's OAuthBackend, so a subclass's overrides apply)."""
    return backend().user_for_claims(claims)


def update_user_from_claims(user: Any, claims: Mapping[str, Any]) -> None:
    """Copy name and email from the claims onto the user, for the fields the user model has."""
    backend().update_user(user, claims)
