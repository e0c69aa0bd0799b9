"""The "your sessions" page: a signed-in person sees where they are signed in and can end any of their other sessions.

Ending a session revokes its refresh token at the provider and deletes that browser's Django session, so its
next request is signed out. The current session is marked and is ended with the ordinary sign-out instead
(which also signs out at the provider).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views import View
from django.views.decorators.cache import never_cache

from oauth_client import providers, responses, store
from oauth_client.decorators import oauth_login_required
from oauth_client.exceptions import ConfigurationError
from oauth_client.humanize import describe, relative
from oauth_client.models import OAuthSession
from oauth_client.redaction import TOKEN_FIELDS


@dataclass(frozen=True)
class SessionRow:
    """What the page shows of a session (no tokens)."""

    id: uuid.UUID
    device: str
    ip: str
    started: datetime
    last_active: datetime
    issuer: str
    current: bool
    # The label of the provider it signed in with: only when the site has several ("" otherwise).
    provider: str = ""

    @property
    def started_text(self) -> str:
        return relative(self.started)

    @property
    def last_active_text(self) -> str:
        return relative(self.last_active)


def provider_label(record: OAuthSession) -> str:
    """How people know the provider of a session (its LABEL); its issuer if that provider is no longer configured."""
    try:
        return providers.for_record(record).label
    except ConfigurationError:
        return record.issuer


def _active_sessions(request: HttpRequest) -> list[OAuthSession]:
    return list(
        OAuthSession.objects.active()
        .filter(user=request.user)  # type: ignore[misc]
        .defer(*TOKEN_FIELDS, "claims", "userinfo")
        .order_by("-last_seen_at", "-created_at")
    )


@method_decorator(never_cache, name="dispatch")
@method_decorator(oauth_login_required, name="dispatch")
class SessionListView(View):
    """GET lists the user's active sessions; POST `end=<id>` ends one, POST `end_others=1` all but this one."""

    template_name = "oauth_client/sessions.html"
    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest) -> HttpResponse:
        current = store.token_store().load(request)
        several = providers.several()
        rows = [
            SessionRow(
                id=record.pk,
                device=describe(record.user_agent),
                ip=record.client_ip or "",
                started=record.created_at,
                last_active=record.last_seen_at,
                issuer=record.issuer,
                current=current is not None and record.pk == current.pk,
                provider=provider_label(record) if several else "",
            )
            for record in _active_sessions(request)
        ]
        # The current session first, then the most recently active.
        rows.sort(key=lambda row: not row.current)
        return render(
            request,
            self.template_name,
            {"sessions": rows, "others": sum(not row.current for row in rows)},
        )

    def post(self, request: HttpRequest) -> HttpResponse:
        current = store.token_store().load(request)
        others = [r for r in _active_sessions(request) if current is None or r.pk != current.pk]
        if request.POST.get("end_others"):
            ended = self.end(request, others)
            messages.success(
                request,
                ngettext("%(count)d other session was signed out.", "%(count)d other sessions were signed out.", ended)
                % {"count": ended},
            )
            return HttpResponseRedirect(request.path)
        try:
            target = uuid.UUID(request.POST.get("end", ""))
        except ValueError:
            return responses.error_response(
                request,
                status=400,
                title=_("Nothing to sign out"),
                message=_("Choose a session to sign out."),
                code="invalid_request",
            )
        if current is not None and target == current.pk:
            # Signing out here goes through the ordinary sign-out (POST /oauth/logout/), which also ends the
            # provider session; this form is only for the other devices.
            messages.info(request, _("Use “Sign out” to end the session you are using now."))
            return HttpResponseRedirect(request.path)
        # Only the user's own active sessions; anything else gets the same answer, so ids cannot be probed.
        ended = self.end(request, [r for r in others if r.pk == target])
        if ended:
            messages.success(request, _("That session was signed out."))
        else:
            messages.info(request, _("That session had already ended."))
        return HttpResponseRedirect(request.path)

    def end(self, request: HttpRequest, records: list[OAuthSession]) -> int:
        by = request.user.get_username()
        return sum(store.token_store().end(r, OAuthSession.EndReason.USER, ended_by=by) is not None for r in records)
