"""Admin: a read-only registry of the token records — who is signed in, since when, with which provider, when
their tokens last refreshed — with an action that ends sessions properly (revoked at the provider).

Tokens are never shown: at most the first four characters of the access and ID tokens, nothing of the refresh
token. The change list does not even load the token columns.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from oauth_client import events, providers, store
from oauth_client.conf import oauth_settings
from oauth_client.exceptions import ConfigurationError
from oauth_client.humanize import describe, relative
from oauth_client.models import OAuthIdentity, OAuthSession
from oauth_client.redaction import TOKEN_FIELDS, mask

try:  # Django 6.1+: the action is also offered on each session's page.
    from django.contrib.admin import ActionLocation

    _ACTION_LOCATIONS: dict[str, Any] = {"location": [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]}
except ImportError:  # pragma: no cover - Django 6.0
    _ACTION_LOCATIONS = {}

State = OAuthSession.State


def has_refresh(record: OAuthSession) -> bool:
    """From the `has_refresh` annotation when the token column was not loaded (lists), else from the token."""
    annotated = record.__dict__.get("has_refresh")
    return bool(annotated) if annotated is not None else record.has_refresh_token


def state_label(record: OAuthSession, now: datetime | None = None) -> str:
    state = record.state_at(now, has_refresh_token=has_refresh(record))
    if state != State.ENDED:
        return str(State(state).label)
    reason = record.get_ended_reason_display() or _("unknown reason")
    if record.ended_by:
        return str(_("Ended: %(reason)s (by %(who)s)") % {"reason": reason, "who": record.ended_by})
    return str(_("Ended: %(reason)s") % {"reason": reason})


def provider_label(record: OAuthSession) -> str:
    """The provider's label; the stored name if that provider is no longer configured."""
    try:
        return providers.for_record(record).label
    except ConfigurationError:
        return record.provider


def sessions_url(user: Any) -> str:
    """The session list filtered to one user (for links from the user admin)."""
    return reverse("admin:oauth_client_oauthsession_changelist") + f"?user__id__exact={user.pk}"


# --- filters ------------------------------------------------------------------------------------------------


class IssuerFilter(admin.SimpleListFilter):
    title = _("issuer")
    parameter_name = "issuer"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # A handful of issuers, but finding them is a scan of the whole table: remember them for a while.
        def distinct_issuers() -> list[str]:
            return list(OAuthSession.objects.order_by("issuer").values_list("issuer", flat=True).distinct()[:50])

        issuers = caches[oauth_settings.CACHE_ALIAS].get_or_set("oauth_client:admin:issuers", distinct_issuers, 300)
        return [(i, i) for i in issuers or []]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OAuthSession]) -> QuerySet[OAuthSession]:
        return queryset.filter(issuer=self.value()) if self.value() else queryset


class ProviderFilter(admin.SimpleListFilter):
    """The configured providers (by label): no scan of the table to find them."""

    title = _("provider")
    parameter_name = "provider"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, provider.label) for name, provider in providers.registry().items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OAuthSession]) -> QuerySet[OAuthSession]:
        return queryset.filter(provider=self.value()) if self.value() else queryset


class StateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return list(State.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[OAuthSession]) -> QuerySet[OAuthSession]:
        value = self.value()
        if value in State.values:
            return queryset.in_state(value)  # type: ignore[attr-defined]
        return queryset


class RefreshedFilter(admin.SimpleListFilter):
    title = _("last refreshed")
    parameter_name = "refreshed"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("today", _("Today")),
            ("24h", _("In the last 24 hours")),
            ("7d", _("In the last 7 days")),
            ("never", _("Never")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OAuthSession]) -> QuerySet[OAuthSession]:
        now = timezone.now()
        value = self.value()
        if value == "today":
            midnight = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
            return queryset.filter(last_refreshed_at__gte=midnight)
        if value == "24h":
            return queryset.filter(last_refreshed_at__gte=now - timedelta(hours=24))
        if value == "7d":
            return queryset.filter(last_refreshed_at__gte=now - timedelta(days=7))
        if value == "never":
            return queryset.filter(last_refreshed_at__isnull=True)
        return queryset


# --- the session registry -----------------------------------------------------------------------------------


def _search_fields() -> tuple[str, ...]:
    user_model = get_user_model()
    fields = [f"user__{user_model.USERNAME_FIELD}"]
    email = user_model.get_email_field_name()
    if any(f.name == email for f in user_model._meta.get_fields()):
        fields.append(f"user__{email}")
    # Exact matches use the indexes on (issuer, subject) and sid.
    return (*fields, "=subject", "=sid")


@admin.register(OAuthSession)
class OAuthSessionAdmin(admin.ModelAdmin):
    list_display = (
        "user",
        "state",
        "issuer",
        "signed_in",
        "last_seen",
        "last_refreshed",
        "refresh_count",
        "access_expiry",
        "refresh_expiry",
        "client_ip",
        "device",
    )
    list_filter = (StateFilter, IssuerFilter, RefreshedFilter, "ended_reason")
    list_select_related = ("user",)
    search_fields = _search_fields()
    search_help_text = _("Username, email, or the exact subject or provider session id (sid).")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    # Only columns with an index: sorting 100k rows by anything else would scan them all.
    sortable_by = ("signed_in", "last_seen", "last_refreshed")
    list_per_page = 50
    # The unfiltered total would be a second COUNT(*) over the whole table on every page.
    show_full_result_count = False
    # Facet counts would add one aggregate over the whole table per filter choice.
    show_facets = admin.ShowFacets.NEVER
    actions = ["end_sessions"]
    fieldsets = (
        (None, {"fields": ("user_link", "state", "provider_name", "issuer", "subject", "sid")}),
        (_("Activity"), {"fields": ("created_at", "last_seen", "last_refreshed", "refresh_count")}),
        (
            _("Tokens (never shown)"),
            {
                "fields": (
                    "token_binding",
                    "access_token_masked",
                    "access_expiry",
                    "id_token_masked",
                    "id_token_expiry",
                    "refresh_token_held",
                    "refresh_expiry",
                    "scope",
                )
            },
        ),
        (_("Device at sign-in"), {"fields": ("client_ip", "user_agent", "device")}),
        (_("End"), {"fields": ("ended_at", "ended_reason", "ended_by")}),
        (_("Claims"), {"fields": ("claims_json", "userinfo_json"), "classes": ("collapse",)}),
    )
    # Everything on the detail page is read-only: the list is the fieldsets' own.
    readonly_fields = tuple(name for _, options in fieldsets for name in options["fields"] if isinstance(name, str))

    def get_list_display(self, request: HttpRequest) -> Any:
        # The provider column and filter only mean something with several providers.
        if not providers.several():
            return self.list_display
        return (*self.list_display[:2], "provider_name", *self.list_display[2:])

    def get_list_filter(self, request: HttpRequest) -> Any:
        if not providers.several():
            return self.list_filter
        return (self.list_filter[0], ProviderFilter, *self.list_filter[1:])

    def get_queryset(self, request: HttpRequest) -> QuerySet[OAuthSession]:
        # Token columns are not read (and not decrypted) for lists; the detail page loads them on demand,
        # only to mask them. Whether a refresh token exists is answered by the database.
        return (
            super()
            .get_queryset(request)
            .defer(*TOKEN_FIELDS, "claims", "userinfo")
            .annotate(has_refresh=ExpressionWrapper(~Q(refresh_token=""), output_field=BooleanField()))
        )

    # Read-only: records change only through sign-in, refresh and the end action; prune deletes them.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_end_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.end_{opts.model_name}")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = dict(extra_context or {})
        if request.method == "GET":
            extra_context["activity"] = events.activity()
        return super().changelist_view(request, extra_context)

    # --- columns and fields ---

    @admin.display(description=_("state"))
    def state(self, obj: OAuthSession) -> str:
        return state_label(obj)

    @admin.display(description=_("token type"))
    def token_binding(self, obj: OAuthSession) -> str:
        return obj.token_type  # "DPoP" (bound to the session's key, which is never shown) or "Bearer"

    @admin.display(description=_("provider"))
    def provider_name(self, obj: OAuthSession) -> str:
        return provider_label(obj)

    @admin.display(description=_("user"))
    def user_link(self, obj: OAuthSession) -> SafeString:
        url = reverse(f"admin:{obj.user._meta.app_label}_{obj.user._meta.model_name}_change", args=[obj.user_id])
        return format_html('<a href="{}">{}</a>', url, obj.user)

    @admin.display(description=_("signed in"), ordering="created_at")
    def signed_in(self, obj: OAuthSession) -> SafeString | str:
        return relative(obj.created_at)

    @admin.display(description=_("last seen"), ordering="last_seen_at")
    def last_seen(self, obj: OAuthSession) -> SafeString | str:
        return relative(obj.last_seen_at)

    @admin.display(description=_("last refreshed"), ordering="last_refreshed_at")
    def last_refreshed(self, obj: OAuthSession) -> Any:
        return relative(obj.last_refreshed_at) if obj.last_refreshed_at else _("never")

    @admin.display(description=_("access token expires"))
    def access_expiry(self, obj: OAuthSession) -> SafeString | str:
        return "—" if obj.ended_at else relative(obj.access_expires_at, expiry=True)

    @admin.display(description=_("ID token expires"))
    def id_token_expiry(self, obj: OAuthSession) -> Any:
        if obj.ended_at:
            return "—"
        if obj.id_token_expires_at is None:
            return _("not renewed by the last refresh")
        return relative(obj.id_token_expires_at, expiry=True)

    @admin.display(description=_("refresh token expires"))
    def refresh_expiry(self, obj: OAuthSession) -> Any:
        if obj.ended_at or not has_refresh(obj):
            return "—"
        if obj.refresh_expires_at is None:
            return _("not said by the provider")
        return relative(obj.refresh_expires_at, expiry=True)

    @admin.display(description=_("device"))
    def device(self, obj: OAuthSession) -> str:
        return describe(obj.user_agent)

    @admin.display(description=_("access token"))
    def access_token_masked(self, obj: OAuthSession) -> str:
        return mask(obj.access_token)

    @admin.display(description=_("ID token"))
    def id_token_masked(self, obj: OAuthSession) -> str:
        return mask(obj.id_token)

    @admin.display(description=_("refresh token"))
    def refresh_token_held(self, obj: OAuthSession) -> str:
        # Not even a prefix: a refresh token is the long-lived credential.
        if has_refresh(obj):
            return str(_("held on the server (hidden)"))
        return str(_("none"))

    @admin.display(description=_("ID token claims"))
    def claims_json(self, obj: OAuthSession) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(obj.claims, indent=2, sort_keys=True, default=str))

    @admin.display(description=_("userinfo"))
    def userinfo_json(self, obj: OAuthSession) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(obj.userinfo, indent=2, sort_keys=True, default=str))

    # --- ending sessions ---

    @admin.action(
        description=_("End session and revoke refresh token at the provider"),
        permissions=["end"],
        **_ACTION_LOCATIONS,
    )
    def end_sessions(self, request: HttpRequest, queryset: QuerySet[OAuthSession]) -> HttpResponse | None:
        active = queryset.filter(ended_at__isnull=True)
        limit = int(oauth_settings.ADMIN_END_LIMIT)
        if request.POST.get("post") != "yes":
            return self.confirm_end(request, active, limit)
        who = request.user.get_username()
        ended = revoked = 0
        # Each one is a revocation call to the provider, so one run ends at most `limit` sessions.
        for record in active.select_related(None).order_by("pk").only("pk")[:limit]:
            outcome = store.token_store().end(record, OAuthSession.EndReason.ADMIN, ended_by=who)
            if outcome is not None:
                ended += 1
                revoked += outcome
        self.message_user(
            request,
            ngettext(
                "%(count)d session was ended; its browser is signed out.",
                "%(count)d sessions were ended; their browsers are signed out.",
                ended,
            )
            % {"count": ended},
            messages.SUCCESS,
        )
        if revoked < ended:
            self.message_user(
                request,
                ngettext(
                    "%(count)d refresh token could not be revoked at the provider (see the log).",
                    "%(count)d refresh tokens could not be revoked at the provider (see the log).",
                    ended - revoked,
                )
                % {"count": ended - revoked},
                messages.WARNING,
            )
        left = active.count()
        if left:
            self.message_user(
                request,
                ngettext(
                    "%(count)d selected session is still active: at most %(limit)d are ended at a time.",
                    "%(count)d selected sessions are still active: at most %(limit)d are ended at a time.",
                    left,
                )
                % {"count": left, "limit": limit},
                messages.WARNING,
            )
        return None

    def confirm_end(self, request: HttpRequest, active: QuerySet[OAuthSession], limit: int) -> HttpResponse:
        count = active.count()
        sessions = list(active.select_related("user").order_by("pk")[:limit])
        context = {
            **self.admin_site.each_context(request),
            "title": _("End sessions?"),
            "opts": self.opts,
            "sessions": [(s, describe(s.user_agent)) for s in sessions],
            "count": count,
            "limit": limit,
            "over_limit": count > limit,
            "selected": [str(s.pk) for s in sessions],
            "select_across": request.POST.get("select_across") == "1",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "changelist_url": reverse("admin:oauth_client_oauthsession_changelist"),
            "form_url": request.get_full_path()
            if request.resolver_match and request.resolver_match.url_name == "oauth_client_oauthsession_changelist"
            else reverse("admin:oauth_client_oauthsession_changelist"),
        }
        return TemplateResponse(request, "admin/oauth_client/oauthsession/end_confirmation.html", context)


@admin.register(OAuthIdentity)
class OAuthIdentityAdmin(admin.ModelAdmin):
    list_display = ("user", "issuer", "subject", "created_at", "last_login_at")
    list_select_related = ("user",)
    search_fields = (f"user__{get_user_model().USERNAME_FIELD}", "=subject")
    readonly_fields = ("user", "issuer", "subject", "created_at", "last_login_at")
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OAuthSessionInline(admin.TabularInline):
    """For the user admin: that user's active sessions, read-only, each linking to its record."""

    model = OAuthSession
    fk_name = "user"
    fields = ("created_at", "last_seen_at", "issuer", "client_ip", "device", "state")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = _("active OAuth sessions")

    def get_queryset(self, request: HttpRequest) -> QuerySet[OAuthSession]:
        return (
            super()
            .get_queryset(request)
            .filter(ended_at__isnull=True)
            .defer(*TOKEN_FIELDS, "claims", "userinfo")
            .annotate(has_refresh=ExpressionWrapper(~Q(refresh_token=""), output_field=BooleanField()))
            .order_by("-last_seen_at")
        )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("device"))
    def device(self, obj: OAuthSession) -> str:
        return describe(obj.user_agent)

    @admin.display(description=_("state"))
    def state(self, obj: OAuthSession) -> str:
        return state_label(obj)
