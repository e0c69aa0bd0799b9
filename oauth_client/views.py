"""Sign-in, callback and sign-out. Class-based, so a project can subclass and override one step.

The state, nonce and PKCE verifier of each sign-in attempt are kept server-side in the session (several
tabs can sign in at once), used once, and expire after LOGIN_ATTEMPT_SECONDS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import authenticate, login, logout
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import get_language, to_locale
from django.utils.translation import gettext as _
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables

from oauth_client import client, crypto, discovery, dpop, keys, providers, responses, signals
from oauth_client.backends import REJECTION_ATTR
from oauth_client.conf import oauth_settings
from oauth_client.exceptions import (
    ConfigurationError,
    EndReason,
    InvalidClient,
    InvalidResponse,
    ProviderFailure,
    TokenValidationError,
    TransientProviderError,
)
from oauth_client.providers import Provider
from oauth_client.store import token_store
from oauth_client.validation import validate_id_token

logger = logging.getLogger("oauth_client.views")

PENDING_KEY = "_oauth_pending"
MAX_PARAM_LENGTH = 2048


def safe_next_path(value: str | None, *, require_https: bool = False) -> str | None:
    """A same-site path to come back to after sign-in, or None (never an open redirect)."""
    if not value or len(value) > MAX_PARAM_LENGTH or not value.startswith("/") or value.startswith("//"):
        return None
    if "\\" in value or any(ord(c) < 32 for c in value):
        return None
    if not url_has_allowed_host_and_scheme(value, allowed_hosts=None, require_https=require_https):
        return None
    return value


def safe_next(request: HttpRequest, value: str | None) -> str | None:
    return safe_next_path(value, require_https=request.is_secure())


def default_login_redirect(request: HttpRequest, user: Any) -> str:
    """Where to go after sign-in when no `next` was given (OAUTH_CLIENT['LOGIN_REDIRECT'])."""
    from django.conf import settings

    return resolve_url(settings.LOGIN_REDIRECT_URL)


def error_view(request: HttpRequest, *, status: int, title: str, message: str, **extra: Any) -> HttpResponse:
    """Default user-facing error page (OAUTH_CLIENT['ERROR_VIEW']); template `oauth_client/error.html`."""
    context = {"title": title, "message": message, "status": status, **extra}
    return render(request, "oauth_client/error.html", context, status=status)


def provider_url(name: str, provider: Provider) -> str:
    """The path of one of a provider's views ("login", "callback", "backchannel_logout").

    The provider named "default" (a single-provider site's) keeps the short forms (/oauth/callback/), so a site that
    adds a second provider keeps the redirect URI registered for its first; every other provider has the named form
    (/oauth/callback/<name>/). So each provider has its own redirect URI, and an authorization response cannot be
    taken for another's. With several providers /oauth/login/ is the chooser, so every login link is named."""
    if provider.name == providers.DEFAULT and not (name == "login" and providers.several()):
        return reverse(f"oauth_client:{name}")
    return reverse(f"oauth_client:{name}", kwargs={"provider": provider.name})


def redirect_uri(request: HttpRequest, provider: Provider) -> str:
    return provider.REDIRECT_URI or request.build_absolute_uri(provider_url("callback", provider))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _ui_locales() -> str:
    # BCP 47 tag as OIDC expects ("fr-CA"), from Django's active language ("fr-ca").
    return to_locale(get_language() or "en").replace("_", "-")


def with_query(endpoint: str, params: Mapping[str, str]) -> str:
    return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256 code challenge."""
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


def authorization_params(
    provider: Provider, redirect_uri: str, state: str, nonce: str, verifier: str
) -> dict[str, str]:
    """The authorization request for the provider's client (used by LoginView and `oidc_doctor`)."""
    params: dict[str, str] = {}
    # Extra parameters first, so they can add (prompt, access_type) but never replace the ones below.
    params.update({str(k): str(v) for k, v in dict(provider.EXTRA_AUTH_PARAMS).items()})
    if provider.AUDIENCE:
        params["audience"] = provider.AUDIENCE
    if provider.SEND_UI_LOCALES:
        params.setdefault("ui_locales", _ui_locales())
    params.update(
        {
            "response_type": "code",
            "client_id": provider.CLIENT_ID,
            "redirect_uri": redirect_uri,
            "scope": " ".join(provider.SCOPES),
            "state": state,
            "nonce": nonce,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    return params


def sign_in_unavailable(request: HttpRequest) -> HttpResponse:
    """503: the provider cannot be used right now (unreachable, or its metadata does not fit our client)."""
    return responses.error_response(
        request,
        status=503,
        title=_("Sign-in is unavailable"),
        message=_("The identity provider cannot be reached right now. Please try again in a moment."),
        code="provider_unavailable",
    )


class ProviderMixin:
    """Resolves `self.provider` from the URL's `provider` (its name), or the site's only provider; 404 otherwise."""

    provider: Provider

    def dispatch(self, request: HttpRequest, *args: Any, provider: str | None = None, **kwargs: Any) -> HttpResponse:
        try:
            self.provider = providers.get(provider)
        except LookupError:
            raise Http404(_("No such identity provider.")) from None
        except ConfigurationError as exc:
            logger.error("sign-in unavailable: %s", exc)  # a bad PROVIDERS setting (check E016)
            return sign_in_unavailable(request)
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


@method_decorator(never_cache, name="dispatch")
class ChooseProviderView(View):
    """GET /oauth/login/?next=/path with several providers: one "Sign in with …" button each."""

    template_name = "oauth_client/choose_provider.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, self.template_name, {"choices": login_choices(request.GET.get("next"))})


def login_choices(next_url: str | None = None) -> list[dict[str, str]]:
    """Every provider's label and sign-in URL (with `next`, when it is a safe same-site path)."""
    query = f"?{urlencode({'next': next_url})}" if next_url and safe_next_path(next_url) else ""
    return [
        {"name": p.name, "label": p.label, "url": provider_url("login", p) + query}
        for p in providers.registry().values()
    ]


def login_view(request: HttpRequest, provider: str | None = None) -> HttpResponseBase:
    """/oauth/login/: the chooser when there are several providers and none is named, else that provider's."""
    try:
        several = providers.several()
    except ConfigurationError as exc:
        logger.error("sign-in unavailable: %s", exc)
        return sign_in_unavailable(request)
    if provider is None and several:
        return ChooseProviderView.as_view()(request)
    return LoginView.as_view()(request, provider=provider)


@method_decorator(never_cache, name="dispatch")
class LoginView(ProviderMixin, View):
    """GET /oauth/login/<provider>/?next=/path → the provider's authorization endpoint."""

    # The DPoP key pair of this sign-in (serialized private JWK), when DPOP is on: the authorization code is bound to
    # it (`dpop_jkt`, RFC 9449 §10), and the session's access tokens will be.
    dpop_key = ""

    def get(self, request: HttpRequest) -> HttpResponse:
        state, nonce, verifier = (
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(64),
        )
        self.dpop_key = dpop.new_key() if dpop.enabled(self.provider) else ""
        try:
            metadata = discovery.get_metadata(self.provider)
            url = self.authorization_url(request, metadata, state, nonce, verifier)
        except InvalidClient as exc:
            # Pushing the request (PAR) is the first call that authenticates the client: an expired secret or an
            # unregistered key shows here. The site's fault, not the person's.
            logger.error("cannot start sign-in: the provider rejected this client (%s); run oidc_doctor", exc)
            return sign_in_unavailable(request)
        except ProviderFailure as exc:
            logger.error("cannot start sign-in: %s", exc)
            return sign_in_unavailable(request)
        self.remember_attempt(
            request,
            state,
            {
                "nonce": nonce,
                "verifier": verifier,
                "next": safe_next(request, request.GET.get("next")),
                "redirect_uri": redirect_uri(request, self.provider),
                # The attempt is bound to its provider: an answer arriving at another's callback is refused.
                "provider": self.provider.name,
                # Encrypted: the session may be a signed cookie.
                "dpop_key": crypto.encrypt(self.dpop_key) if self.dpop_key else "",
                "created": time.time(),
            },
        )
        return HttpResponseRedirect(url)

    def authorization_params(self, request: HttpRequest, state: str, nonce: str, verifier: str) -> dict[str, str]:
        return authorization_params(self.provider, redirect_uri(request, self.provider), state, nonce, verifier)

    def authorization_url(
        self, request: HttpRequest, metadata: Mapping[str, Any], state: str, nonce: str, verifier: str
    ) -> str:
        """Where to send the browser: the authorization endpoint with every parameter, or, when the request is pushed
        (PAR, RFC 9126), with only `client_id` and the `request_uri` the provider gave for them."""
        params = self.authorization_params(request, state, nonce, verifier)
        if self.dpop_key:
            params["dpop_jkt"] = dpop.thumbprint(self.dpop_key)
        endpoint = metadata["authorization_endpoint"]
        if client.uses_par(self.provider, dict(metadata)):
            request_uri = client.push_authorization_request(self.provider, dict(metadata), params)
            return with_query(endpoint, {"client_id": params["client_id"], "request_uri": request_uri})
        return with_query(endpoint, params)

    @staticmethod
    def remember_attempt(request: HttpRequest, state: str, attempt: dict[str, Any]) -> None:
        pending = _live_attempts(request)
        pending[state] = attempt
        # Keep only the newest few attempts, so an abandoned-tab storm cannot grow the session.
        newest = sorted(pending.items(), key=lambda item: item[1]["created"])[-oauth_settings.MAX_LOGIN_ATTEMPTS :]
        request.session[PENDING_KEY] = dict(newest)


def _live_attempts(request: HttpRequest) -> dict[str, dict[str, Any]]:
    now = time.time()
    pending = request.session.get(PENDING_KEY) or {}
    return {k: v for k, v in pending.items() if now - v.get("created", 0) < oauth_settings.LOGIN_ATTEMPT_SECONDS}


def pop_attempt(request: HttpRequest, state: str) -> dict[str, Any] | None:
    """The sign-in attempt for `state`, removed so it can be used only once."""
    pending = _live_attempts(request)
    match = None
    for key in list(pending):
        if hmac.compare_digest(key.encode(), state.encode()):
            match = pending.pop(key)
    request.session[PENDING_KEY] = pending
    return match


@method_decorator(never_cache, name="dispatch")
class CallbackView(ProviderMixin, View):
    """GET /oauth/callback/<provider>/?code=…&state=… → tokens, validated; user mapped and signed in."""

    # The sign-in attempt's DPoP key (if any): the tokens it gets are bound to it (fetch_userinfo, complete).
    dpop_key = ""

    def fail(
        self, request: HttpRequest, message: str, *, status: int = 400, code: str = "sign_in_failed"
    ) -> HttpResponse:
        return responses.error_response(request, status=status, title=_("Sign-in failed"), message=message, code=code)

    @method_decorator(sensitive_variables())
    def get(self, request: HttpRequest) -> HttpResponse:
        params = request.GET
        if any(len(v) > MAX_PARAM_LENGTH for values in params.lists() for v in values[1]):
            return self.fail(request, _("The sign-in response is too large."))
        state = params.get("state", "")
        attempt = pop_attempt(request, state) if state else None
        if attempt is not None and attempt.get("provider", providers.DEFAULT) != self.provider.name:
            # Mix-up (RFC 9700 §4.4): an answer to a sign-in started at another provider. Refused before any code
            # reaches a token endpoint; the attempt is spent.
            logger.warning(
                "authorization response for provider %r arrived at the callback of %r: refused",
                attempt.get("provider"),
                self.provider.name,
            )
            return self.fail(
                request,
                _("This sign-in answer does not belong to this identity provider. Please sign in again."),
                code="provider_mismatch",
            )
        error = params.get("error", "")[:100]
        if error and attempt is not None:
            # RFC 9207 §2.4: an error response, too, must come from this provider before it is shown as its own.
            try:
                self.check_issuer_parameter(params, discovery.get_metadata(self.provider))
            except TokenValidationError as exc:
                logger.warning("sign-in error response refused: %s", exc)
                return self.fail(
                    request, _("The identity provider's response could not be accepted. Please try again.")
                )
            except ProviderFailure:
                pass  # discovery unavailable: the error is shown as it came, it ends the attempt either way
            logger.info("provider returned an error at sign-in: %r", error)
            return self.provider_refused(request, error, params.get("error_description", "")[:300])
        if attempt is None:
            # Also for an error response: one that answers no sign-in of this browser may be a forged link,
            # so its text (attacker-chosen) is not shown.
            return self.fail(
                request,
                _("This sign-in link is invalid, expired or was already used. Please sign in again."),
                code="invalid_state",
            )
        try:
            metadata = discovery.get_metadata(self.provider)
            self.check_issuer_parameter(params, metadata)
            code = params.get("code")
            if not code:
                return self.fail(request, _("The identity provider did not return an authorization code."))
            self.dpop_key = crypto.decrypt(attempt["dpop_key"]) if attempt.get("dpop_key") else ""
            tokens = client.exchange_code(
                self.provider, code, attempt["redirect_uri"], attempt["verifier"], dpop_key=self.dpop_key or None
            )
            if self.dpop_key and tokens.token_type != dpop.SCHEME:
                self.discard(tokens)
                raise InvalidResponse("the provider answered a Bearer token to a DPoP-bound code exchange")
            if not tokens.id_token:
                raise InvalidResponse("token response has no id_token (is 'openid' in the scopes?)")
            claims = validate_id_token(self.provider, tokens.id_token, nonce=attempt["nonce"])
            userinfo = self.fetch_userinfo(tokens.access_token, claims)
            # Through Django's authenticate(), so user_login_failed fires for a refused sign-in (OAuthBackend).
            user = authenticate(request, id_token_claims={**userinfo, **claims})
        except TransientProviderError as exc:
            logger.warning("sign-in failed, provider unavailable: %s", exc)
            return self.fail(
                request,
                _("The identity provider cannot be reached right now. Please try again in a moment."),
                status=503,
                code="provider_unavailable",
            )
        except ConfigurationError as exc:
            # E.g. the provider takes none of our client authentication methods: not the person's fault.
            logger.error("sign-in failed, client configuration does not fit the provider: %s", exc)
            return sign_in_unavailable(request)
        except ProviderFailure as exc:
            logger.warning("sign-in refused (%s): %s", type(exc).__name__, exc)
            return self.fail(request, _("The identity provider's response could not be accepted. Please try again."))
        if user is None:
            rejection = getattr(request, REJECTION_ATTR, None)
            message = str(rejection) if rejection is not None else _("This account cannot sign in here.")
            return self.fail(request, message, status=403, code="user_rejected")
        return self.complete(request, user, tokens, claims, userinfo, attempt.get("next"))

    @method_decorator(sensitive_variables())
    def discard(self, tokens: client.TokenResponse) -> None:
        """Revoke the refresh token of an answer the site refuses (best effort: it is never stored)."""
        try:
            if tokens.refresh_token:
                client.revoke(self.provider, tokens.refresh_token)
        except ProviderFailure as exc:
            logger.warning("the refused answer's refresh token could not be revoked: %s", exc)

    def check_issuer_parameter(self, params: Mapping[str, str], metadata: Mapping[str, Any]) -> None:
        """RFC 9207: the `iss` authorization-response parameter defeats mix-up attacks."""
        iss = params.get("iss")
        if iss is None and metadata.get("authorization_response_iss_parameter_supported"):
            raise TokenValidationError("authorization response lacks the iss parameter")
        if iss is not None and iss != metadata["issuer"]:
            raise TokenValidationError("authorization response iss does not match the issuer")

    @method_decorator(sensitive_variables())
    def fetch_userinfo(self, access_token: str, claims: Mapping[str, Any]) -> dict[str, Any]:
        if not self.provider.FETCH_USERINFO:
            return {}
        try:
            info = client.userinfo(self.provider, access_token, dpop_key=self.dpop_key or None)
        except ProviderFailure as exc:
            if not exc.retryable:
                raise
            # Userinfo only fills claims the ID token lacks; sign-in works without it.
            logger.warning("userinfo unavailable at sign-in: %s", exc)
            return {}
        if info and info.get("sub") != claims["sub"]:
            raise TokenValidationError("userinfo sub does not match the ID token sub")
        return info

    def provider_refused(self, request: HttpRequest, error: str, description: str) -> HttpResponse:
        if error == "access_denied":
            message = _("Sign-in was cancelled or access was denied at the identity provider.")
        elif error in ("login_required", "interaction_required", "consent_required"):
            message = _("The identity provider needs you to sign in again.")
        else:
            message = _("The identity provider could not complete the sign-in.")
        return responses.error_response(
            request,
            status=400,
            title=_("Sign-in failed"),
            message=message,
            code=error or "provider_error",
            provider_error=error,
            provider_description=description,
        )

    @method_decorator(sensitive_variables())
    def complete(
        self,
        request: HttpRequest,
        user: Any,
        tokens: client.TokenResponse,
        claims: Mapping[str, Any],
        userinfo: Mapping[str, Any],
        next_url: str | None,
    ) -> HttpResponse:
        store = token_store()
        previous = store.load(request) if request.user.is_authenticated else None
        if previous is not None:
            store.end(previous, EndReason.LOGOUT, delete_session=False)
        pending = request.session.get(PENDING_KEY)
        login(request, user)  # cycles the session key (session fixation); user.backend set by authenticate()
        if pending:
            request.session[PENDING_KEY] = pending
        record = store.create(request, user, tokens, claims, userinfo, provider=self.provider, dpop_key=self.dpop_key)
        if not tokens.refresh_token:
            logger.warning(
                "sign-in without a refresh token: the session ends when the tokens expire. Likely causes: "
                "'offline_access' is not in OIDC_SCOPES, the API does not allow offline access (Auth0), or the "
                "provider needs prompt=consent / access_type=offline (OIDC_EXTRA_AUTH_PARAMS)."
            )
            if user.is_staff:
                messages.warning(
                    request,
                    _(
                        "The identity provider issued no refresh token, so this session ends when the tokens "
                        "expire. Check that 'offline_access' is requested and that the API allows offline access."
                    ),
                )
        signals.oauth_login.send(type(record), record=record, request=request, user=user)
        return HttpResponseRedirect(next_url or oauth_settings.LOGIN_REDIRECT(request, user))


def jwks_view(request: HttpRequest) -> HttpResponse:
    """GET /oauth/jwks.json: the public half of every configured client key (CLIENT_KEY_FILE, and
    CLIENT_KEY_FILE_NEXT during a rotation), as a JWK Set (RFC 7517 §5). Empty without private_key_jwt."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    failures: list[str] = []
    try:
        keyset = keys.published_keys(providers.registry().values(), failures)
    except ConfigurationError as exc:
        logger.error("client keys cannot be published: %s", exc)  # a bad PROVIDERS setting (check E016)
        return JsonResponse({"error": "temporarily_unavailable"}, status=503)
    response = JsonResponse(keyset, content_type="application/jwk-set+json")
    # Providers cache it; a rotation publishes the next key well before it signs (docs/configuration.md). A set with a
    # key missing (a file being replaced) must not be cached for minutes.
    response["Cache-Control"] = "no-store" if failures else "public, max-age=300"
    return response


@method_decorator(never_cache, name="dispatch")
class LogoutView(View):
    """POST /oauth/logout/ (CSRF): revoke at the provider, end the local session, RP-initiated logout."""

    http_method_names = ["post", "options"]

    @method_decorator(sensitive_variables())
    def post(self, request: HttpRequest) -> HttpResponse:
        store = token_store()
        record = store.load(request) if request.user.is_authenticated else None
        id_token = record.id_token if record else ""
        provider = store.provider_of(record) if record is not None else None
        if record is not None:
            store.end(record, EndReason.LOGOUT, ended_by=request.user.get_username(), delete_session=False)
        logout(request)
        response = self.end_session_response(request, id_token, provider) if provider is not None else None
        return response or HttpResponseRedirect("/")

    @method_decorator(sensitive_variables())
    def end_session_params(self, request: HttpRequest, id_token: str, provider: Provider) -> dict[str, str]:
        params = {
            "id_token_hint": id_token,
            "post_logout_redirect_uri": provider.POST_LOGOUT_REDIRECT_URI or request.build_absolute_uri("/"),
            "client_id": provider.CLIENT_ID,
        }
        if provider.SEND_UI_LOCALES:
            params["ui_locales"] = _ui_locales()
        return params

    @method_decorator(sensitive_variables())
    def end_session_response(self, request: HttpRequest, id_token: str, provider: Provider) -> HttpResponse | None:
        """RP-initiated logout at the session's provider, when it advertises an end_session_endpoint."""
        try:
            endpoint = discovery.get_metadata(provider).get("end_session_endpoint")
        except ProviderFailure:
            return None
        if not endpoint or not id_token:
            return None
        params = self.end_session_params(request, id_token, provider)
        if provider.END_SESSION_METHOD.upper() == "GET":
            return HttpResponseRedirect(endpoint + ("&" if "?" in endpoint else "?") + urlencode(params))
        # POST (which OPs must support) keeps the ID token out of URLs, history and access logs.
        return render(request, "oauth_client/end_session.html", {"endpoint": endpoint, "params": params})
