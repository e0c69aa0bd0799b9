"""The pages benchmark (1) compares, each with its plain Django session-auth control.

(1a) A signed-in page that reads no tokens (the home page under `oauth_login_required` vs `login_required`): the
OAuth side must cost the same queries, no OAuth table, as its session hint says the tokens are fresh.

(1b) The profile page, which reads tokens; its control:

`plain_profile` renders the same template as `accounts.views.profile`, with a context of the same shape and
size, for a user signed in with Django's ModelBackend (no OAuth session key, so the OAuth middleware returns
after one dict lookup). What it does not do is exactly what the benchmark measures: read and decrypt the
token record, check expiry, and build the TokenSet.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from oauth_client import get_tokens, oauth_login_required
from oauth_client.store import TokenSet


@login_required
def plain_home(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/home.html")


@oauth_login_required
def oauth_home(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/home.html")


@login_required
def plain_profile(request: HttpRequest) -> HttpResponse:
    user = request.user
    now = timezone.now()
    claims = {
        "iss": "http://127.0.0.1/o",
        "sub": str(user.pk),
        "aud": "demo-site",
        "exp": int((now + timedelta(minutes=10)).timestamp()),
        "iat": int(now.timestamp()),
        "auth_time": int(now.timestamp()),
        "nonce": "n" * 43,
        "at_hash": "h" * 22,
        "jti": "j" * 36,
        "name": user.get_full_name(),
        "given_name": user.first_name,
        "family_name": user.last_name,
        "preferred_username": user.get_username(),
        "email": user.email,
        "email_verified": True,
    }
    tokens = TokenSet(
        access_token="",
        id_token="",
        claims=claims,
        access_expires_at=now + timedelta(minutes=10),
        id_token_expires_at=now + timedelta(minutes=10),
        refresh_expires_at=None,
        scopes=frozenset({"openid", "profile", "email", "offline_access"}),
        last_refreshed_at=None,
        has_refresh_token=True,
        # The same page as the OAuth side's, row for row (it shows when the next refresh is due).
        refresh_due_at=now + timedelta(minutes=9),
    )
    return render(request, "accounts/profile.html", {"tokens": tokens, "claims": sorted(claims.items())})


@oauth_login_required
def oauth_profile(request: HttpRequest) -> HttpResponse:
    """The OAuth side of benchmark (1): the profile page's token work (`get_tokens`, template) without its
    userinfo call, which is a network round trip to the provider and not what the benchmark compares."""
    tokens = get_tokens(request)
    return render(request, "accounts/profile.html", {"tokens": tokens, "claims": sorted(tokens.claims.items())})
