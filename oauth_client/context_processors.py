"""Template context for sites with several identity providers.

Add "oauth_client.context_processors.providers" to TEMPLATES' context_processors: every page then has
`oauth_login_choices`, the "Sign in with …" buttons (each provider's `name`, `label` and sign-in `url`, coming back
to the page shown) for a person who is not signed in, when the site has several providers. It is an empty list
otherwise (one provider: a plain "Sign in" link to /oauth/login/ does), so `{% if oauth_login_choices %}` tells a
template which to show.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from oauth_client import providers as configured
from oauth_client.exceptions import ConfigurationError
from oauth_client.views import login_choices


def providers(request: HttpRequest) -> dict[str, Any]:
    # Lazy, like Django's own `user` and `messages`: nothing is read (not even the user, which an async view could
    # not load here) unless the template uses the buttons.
    return {"oauth_login_choices": SimpleLazyObject(lambda: _choices(request))}


def _choices(request: HttpRequest) -> list[dict[str, str]]:
    try:
        several = configured.several()
    except ConfigurationError:
        return []  # a bad PROVIDERS setting: check E016 says so; pages still render
    if not several:
        return []
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return []
    match = getattr(request, "resolver_match", None)
    # Not back to one of the app's own pages: the chooser itself, or a callback whose query holds a spent code.
    own_page = match is not None and "oauth_client" in match.namespaces
    return login_choices(None if own_page else request.get_full_path() or None)
