"""What a developer extending the site writes: hooks (USER_MAPPER, ERROR_VIEW, LOGIN_REDIRECT), class-based views
with the mixins, and views that call the API directly. Used as ROOT_URLCONF via `pytest.mark.urls`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import engines
from django.urls import include, path
from django.views import View

from oauth_client import (
    OAuthLoginRequiredMixin,
    RefreshTokensMixin,
    UserRejected,
    aget_access_token,
    aget_tokens,
    get_access_token,
    get_tokens,
    oauth_login_required,
    refresh_before,
    refresh_tokens,
)
from oauth_client.backends import OAuthBackend
from oauth_client.users import default_user_mapper
from project.urls import urlpatterns as site_urlpatterns

# --- hooks ---------------------------------------------------------------------------------------------------


def only_example_org(request: HttpRequest, claims: Mapping[str, Any]) -> Any:
    """USER_MAPPER that rejects everybody outside example.org."""
    if not str(claims.get("email", "")).endswith("@example.org"):
        raise UserRejected("Only example.org accounts may sign in here.")
    return default_user_mapper(request, claims)


def display_name_from_claims(request: HttpRequest, claims: Mapping[str, Any]) -> Any:
    """USER_MAPPER that creates/updates through the default mapper, then copies `name` to the site's field."""
    user = default_user_mapper(request, claims)
    user.display_name = f"{claims.get('name', '')} (from the provider)"
    user.save(update_fields=["display_name"])
    return user


class ExampleOrgBackend(OAuthBackend):
    """User mapping by subclassing the backend: only example.org people get an account; names get a suffix."""

    def create_user(self, issuer: str, subject: str, claims: Mapping[str, Any]) -> Any:
        if not str(claims.get("email", "")).endswith("@example.org"):
            raise UserRejected("Only example.org accounts may sign in here.")
        return super().create_user(issuer, subject, claims)

    def update_user(self, user: Any, claims: Mapping[str, Any]) -> None:
        super().update_user(user, claims)
        user.display_name = f"{claims.get('name', '')} (from the backend)"
        user.save(update_fields=["display_name"])


class AnyoneBackend(ExampleOrgBackend):
    def create_user(self, issuer: str, subject: str, claims: Mapping[str, Any]) -> Any:
        return OAuthBackend.create_user(self, issuer, subject, claims)


def branded_error(request: HttpRequest, *, status: int, title: str, message: str, **extra: Any) -> HttpResponse:
    """ERROR_VIEW with its own page."""
    code = extra.get("code", "")
    return HttpResponse(f"<h1>Branded: {title}</h1><p>{message}</p><p id=code>{code}</p>", status=status)


def to_sensitive_page(request: HttpRequest, user: Any) -> str:
    """LOGIN_REDIRECT that sends people to the sensitive page."""
    return "/account/sensitive/"


# --- views ---------------------------------------------------------------------------------------------------


class WhoAmI(OAuthLoginRequiredMixin, View):
    def get(self, request: HttpRequest) -> HttpResponse:
        tokens = get_tokens(request)
        return JsonResponse({"sub": tokens.claims["sub"], "refreshed": tokens.last_refreshed_at is not None})


class SensitiveAction(RefreshTokensMixin, View):
    refresh_max_age = 300

    def post(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({"done": True, "refreshed": get_tokens(request).last_refreshed_at is not None})


@oauth_login_required
def hello(request: HttpRequest) -> HttpResponse:
    """A signed-in page that reads no tokens."""
    return HttpResponse(f"Hello {request.user.get_username()}")


@login_required
def plain_hello(request: HttpRequest) -> HttpResponse:
    """The same page with plain Django session authentication."""
    return HttpResponse(f"Hello {request.user.get_username()}")


class ViewFailed(Exception):
    pass


@refresh_tokens
def sensitive_then_fail(request: HttpRequest) -> HttpResponse:
    """A sensitive view whose own work fails after the refresh (its transaction rolls back under ATOMIC_REQUESTS)."""
    raise ViewFailed("the view's own work failed")


def refresh_inside_then_fail(request: HttpRequest) -> HttpResponse:
    """A view that refreshes from inside its own transaction, then fails."""
    refresh_before(request)
    raise ViewFailed("the view's own work failed")


def bare_token_view(request: HttpRequest) -> HttpResponse:
    """No decorator: get_access_token's exceptions are answered by OAuthSessionMiddleware.process_exception."""
    return JsonResponse({"token_length": len(get_access_token(request))})


@oauth_login_required
async def async_whoami(request: HttpRequest) -> HttpResponse:
    tokens = await aget_tokens(request)
    return JsonResponse({"sub": tokens.claims["sub"], "refreshed": tokens.last_refreshed_at is not None})


class AsyncWhoAmI(OAuthLoginRequiredMixin, View):
    async def get(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({"token_length": len(await aget_access_token(request))})


@refresh_tokens
async def async_sensitive(request: HttpRequest) -> HttpResponse:
    tokens = await aget_tokens(request)
    return JsonResponse(
        {"last_refreshed_at": tokens.last_refreshed_at.isoformat() if tokens.last_refreshed_at else None}
    )


@oauth_login_required
async def async_template_page(request: HttpRequest) -> HttpResponse:
    """An async view that renders a template with the request (so every context processor runs)."""
    return HttpResponse(engines["django"].from_string("<p>async page {{ 6|add:1 }}</p>").render({}, request))


urlpatterns = [
    path("ext/async-template/", async_template_page),
    path("ext/async-whoami/", async_whoami),
    path("ext/async-cbv/", AsyncWhoAmI.as_view()),
    path("ext/async-sensitive/", async_sensitive),
    path("ext/whoami/", WhoAmI.as_view()),
    path("ext/sensitive/", SensitiveAction.as_view()),
    path("ext/token/", bare_token_view),
    path("ext/hello/", hello),
    path("ext/sensitive-then-fail/", sensitive_then_fail),
    path("ext/refresh-inside-then-fail/", refresh_inside_then_fail),
    path("ext/plain-hello/", plain_hello),
    path("", include(site_urlpatterns)),
]
