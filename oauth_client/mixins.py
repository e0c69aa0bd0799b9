"""Class-based-view counterparts of the decorators (they raise; the middleware answers)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from oauth_client.decorators import refresh_before, require_sign_in


class OAuthLoginRequiredMixin:
    """Sends anonymous visitors (and sessions without tokens) to sign in through the provider."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        require_sign_in(request)
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


class RefreshTokensMixin:
    """Refreshes the tokens before a sensitive view runs; `refresh_max_age` = refresh only if older."""

    refresh_max_age: int | None = None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refresh_before(request, max_age=self.refresh_max_age)
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
