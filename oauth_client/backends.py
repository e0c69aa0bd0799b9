"""Authentication backend for users signed in through the provider (no passwords are checked here)."""

from django.contrib.auth.backends import ModelBackend


class OAuthBackend(ModelBackend):
    """Loads users for sessions created by the callback view; never authenticates credentials itself."""

    def authenticate(self, request, **credentials):  # type: ignore[no-untyped-def, override]
        return None
