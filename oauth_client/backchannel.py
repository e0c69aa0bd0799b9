"""OpenID Connect Back-Channel Logout 1.0: the provider tells us, server to server, that a session ended.

POST /oauth/backchannel-logout/ with the form field `logout_token`. The token is validated (signature from the
provider's JWKS, iss, aud, iat, events, no nonce, sid or sub: `validation.validate_logout_token`), its jti is
recorded so a replay is refused, then every matching session is ended like an admin would end it (refresh
token revoked, Django session deleted), so that browser's next request is signed out.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, router, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from oauth_client import providers, store
from oauth_client.conf import oauth_settings
from oauth_client.exceptions import ProviderFailure, TokenValidationError, retry_after_seconds
from oauth_client.models import OAuthSession, UsedLogoutToken
from oauth_client.providers import Provider
from oauth_client.validation import validate_logout_token
from oauth_client.views import ProviderMixin

logger = logging.getLogger("oauth_client.backchannel")


class LogoutTokenReplayed(TokenValidationError):
    """The logout token's jti was already accepted."""


def _jti_key(claims: dict[str, Any]) -> str:
    return hashlib.sha256(f"{claims['iss']}\0{claims['jti']}".encode()).hexdigest()


def remember_jti(claims: dict[str, Any], now: datetime | None = None) -> UsedLogoutToken:
    """Record the token's jti, or raise `LogoutTokenReplayed` if it was seen before.

    Kept until validation would refuse the token anyway (too old, or expired), then `oauth_sessions_prune`
    deletes it."""
    now = now or timezone.now()
    leeway = int(oauth_settings.CLOCK_LEEWAY)
    last_valid = float(claims["iat"]) + int(oauth_settings.LOGOUT_TOKEN_MAX_AGE) + leeway
    if isinstance(claims.get("exp"), int | float):
        last_valid = min(last_valid, float(claims["exp"]) + leeway)
    expires_at = max(datetime.fromtimestamp(last_valid, tz=UTC), now)
    try:
        with transaction.atomic(using=router.db_for_write(UsedLogoutToken)):
            return UsedLogoutToken.objects.create(key=_jti_key(claims), expires_at=expires_at)
    except IntegrityError:
        raise LogoutTokenReplayed("logout token was already used") from None


def matching_sessions(claims: dict[str, Any], provider: Provider | None = None) -> list[OAuthSession]:
    """Active sessions named by the token: by `sid` when present (and `sub`, when both are), else every
    session of `sub` at this issuer — of the provider whose endpoint received the token, never another's."""
    qs = OAuthSession.objects.active().filter(issuer=claims["iss"])
    if provider is not None:
        # Its own records, and those of a provider renamed in the settings that resolve to it (providers.serves).
        names = set(qs.values_list("provider", flat=True).distinct())
        qs = qs.filter(provider__in=[name for name in names if providers.serves(provider, name)])
    sid, sub = claims.get("sid"), claims.get("sub")
    if isinstance(sid, str) and sid:
        qs = qs.filter(sid=sid)
    if isinstance(sub, str) and sub:
        qs = qs.filter(subject=sub)
    return list(qs.only("pk"))


def _json(status: int, body: dict[str, Any]) -> JsonResponse:
    response = JsonResponse(body, status=status)
    # §2.8: the response must not be cached.
    response["Cache-Control"] = "no-store"
    return response


@method_decorator(csrf_exempt, name="dispatch")
@method_decorator(sensitive_post_parameters("logout_token"), name="dispatch")
class BackchannelLogoutView(ProviderMixin, View):
    """POST /oauth/backchannel-logout/<provider>/ → 200 when the token was accepted, 400 with a JSON error
    otherwise. The token is validated against that provider (its issuer, keys and client id) and ends only its
    sessions."""

    http_method_names = ["post"]

    @method_decorator(sensitive_variables())
    def post(self, request: HttpRequest) -> HttpResponse:
        raw = request.POST.get("logout_token", "")
        if not raw:
            return _json(400, {"error": "invalid_request", "error_description": "logout_token is missing"})
        try:
            claims = validate_logout_token(self.provider, raw)
        except TokenValidationError as exc:
            logger.warning("back-channel logout refused: %s", exc)
            return _json(400, {"error": "invalid_request", "error_description": str(exc)})
        except ProviderFailure as exc:
            # We cannot check the signature right now; that says nothing about the token, so no 400. An unknown
            # kid inside the JWKS refetch window is anyone's to send: a warning, not an error.
            retry_after = getattr(exc, "retry_after", None)
            level = logging.WARNING if retry_after else logging.ERROR
            logger.log(level, "back-channel logout not checked, provider keys unavailable: %s", exc)
            response = _json(503, {"error": "temporarily_unavailable"})
            response["Retry-After"] = str(retry_after_seconds(retry_after))
            return response
        try:
            used = remember_jti(claims)
        except LogoutTokenReplayed as exc:
            logger.warning("back-channel logout refused: %s", exc)
            return _json(400, {"error": "invalid_request", "error_description": str(exc)})
        try:
            ended = self.end_sessions(claims)
        except Exception:
            # Let the provider retry the same token: forget its jti.
            used.delete()
            raise
        logger.info("back-channel logout ended %d session(s)", ended)
        return _json(200, {"sessions_ended": ended})

    def end_sessions(self, claims: dict[str, Any]) -> int:
        ended = 0
        for record in matching_sessions(claims, self.provider):
            if store.token_store().end(record, OAuthSession.EndReason.BACKCHANNEL, ended_by="provider") is not None:
                ended += 1
        return ended
