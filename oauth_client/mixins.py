"""Class-based-view counterparts of the decorators (they raise; the middleware answers)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from oauth_client.decorators import arefresh_before, arequire_sign_in, refresh_before, require_sign_in


class OAuthLoginRequiredMixin:
    """Sends anonymous visitors (and sessions without tokens) to sign in through the provider."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, "view_is_async", False):
            return self._oauth_login_adispatch(request, *args, **kwargs)
        require_sign_in(request)
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]

    async def _oauth_login_adispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        await arequire_sign_in(request)
        return await super().dispatch(request, *args, **kwargs)  # type: ignore[misc, no-any-return]


class RefreshTokensMixin:
    """Refreshes the tokens before a sensitive view runs; `refresh_max_age` = refresh only if older."""

    refresh_max_age: int | None = None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if getattr(self, "view_is_async", False):
            return self._oauth_refresh_adispatch(request, *args, **kwargs)
        refresh_before(request, max_age=self.refresh_max_age)
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]

    async def _oauth_refresh_adispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        await arefresh_before(request, max_age=self.refresh_max_age)
        return await super().dispatch(request, *args, **kwargs)  # type: ignore[misc, no-any-return]
