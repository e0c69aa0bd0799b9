"""The checks behind `manage.py oidc_doctor`: is this provider set up so that sign-in works and refresh tokens
are issued? Each check is one line with a status and, when something is wrong, the fix. One report per provider
(`run(provider=...)`); the command runs it for every configured provider, or the one named by --provider.

Network calls go through `oauth_client.http` (timeouts, retries, size limits); the discovery document is read
raw, not through the cache, so a wrong issuer is reported instead of raised.
"""

from __future__ import annotations

import secrets
import shlex
import time
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks as django_checks
from django.urls import NoReverseMatch
from jwcrypto import jwk

from oauth_client import client, client_auth, discovery, dpop, http, keys, providers, views
from oauth_client.checks import TAG, env_name, is_named, setting_name, uses_private_key_jwt
from oauth_client.conf import oauth_settings
from oauth_client.exceptions import (
    ConfigurationError,
    InvalidClient,
    InvalidGrant,
    InvalidResponse,
    OAuthClientError,
    ProviderError,
    ProviderFailure,
)
from oauth_client.providers import Provider
from oauth_client.redaction import mask
from oauth_client.urls_policy import insecure_endpoints, is_secure_url
from oauth_client.validation import _KTY_FOR_ALG_PREFIX

OK, FAIL, WARN, INFO = "ok", "fail", "warn", "info"


@dataclass
class Finding:
    name: str
    status: str
    message: str
    fix: str = ""


@dataclass
class Report:
    provider: Provider
    issuer: str
    client_id: str
    client_secret: str  # masked
    redirect_uri: str = ""
    backchannel_logout_uri: str = ""
    findings: list[Finding] = field(default_factory=list)
    authorize_url: str = ""
    code_verifier: str = ""
    curl_code_exchange: str = ""
    curl_refresh: str = ""

    @property
    def ok(self) -> bool:
        return not any(f.status == FAIL for f in self.findings)

    def add(self, name: str, status: str, message: str, fix: str = "") -> Finding:
        finding = Finding(name, status, message, fix)
        self.findings.append(finding)
        return finding

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "provider": self.provider.name,
            "issuer": self.issuer,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uri": self.redirect_uri,
            "backchannel_logout_uri": self.backchannel_logout_uri,
            "checks": [asdict(f) for f in self.findings],
            "authorize_url": self.authorize_url,
            "code_verifier": self.code_verifier,
            "curl": {"code_exchange": self.curl_code_exchange, "refresh": self.curl_refresh},
        }


def default_site_url() -> str:
    """Where the site is probably served, to show the redirect URI it will send (override with --site-url)."""
    if settings.DEBUG:
        return "http://127.0.0.1:8000"
    for host in settings.ALLOWED_HOSTS:
        if host and not host.startswith((".", "*")):
            return f"https://{host}"
    return "https://example.com"


def run(site_url: str | None = None, *, provider: Provider | None = None, probe_token_endpoint: bool = True) -> Report:
    """The doctor's report for `provider` (None: the site's only provider, or the one named "default")."""
    provider = provider if provider is not None else providers.get()
    report = Report(
        provider=provider,
        issuer=provider.ISSUER,
        client_id=provider.CLIENT_ID,
        # The first three characters, as Auth0's guides show secrets; a secret shorter than 12 fully masked.
        client_secret=mask(provider.CLIENT_SECRET, show=3, min_length=12, empty="(not set)"),
    )
    _system_checks(report)
    _settings(report)
    _redirect_uri(report, site_url)
    _backchannel_logout_uri(report, site_url)
    if not provider.ISSUER:
        return report
    metadata = _discovery(report)
    if metadata is None:
        return report
    _endpoints(report, metadata)
    _refresh_grant(report, metadata)
    _offline_access(report, metadata)
    _auth_method(report, metadata)
    if probe_token_endpoint:
        _client_credentials(report, metadata)
    _high_security(report, metadata)
    _pkce(report, metadata)
    _jwks(report, metadata)
    _commands(report, metadata)
    return report


_COVERED_CHECKS = ("oauth_client.W001", "oauth_client.W002", "oauth_client.W003", "oauth_client.W004")


def _system_checks(report: Report) -> None:
    messages = django_checks.run_checks(tags=[TAG], include_deployment_checks=False)
    for message in messages:
        # Reported by the doctor's own checks, with more detail: _settings (W001-W003), _offline_access (W004).
        if message.is_silenced() or message.id in _COVERED_CHECKS:
            continue
        # Another provider's (the per-provider checks carry theirs as obj); the site-wide ones go in every report.
        if isinstance(message.obj, Provider) and message.obj.name != report.provider.name:
            continue
        status = FAIL if message.level >= django_checks.ERROR else WARN
        report.add(f"check:{message.id}", status, f"{message.id}: {message.msg}", message.hint or "")


def _settings(report: Report) -> None:
    provider = report.provider
    for name in ("ISSUER", "CLIENT_ID", "CLIENT_SECRET"):
        if name == "CLIENT_SECRET" and uses_private_key_jwt(provider):
            continue  # the client key stands in for it (checked with the provider's metadata: client_key)
        if not getattr(provider, name):
            report.add(
                f"setting:{name}",
                FAIL,
                f"{setting_name(provider, name)} is not set",
                f"Set {env_name(provider, name)} (the values from the client registered at the provider).",
            )
    if provider.CLIENT_SECRET:
        report.add("setting:secret", OK, f"client {provider.CLIENT_ID!r}, secret {report.client_secret}")


def _redirect_uri(report: Report, site_url: str | None) -> None:
    """The redirect URI the site sends for this provider (views.redirect_uri): its REDIRECT_URI, or its callback
    (/oauth/callback/, or /oauth/callback/<name>/ with several providers) on the site's URL."""
    provider = report.provider
    if provider.REDIRECT_URI:
        uri, origin = str(provider.REDIRECT_URI), setting_name(provider, "REDIRECT_URI")
    else:
        base = (site_url or default_site_url()).rstrip("/")
        try:
            uri = base + views.provider_url("callback", provider)
        except NoReverseMatch:
            report.add(
                "redirect_uri",
                FAIL,
                "oauth_client's URLs are not in ROOT_URLCONF",
                "Add path('oauth/', include('oauth_client.urls')) to your URLconf.",
            )
            return
        origin = f"built from each request; shown for {base}/" + ("" if site_url else ", --site-url to change")
    report.redirect_uri = uri
    if urlsplit(uri).scheme not in ("http", "https") or not urlsplit(uri).hostname:
        report.add("redirect_uri", FAIL, f"redirect URI {uri!r} is not an absolute URL", "Use an absolute URL.")
    elif not settings.DEBUG and not is_secure_url(uri):
        report.add(
            "redirect_uri",
            FAIL,
            f"redirect URI {uri} is not https",
            "Serve the site over https (and set SECURE_PROXY_SSL_HEADER behind a proxy) or set REDIRECT_URI.",
        )
    else:
        report.add(
            "redirect_uri",
            OK,
            f"the site sends redirect_uri={uri} ({origin}): register exactly this URI at the provider",
        )


def _backchannel_logout_uri(report: Report, site_url: str | None) -> None:
    """The back-channel logout URI to register at the provider (if it supports back-channel logout): this
    provider's own (/oauth/backchannel-logout/<name>/ with several), on --site-url, else on the redirect URI's
    origin. Shown as a line for providers from OAUTH_CLIENT["PROVIDERS"], where each needs its own."""
    provider = report.provider
    if site_url or not provider.REDIRECT_URI:
        base = (site_url or default_site_url()).rstrip("/")
    else:
        parts = urlsplit(str(provider.REDIRECT_URI))
        base = f"{parts.scheme}://{parts.netloc}"
    try:
        report.backchannel_logout_uri = base + views.provider_url("backchannel_logout", provider)
    except NoReverseMatch:
        return
    if is_named(provider):
        report.add(
            "backchannel_logout_uri",
            INFO,
            f"back-channel logout URI of provider '{provider.name}': {report.backchannel_logout_uri} (register it "
            "at the provider if it supports back-channel logout)",
        )


def _discovery(report: Report) -> dict[str, Any] | None:
    issuer = report.provider.ISSUER
    env = env_name(report.provider, "ISSUER")
    url = discovery.discovery_url(issuer)
    fix_issuer = (
        f"Check {env}: it is the URL before /.well-known/openid-configuration, e.g. https://TENANT.auth0.com/, "
        "https://HOST/realms/REALM, https://TENANT.okta.com/oauth2/default, "
        "https://login.microsoftonline.com/TENANT_ID/v2.0, https://accounts.google.com (docs/providers.md)."
    )
    started = time.time()
    try:
        resp = http.request("GET", url, what="discovery", headers={"Accept": "application/json"})
    except ProviderFailure as exc:
        report.add("discovery", FAIL, f"{url}: {exc}", fix_issuer + " Is the provider reachable from this host?")
        return None
    finished = time.time()
    if resp.status != 200:
        report.add("discovery", FAIL, f"{url} answered HTTP {resp.status}", fix_issuer)
        return None
    try:
        data = resp.json()
    except InvalidResponse:
        data = None
    if not isinstance(data, dict):
        report.add("discovery", FAIL, f"{url} did not answer with a JSON object", fix_issuer)
        return None
    report.add("discovery", OK, f"discovery document fetched from {url}")
    advertised = str(data.get("issuer", ""))
    if advertised.rstrip("/") == issuer.rstrip("/"):
        report.add("issuer", OK, f"issuer matches: {advertised}")
    else:
        report.add(
            "issuer",
            FAIL,
            f"the provider's issuer is {advertised!r}, configured {issuer!r}",
            f"Set {env} to exactly {advertised!r}: ID tokens are checked against it.",
        )
    _clock(report, resp.headers.get("Date"), (started + finished) / 2, finished - started)
    return data


def _clock(report: Report, date_header: str | None, local: float, round_trip: float) -> None:
    if not date_header:
        report.add("clock", INFO, "the provider sent no Date header; clock skew not checked")
        return
    try:
        remote = parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError):
        report.add("clock", INFO, "the provider's Date header is malformed; clock skew not checked")
        return
    skew = local - remote
    # Date has one-second resolution and was stamped somewhere within the round trip: that much is noise.
    excess = max(0.0, abs(skew) - (round_trip / 2 + 1))
    leeway = int(oauth_settings.CLOCK_LEEWAY)
    text = f"clock skew against the provider: {skew:+.0f} s (allowed leeway {leeway} s)"
    fix = "Synchronise this host's clock (NTP, e.g. systemd-timesyncd or chrony)."
    if excess > leeway:
        report.add("clock", FAIL, text + ": fresh ID tokens would be refused", fix)
    elif excess > 5:
        report.add("clock", WARN, text, fix)
    else:
        report.add("clock", OK, text)


def _endpoints(report: Report, metadata: dict[str, Any]) -> None:
    for name in insecure_endpoints(metadata):
        report.add(
            f"endpoint:{name}",
            FAIL,
            f"{name} is plain http: {metadata[name]} (the client refuses to use it)",
            "The provider must advertise https endpoints; behind a proxy, check its public URL / forwarded headers.",
        )
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if isinstance(metadata.get(name), str) and metadata[name]:
            report.add(f"endpoint:{name}", OK, f"{name}: {metadata[name]}")
        else:
            report.add(f"endpoint:{name}", FAIL, f"{name} is missing from discovery", "This provider cannot be used.")
    revocation = metadata.get("revocation_endpoint")
    provider = report.provider
    if provider.REVOCATION_ENDPOINT:
        report.add(
            "endpoint:revocation_endpoint",
            OK,
            f"revocation_endpoint: {provider.REVOCATION_ENDPOINT} "
            f"(from {setting_name(provider, 'REVOCATION_ENDPOINT')})",
        )
    elif revocation:
        report.add("endpoint:revocation_endpoint", OK, f"revocation_endpoint: {revocation}")
    else:
        report.add(
            "endpoint:revocation_endpoint",
            WARN,
            "no revocation_endpoint: sign-out cannot revoke the refresh token at the provider",
            "If the provider has an RFC 7009 endpoint it does not advertise, set "
            f"{env_name(provider, 'REVOCATION_ENDPOINT')}.",
        )
    end_session = metadata.get("end_session_endpoint")
    if end_session:
        report.add("endpoint:end_session_endpoint", OK, f"end_session_endpoint: {end_session}")
    else:
        report.add(
            "endpoint:end_session_endpoint",
            WARN,
            "no end_session_endpoint: sign-out ends the session here but not at the provider",
            "Enable RP-initiated logout at the provider if it has it (Auth0: 'RP-Initiated Logout End Session "
            "Endpoint Discovery').",
        )
    if not metadata.get("userinfo_endpoint"):
        report.add("endpoint:userinfo_endpoint", INFO, "no userinfo_endpoint: only ID token claims are used")


def _refresh_grant(report: Report, metadata: dict[str, Any]) -> None:
    grants = metadata.get("grant_types_supported")
    if not isinstance(grants, list):
        report.add("grant:refresh_token", INFO, "grant_types_supported is not advertised; nothing to check")
    elif "refresh_token" in grants:
        report.add("grant:refresh_token", OK, "refresh_token is in grant_types_supported")
    else:
        report.add(
            "grant:refresh_token",
            FAIL,
            f"refresh_token is not in grant_types_supported {grants}",
            "Enable the refresh token grant for this client at the provider (Okta: grant type 'Refresh Token'; "
            "Auth0: Advanced Settings > Grant Types).",
        )


def _offline_access(report: Report, metadata: dict[str, Any]) -> None:
    provider = report.provider
    scopes = list(provider.SCOPES)
    supported = metadata.get("scopes_supported")
    extra = {str(k): str(v) for k, v in dict(provider.EXTRA_AUTH_PARAMS).items()}
    scopes_env, extra_env = env_name(provider, "SCOPES"), env_name(provider, "EXTRA_AUTH_PARAMS")
    if "offline_access" in scopes:
        if not isinstance(supported, list):
            report.add("offline_access", INFO, "offline_access requested; scopes_supported is not advertised")
        elif "offline_access" in supported:
            report.add("offline_access", OK, "offline_access is requested and in scopes_supported")
        else:
            report.add(
                "offline_access",
                FAIL,
                "offline_access is requested but not in the provider's scopes_supported",
                "This provider asks for refresh tokens differently: see its recipe in docs/providers.md (Google: "
                f"remove offline_access from {scopes_env}, set {extra_env}='access_type=offline&prompt=consent').",
            )
    elif extra.get("access_type") == "offline":
        if extra.get("prompt") == "consent":
            report.add("offline_access", OK, "refresh tokens requested with access_type=offline and prompt=consent")
        else:
            report.add(
                "offline_access",
                WARN,
                "access_type=offline without prompt=consent: Google issues a refresh token only at the first consent",
                f"Set {extra_env}='access_type=offline&prompt=consent'.",
            )
    else:
        report.add(
            "offline_access",
            FAIL,
            f"offline_access is not in the requested scopes ({' '.join(scopes)}): most providers issue no "
            "refresh token without it",
            f"Add offline_access to {scopes_env} (for Google: {extra_env}='access_type=offline&prompt=consent' "
            "instead).",
        )


def _auth_method(report: Report, metadata: dict[str, Any]) -> None:
    advertised = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    try:
        method = client_auth.auth_method(report.provider, metadata)
    except ConfigurationError as exc:
        report.add(
            "auth_method",
            FAIL,
            str(exc),
            f"The provider accepts {advertised}; this client supports {list(client_auth.SUPPORTED_AUTH_METHODS)}.",
        )
        return
    if method in advertised:
        report.add("auth_method", OK, f"client authentication {method} is supported by the provider")
        if method == "private_key_jwt":
            _client_key(report, metadata)
    else:
        report.add(
            "auth_method",
            FAIL,
            f"client authentication {method} is not in the provider's {advertised}",
            f"Set {env_name(report.provider, 'TOKEN_AUTH_METHOD')} to the method the client is registered with at "
            "the provider, or leave it empty to follow discovery.",
        )


def _client_key(report: Report, metadata: dict[str, Any]) -> None:
    """private_key_jwt: the key loads, and signs with an algorithm the provider accepts (never shows the key)."""
    provider = report.provider
    try:
        key = keys.signing_key(provider)
        alg = key.algorithm(
            metadata.get("token_endpoint_auth_signing_alg_values_supported"), str(provider.CLIENT_KEY_ALGORITHM or "")
        )
        upcoming = keys.next_key(provider)
    except ConfigurationError as exc:
        report.add(
            "client_key",
            FAIL,
            str(exc),
            f"Set {env_name(provider, 'CLIENT_KEY_FILE')} to a PEM private key (`manage.py oidc_client_key --out PATH`"
            " makes one) whose public key is registered at the provider.",
        )
        return
    audience = client_auth.assertion_audience(provider, metadata)
    found = f"client key {key.kid} loads; assertions are signed {alg}, aud {audience}"
    if upcoming is not None:
        found += f"; next key {upcoming.kid} is published at /oauth/jwks.json"
    report.add("client_key", OK, found)


def _high_security(report: Report, metadata: dict[str, Any]) -> None:
    """PAR and DPoP: what the settings ask, and whether the provider offers it."""
    provider = report.provider
    try:
        par = client.uses_par(provider, metadata)
    except ConfigurationError as exc:
        report.add(
            "par",
            FAIL,
            str(exc),
            f"Set {env_name(provider, 'PAR')}=auto (or off), or enable pushed authorization requests at the provider.",
        )
    else:
        if par:
            report.add(
                "par",
                OK,
                "authorization requests are pushed (PAR); the browser carries only a request_uri (the authorize URL "
                "below shows the parameters as they would go without PAR)",
            )
        elif metadata.get("require_pushed_authorization_requests") is True:
            if dpop.switch(provider.PAR) == "off":
                report.add(
                    "par",
                    FAIL,
                    "the provider requires pushed authorization requests, and PAR is off",
                    f"Set {env_name(provider, 'PAR')}=auto.",
                )
            else:
                report.add(
                    "par",
                    FAIL,
                    "the provider requires pushed authorization requests but advertises no "
                    "pushed_authorization_request_endpoint",
                    "Check the provider's discovery document (its PAR endpoint is missing).",
                )
        else:
            report.add("par", INFO, f"authorization requests go through the browser (PAR {dpop.switch(provider.PAR)})")
    if not dpop.enabled(provider):
        return
    algs = metadata.get("dpop_signing_alg_values_supported") or []
    if dpop.ALGORITHM in algs:
        report.add("dpop", OK, f"access tokens are bound to a DPoP key per session ({dpop.ALGORITHM})")
    else:
        report.add(
            "dpop",
            FAIL,
            f"DPoP is on, but the provider does not advertise {dpop.ALGORITHM} proofs ({algs or 'no DPoP at all'})",
            f"Enable DPoP at the provider, or set {env_name(provider, 'DPOP')}=off.",
        )


def _has_credentials(provider: Provider, metadata: dict[str, Any]) -> bool:
    try:
        return client_auth.auth_method(provider, metadata) == "private_key_jwt" or bool(provider.CLIENT_SECRET)
    except ConfigurationError:
        return False


def _client_credentials(report: Report, metadata: dict[str, Any]) -> None:
    """Present a made-up refresh token: a provider authenticates the client before it looks at the grant, so
    invalid_grant means the client's credentials were accepted, and nothing real was touched."""
    provider = report.provider
    issuer_ok = str(metadata.get("issuer", "")).rstrip("/") == provider.ISSUER.rstrip("/")
    if not (issuer_ok and provider.CLIENT_ID and _has_credentials(provider, metadata)):
        return
    if client_auth.auth_method(provider, metadata) == "private_key_jwt":
        fix_credentials = (
            f"Check {env_name(provider, 'CLIENT_ID')}, and that the provider knows this client's public key: "
            "registered (`manage.py oidc_client_key --show` prints it) or fetched from https://<your site>/oauth/"
            "jwks.json; and that the client is registered with token_endpoint_auth_method private_key_jwt."
        )
    else:
        fix_credentials = (
            f"Check {env_name(provider, 'CLIENT_ID')} and {env_name(provider, 'CLIENT_SECRET')}, and that "
            f"{env_name(provider, 'TOKEN_AUTH_METHOD')} matches the method the client is registered with at the "
            "provider."
        )
    try:
        client.refresh(provider, "oidc-doctor-probe-" + secrets.token_urlsafe(16))
    except InvalidGrant:
        report.add("client_auth", OK, "the token endpoint accepted the client credentials (probe: invalid_grant)")
        return
    except InvalidClient as exc:
        if exc.error == "unauthorized_client":
            report.add(
                "client_auth",
                FAIL,
                f"this client may not use the refresh_token grant ({exc})",
                "Allow the refresh token grant for this client at the provider (Auth0: Advanced Settings > Grant "
                "Types > Refresh Token; Okta: Grant type 'Refresh Token').",
            )
        else:
            report.add(
                "client_auth",
                FAIL,
                f"the provider rejected the client credentials ({exc})",
                fix_credentials + " A client secret may have expired (Entra ID secrets do, by design): create a new "
                "one at the provider and set it. Until then refreshes fail, but signed-in people keep their sessions "
                "(pages are served in grace, sensitive actions answer 503) and carry on once the secret is fixed.",
            )
        return
    except ProviderError as exc:
        report.add("client_auth", WARN, f"unexpected answer to a refresh probe: {exc}", fix_credentials)
        return
    except OAuthClientError as exc:
        report.add("client_auth", FAIL, f"token endpoint: {exc}", "Is the token endpoint reachable from this host?")
        return
    report.add("client_auth", WARN, "the provider accepted a made-up refresh token", "Report this to the provider.")


def _pkce(report: Report, metadata: dict[str, Any]) -> None:
    methods = metadata.get("code_challenge_methods_supported")
    if not isinstance(methods, list):
        report.add("pkce", INFO, "code_challenge_methods_supported is not advertised; PKCE S256 is sent anyway")
    elif "S256" in methods:
        report.add("pkce", OK, "PKCE S256 is supported")
    else:
        report.add("pkce", FAIL, f"PKCE S256 is not supported ({methods})", "Enable PKCE (S256) at the provider.")


def _jwks(report: Report, metadata: dict[str, Any]) -> None:
    uri = metadata.get("jwks_uri")
    if not isinstance(uri, str) or not uri:
        return
    allowed = list(report.provider.ALLOWED_ALGORITHMS)
    advertised = metadata.get("id_token_signing_alg_values_supported")
    algs = [a for a in advertised if a in allowed] if isinstance(advertised, list) else allowed
    if isinstance(advertised, list) and not algs:
        report.add(
            "jwks",
            FAIL,
            f"the provider signs ID tokens with {advertised}, none of which is allowed here",
            "Configure the client at the provider to sign ID tokens with RS256 (or another asymmetric algorithm "
            f"in {setting_name(report.provider, 'ALLOWED_ALGORITHMS')}); symmetric HS256 is refused.",
        )
        return
    try:
        resp = http.request("GET", uri, what="JWKS", headers={"Accept": "application/json"})
        if resp.status != 200:
            raise InvalidResponse(f"JWKS answered HTTP {resp.status}")
        keyset = jwk.JWKSet.from_json(resp.body)
    except ProviderFailure as exc:
        report.add("jwks", FAIL, f"{uri}: {exc}", "The provider's jwks_uri must serve its public signing keys.")
        return
    except Exception:  # noqa: BLE001 - jwcrypto raises several types for malformed sets
        report.add("jwks", FAIL, f"{uri} is not a valid JSON Web Key Set", "Check the provider's jwks_uri.")
        return
    usable = sorted(
        {
            alg
            for alg in algs
            if alg[:2] in _KTY_FOR_ALG_PREFIX
            for key in keyset
            if key.get("kty") == _KTY_FOR_ALG_PREFIX[alg[:2]] and key.get("use", "sig") == "sig"
        }
    )
    count = sum(1 for key in keyset if key.get("use", "sig") == "sig")
    if usable:
        report.add("jwks", OK, f"JWKS has {count} signing key(s) usable with {', '.join(usable)}")
    else:
        report.add(
            "jwks",
            FAIL,
            f"no key in the JWKS matches an allowed algorithm ({', '.join(algs)})",
            "The provider must publish its public signing key (RSA, EC or OKP) at jwks_uri.",
        )


def _curl(
    endpoint: str, method: str, form: list[tuple[str, str]], client_id: str, secret: str, provider: str = ""
) -> str:
    """`secret`: the client secret as masked for the report. With private_key_jwt the command makes a fresh
    assertion itself (`manage.py oidc_client_key --assertion`): neither the key nor an assertion is shown."""
    lines = [
        f"curl --request POST --url {shlex.quote(endpoint)}",
        "  --header 'content-type: application/x-www-form-urlencoded'",
    ]
    if method == "private_key_jwt":
        chosen = f" --provider {shlex.quote(provider)}" if provider else ""
        form = [*form, ("client_id", client_id), ("client_assertion_type", client_auth.ASSERTION_TYPE)]
        lines += [f"  --data-urlencode {shlex.quote(f'{name}={value}')}" for name, value in form]
        lines.append(f'  --data-urlencode "client_assertion=$(python manage.py oidc_client_key --assertion{chosen})"')
        return " \\\n".join(lines)
    if method == "client_secret_basic":
        lines.append(f"  --user {shlex.quote(f'{client_id}:{secret}')}")
    else:
        form = [*form, ("client_id", client_id), ("client_secret", secret)]
    lines += [f"  --data-urlencode {shlex.quote(f'{name}={value}')}" for name, value in form]
    return " \\\n".join(lines)


def _commands(report: Report, metadata: dict[str, Any]) -> None:
    """The authorize URL the site sends, and curl commands to finish the flow by hand (secret masked)."""
    if not report.redirect_uri or not isinstance(metadata.get("authorization_endpoint"), str):
        return
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    params = views.authorization_params(report.provider, report.redirect_uri, state, nonce, verifier)
    report.authorize_url = views.with_query(metadata["authorization_endpoint"], params)
    report.code_verifier = verifier
    token_endpoint = metadata.get("token_endpoint")
    if not isinstance(token_endpoint, str):
        return
    try:
        method = client_auth.auth_method(report.provider, metadata)
    except ConfigurationError:
        method = "client_secret_basic"
    chosen = report.provider.name if providers.several() else ""
    report.curl_code_exchange = _curl(
        token_endpoint,
        method,
        [
            ("grant_type", "authorization_code"),
            ("code", "YOUR_AUTHORIZATION_CODE"),
            ("redirect_uri", report.redirect_uri),
            ("code_verifier", verifier),
        ],
        report.client_id,
        report.client_secret,
        chosen,
    )
    report.curl_refresh = _curl(
        token_endpoint,
        method,
        [("grant_type", "refresh_token"), ("refresh_token", "YOUR_REFRESH_TOKEN")],
        report.client_id,
        report.client_secret,
        chosen,
    )
