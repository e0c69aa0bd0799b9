"""A hostile OpenID provider: a real HTTP server on 127.0.0.1 that behaves like a correct provider until a test
tells it to misbehave, modelled on the OpenID Foundation's RP certification cases.

It serves discovery, JWKS, authorize, token and userinfo. Its signing keys are generated with jwcrypto when it
starts. A correct sign-in against it succeeds; every knob below breaks one thing::

    with HostileProvider() as op:
        settings.OAUTH_CLIENT = op.client_settings()
        op.id_token_claims = {"aud": "someone-else"}      # every ID token from now on: wrong audience
        op.id_token_forger = lambda claims: unsigned(claims, op.signing_key.kid)   # alg: none
        op.token_reply = lambda body: Reply(200, {k: v for k, v in body.items() if k != "token_type"})
        op.token_outage = Reply(503, b"down", {"Retry-After": "1"})   # down before doing anything
        op.rotate_signing_key()                           # new kid; the old key leaves the JWKS

What it saw is recorded (`hits` per endpoint, `grants`, every token it `issued`), so tests can assert on the
provider's side of the conversation. It runs on tests/stub_server.py's StubServer (every request also in `seen`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from jwcrypto import jwk, jws

from tests.stub_server import Answer, Seen, StubServer


class _Omit:
    def __repr__(self) -> str:
        return "OMIT"


OMIT: Any = _Omit()  # as a claim or parameter value: leave it out


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def json_b64(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def new_key(kty: str = "RSA", kid: str | None = None) -> jwk.JWK:
    kid = kid or f"{kty.lower()}-{secrets.token_hex(4)}"
    if kty == "RSA":
        return jwk.JWK.generate(kty="RSA", size=2048, kid=kid, use="sig")
    if kty == "EC":
        return jwk.JWK.generate(kty="EC", crv="P-256", kid=kid, use="sig")
    raise ValueError(kty)


def alg_for(key: jwk.JWK) -> str:
    return {"RSA": "RS256", "EC": "ES256"}[key.get("kty")]


def sign(
    claims: dict[str, Any] | bytes, key: jwk.JWK, alg: str | None = None, header: dict[str, Any] | None = None
) -> str:
    """A compact JWS of `claims` (or of raw payload bytes). `header` replaces the default protected header
    ({alg, kid, typ})."""
    alg = alg or alg_for(key)
    protected = header if header is not None else {"alg": alg, "kid": key.get("kid"), "typ": "JWT"}
    token = jws.JWS(claims if isinstance(claims, bytes) else json.dumps(claims).encode())
    token.add_signature(key, alg=alg, protected=json.dumps(protected))
    return token.serialize(compact=True)


def unsigned(claims: dict[str, Any], kid: str | None = None) -> str:
    """`alg: none` (RFC 7519 §6): header.payload. with an empty signature."""
    header = {"alg": "none", "typ": "JWT", **({"kid": kid} if kid else {})}
    return f"{json_b64(header)}.{json_b64(claims)}."


def hs256_with_public_key(claims: dict[str, Any], key: jwk.JWK) -> str:
    """The algorithm-confusion attack: HMAC-SHA256 keyed with the provider's *public* key (PEM and JWK forms are
    both tried by attackers; the PEM is the classic one)."""
    header = {"alg": "HS256", "kid": key.get("kid"), "typ": "JWT"}
    signing_input = f"{json_b64(header)}.{json_b64(claims)}"
    secret = key.export_to_pem(private_key=False)
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


@dataclass
class Reply:
    """An HTTP answer. `body` is bytes, or JSON-encoded when it is anything else; `chunked` drops
    Content-Length (the body then ends when the connection closes, as with a streaming proxy)."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False

    def encoded(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()


@dataclass
class _Grant:
    nonce: str
    redirect_uri: str
    code_challenge: str
    client_id: str


class HostileProvider(StubServer):
    """See the module docstring. Use as a context manager, or call start() and stop()."""

    def __init__(self, *, advertise_iss: bool = True, token_seconds: int = 300) -> None:
        super().__init__()
        self.default = self._answer
        self.base_url = self.url
        self.client_id = "hostile-client"
        self.client_secret = secrets.token_urlsafe(24)
        self.subject = "alice-0001"
        self.email = "alice@hostile.example"
        self.token_seconds = token_seconds
        self.advertise_iss = advertise_iss
        self.signing_key = new_key("RSA")
        self.published: list[jwk.JWK] = [self.signing_key]
        self._lock = threading.Lock()
        self.reset()
        # What the provider saw (and `hits`, from `seen`).
        self.grants: list[str] = []
        self.issued: dict[str, list[str]] = {"access_token": [], "refresh_token": [], "id_token": [], "code": []}
        self._codes: dict[str, _Grant] = {}
        self._refresh_tokens: dict[str, bool] = {}  # token → still valid
        # Refresh tokens presented again after they were rotated (a provider like Auth0 treats that as theft),
        # and tokens revoked at /revoke (RFC 7009).
        self.reused: list[str] = []
        self.revoked: list[str] = []
        self.authenticated_at: int | None = None
        self._access_tokens: set[str] = set()

    def reset(self) -> None:
        """Back to correct behaviour (the recorded history is kept)."""
        self.id_token_claims: dict[str, Any] = {}
        self.id_token_forger: Callable[[dict[str, Any]], str] | None = None
        self.omit_id_token = False
        self.token_reply: Callable[[dict[str, Any]], Reply] | None = None
        self.token_outage: Reply | None = None  # answered before the request is even looked at
        self.userinfo_claims: dict[str, Any] = {}
        self.authorize_params: dict[str, Any] = {}
        self.discovery_overrides: dict[str, Any] = {}
        self.jwks_extra: list[dict[str, Any]] = []
        self.jwks_delay = 0.0
        self.jwks_outage: Reply | None = None  # answered instead of the key set
        self.token_delay = 0.0  # seconds to sit on a token request before answering

    # -- what a client needs -----------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return self.base_url

    @property
    def hits(self) -> Counter[str]:
        """Requests per path."""
        return Counter(seen.path.split("?", 1)[0] for seen in self.seen)

    def client_settings(self, **overrides: Any) -> dict[str, Any]:
        return {
            "ISSUER": self.issuer,
            "CLIENT_ID": self.client_id,
            "CLIENT_SECRET": self.client_secret,
            # Short timeouts: every misbehaviour here answers at once or hangs on purpose.
            "HTTP_TIMEOUT": (1.0, 2.0),
            "HTTP_RETRIES": 1,
            "HTTP_RETRY_BUDGET": 3.0,
            **overrides,
        }

    def metadata(self) -> dict[str, Any]:
        data = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.base_url}/authorize",
            "token_endpoint": f"{self.base_url}/token",
            "userinfo_endpoint": f"{self.base_url}/userinfo",
            "jwks_uri": f"{self.base_url}/jwks",
            "revocation_endpoint": f"{self.base_url}/revoke",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": self.advertise_iss,
        }
        data.update(self.discovery_overrides)
        return {k: v for k, v in data.items() if v is not OMIT}

    # -- keys --------------------------------------------------------------------------------------------

    def rotate_signing_key(self, *, keep_old: bool = False, kty: str = "RSA") -> jwk.JWK:
        """Sign with a new key (new kid) from now on; publish it, and the old one only with `keep_old`."""
        new = new_key(kty)
        with self._lock:
            self.published = [*self.published, new] if keep_old else [new]
            self.signing_key = new
        return new

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.export_public(as_dict=True) for k in self.published] + self.jwks_extra}

    # -- tokens ------------------------------------------------------------------------------------------

    def id_token_claims_for(self, nonce: str | None) -> dict[str, Any]:
        now = int(time.time())
        if nonce is not None:
            # A sign-in authenticates now; a refresh keeps that time (OIDC Core §12.2).
            self.authenticated_at = now
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": self.subject,
            "aud": self.client_id,
            "exp": now + self.token_seconds,
            "iat": now,
            "auth_time": self.authenticated_at or now,
            "email": self.email,
            "name": "Alice Hostile",
        }
        if nonce is not None:
            claims["nonce"] = nonce
        claims.update(self.id_token_claims)
        return {k: v for k, v in claims.items() if v is not OMIT}

    def sign(self, claims: dict[str, Any]) -> str:
        return sign(claims, self.signing_key)

    def _issue(self, nonce: str | None) -> dict[str, Any]:
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        claims = self.id_token_claims_for(nonce)
        id_token = self.id_token_forger(claims) if self.id_token_forger else self.sign(claims)
        with self._lock:
            self._access_tokens.add(access)
            self._refresh_tokens[refresh] = True
            self.issued["access_token"].append(access)
            self.issued["refresh_token"].append(refresh)
            self.issued["id_token"].append(id_token)
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.token_seconds,
            "refresh_token": refresh,
            "scope": "openid profile email offline_access",
        }
        if not self.omit_id_token:
            body["id_token"] = id_token
        return body

    # -- endpoints ---------------------------------------------------------------------------------------

    def _authorize(self, params: dict[str, str]) -> Reply:
        if (
            params.get("client_id") != self.client_id
            or params.get("response_type") != "code"
            or params.get("code_challenge_method") != "S256"
            # Loopback live servers, and Django's in-process test client.
            or not params.get("redirect_uri", "").startswith(("http://127.0.0.1:", "http://testserver/"))
        ):
            return Reply(400, b"bad authorization request", {"Content-Type": "text/plain"})
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Grant(
                nonce=params.get("nonce", ""),
                redirect_uri=params["redirect_uri"],
                code_challenge=params.get("code_challenge", ""),
                client_id=params["client_id"],
            )
            self.issued["code"].append(code)
        answer: dict[str, Any] = {"code": code, "state": params.get("state", "")}
        if self.advertise_iss:
            answer["iss"] = self.issuer
        answer.update(self.authorize_params)
        query = urlencode({k: v for k, v in answer.items() if v is not OMIT})
        return Reply(302, b"", {"Location": f"{params['redirect_uri']}?{query}"})

    def _client_authenticated(self, headers: Any, form: dict[str, str]) -> bool:
        auth = headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                client_id, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
            client_id, secret = unquote(client_id), unquote(secret)
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        return client_id == self.client_id and hmac.compare_digest(secret, self.client_secret)

    def _token(self, headers: Any, form: dict[str, str]) -> Reply:
        grant_type = form.get("grant_type", "")
        with self._lock:
            self.grants.append(grant_type)
        if self.token_delay:
            time.sleep(self.token_delay)
        if self.token_outage is not None:
            return self.token_outage
        if not self._client_authenticated(headers, form):
            return Reply(401, {"error": "invalid_client"}, {"Content-Type": "application/json"})
        nonce: str | None = None
        if grant_type == "authorization_code":
            with self._lock:
                grant = self._codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            challenge = b64(hashlib.sha256(verifier.encode()).digest())
            if grant is None or grant.redirect_uri != form.get("redirect_uri") or challenge != grant.code_challenge:
                return Reply(400, {"error": "invalid_grant"}, {"Content-Type": "application/json"})
            nonce = grant.nonce
        elif grant_type == "refresh_token":
            token = form.get("refresh_token", "")
            with self._lock:
                valid = self._refresh_tokens.get(token, False)
                if token in self._refresh_tokens:
                    if not valid and token not in self.revoked:
                        self.reused.append(token)
                    self._refresh_tokens[token] = False  # rotated: single use
            if not valid:
                return Reply(400, {"error": "invalid_grant"}, {"Content-Type": "application/json"})
        else:
            return Reply(400, {"error": "unsupported_grant_type"}, {"Content-Type": "application/json"})
        body = self._issue(nonce)
        if self.token_reply is not None:
            return self.token_reply(body)
        return Reply(200, body, {"Content-Type": "application/json", "Cache-Control": "no-store"})

    def _userinfo(self, headers: Any) -> Reply:
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self._access_tokens:
            return Reply(401, b"", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        info = {"sub": self.subject, "email": self.email, "given_name": "Alice", **self.userinfo_claims}
        body = json.dumps({k: v for k, v in info.items() if v is not OMIT}).encode()
        # "DEEP" as a value stands for JSON nested far beyond any parser's recursion limit.
        body = body.replace(b'"DEEP"', b"[" * 100_000 + b"]" * 100_000)
        return Reply(200, body, {"Content-Type": "application/json"})

    def _route(self, method: str, path: str, query: dict[str, str], headers: Any, form: dict[str, str]) -> Reply:
        json_type = {"Content-Type": "application/json"}
        if path == "/.well-known/openid-configuration":
            return Reply(200, self.metadata(), json_type)
        if path == "/jwks":
            if self.jwks_delay:
                time.sleep(self.jwks_delay)
            if self.jwks_outage is not None:
                return self.jwks_outage
            return Reply(200, self.jwks(), json_type)
        if path == "/revoke" and method == "POST":
            if not self._client_authenticated(headers, form):
                return Reply(401, {"error": "invalid_client"}, json_type)
            token = form.get("token", "")
            with self._lock:
                self.revoked.append(token)
                if token in self._refresh_tokens:
                    self._refresh_tokens[token] = False
                self._access_tokens.discard(token)
            return Reply(200, b"", {})
        if path == "/authorize" and method == "GET":
            return self._authorize(query)
        if path == "/token" and method == "POST":
            return self._token(headers, form)
        if path == "/userinfo":
            return self._userinfo(headers)
        return Reply(404, b"not found", {"Content-Type": "text/plain"})

    def _answer(self, seen: Seen) -> Answer:
        url = urlsplit(seen.path)
        form = {k: v[-1] for k, v in parse_qs(seen.body.decode()).items()}
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        reply = self._route(seen.method, url.path, query, seen.headers, form)
        headers = {**reply.headers, "Connection": "close"}
        return Answer(reply.status, reply.encoded(), headers, framed=not reply.chunked)
