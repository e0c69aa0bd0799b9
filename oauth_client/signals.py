"""Signals sent by oauth_client. Receivers get keyword arguments; none of them carries a token.

- `tokens_refreshed(sender=OAuthSession, record, request)` after a refresh was committed.
- `token_refresh_failed(sender=OAuthSession, record, request, error, transient)` when a refresh failed;
  `transient=True` means the session was kept (provider down, lock wait exceeded).
- `oauth_session_ended(sender=OAuthSession, record, reason, ended_by)` when a session's tokens were
  discarded (sign-out, refresh refused, admin, back-channel logout, prune).
- `oauth_login(sender=OAuthSession, record, request, user)` after a successful sign-in.
- `client_rejected(sender=OAuthSession, error, request)` when the provider refused this client's credentials or
  registration at a refresh (`invalid_client`, `unauthorized_client`: an expired client secret, say). Sessions
  are kept; it is the site's configuration that needs fixing (`manage.py oidc_doctor`).
"""

from django.dispatch import Signal

tokens_refreshed = Signal()
token_refresh_failed = Signal()
oauth_session_ended = Signal()
oauth_login = Signal()
client_rejected = Signal()
