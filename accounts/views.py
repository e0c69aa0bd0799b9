"""The demo site's pages. They use only oauth_client's public API."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from accounts.forms import DisplayNameForm
from oauth_client import get_tokens, oauth_login_required, refresh_tokens


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/home.html")


@oauth_login_required
def profile(request: HttpRequest) -> HttpResponse:
    tokens = get_tokens(request)
    return render(request, "accounts/profile.html", {"tokens": tokens, "claims": sorted(tokens.claims.items())})


@refresh_tokens
def sensitive(request: HttpRequest) -> HttpResponse:
    """A sensitive operation: the provider re-checks the grant (a refresh) before both GET and POST."""
    user = request.user
    form = DisplayNameForm(request.POST or None, instance=user)  # type: ignore[misc]
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, _("Your display name was changed."))
        return redirect("accounts:sensitive")
    return render(request, "accounts/sensitive.html", {"form": form, "tokens": get_tokens(request)})
