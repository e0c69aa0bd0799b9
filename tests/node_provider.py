"""Run node `oidc-provider` (panva, OpenID Certified; tests/op/server.mjs) as the test suite's independent provider.

Plain class, no pytest fixtures (tests/conftest.py has them)::

    reason = NodeProvider.unavailable_reason()   # None, or why it cannot run here (no node, no node_modules)
    provider = NodeProvider(tmp_dir)
    provider.start()
    try:
        provider.register_client("site-1", secret, redirect_uris=[...], backchannel_logout_uri=...)
        ...  # provider.issuer, provider.username, provider.password, provider.counts()
    finally:
        provider.stop()

Configured like a strict real provider: refresh-token rotation with reuse detection, `offline_access` only with
`prompt=consent`, profile/email claims only from userinfo, PKCE (S256) required, revocation, RP-initiated logout,
back-channel logout, 12-second access and ID tokens by default. Counters of its own events are read from its
test-only admin API (`/__test/…`, behind a random bearer token).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from tests.provider import ServerProcess, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
OP_DIR = REPO_ROOT / "tests" / "op"
SERVER = OP_DIR / "server.mjs"
START_TIMEOUT = 30.0
# oidc-provider 9 calls crypto.hash (Node 20.12) and URL.parse (Node 20.18).
MIN_NODE = (20, 18)


class NodeProviderError(RuntimeError):
    pass


class NodeProvider(ServerProcess):
    error = NodeProviderError

    def __init__(
        self,
        tmp_dir: Path,
        access_token_seconds: int = 12,
        id_token_seconds: int = 12,
        refresh_token_seconds: int = 3600,
        username: str = "referee",
        default_redirect_uris: list[str] | None = None,
        dpop_nonce: bool = False,
        par: bool = True,
    ) -> None:
        self.tmp_dir = Path(tmp_dir)
        self.access_token_seconds = access_token_seconds
        self.id_token_seconds = id_token_seconds
        self.refresh_token_seconds = refresh_token_seconds
        self._username = username
        # Whether every DPoP proof must carry the provider's nonce; whether pushed authorization requests exist.
        self.dpop_nonce = dpop_nonce
        self.par = par
        # The one account's claims (sub is the provider's own, not the username).
        self.account_name = "Node Referee"
        self.account_email = "referee@example.org"
        self._password = secrets.token_urlsafe(18)
        self._admin_token = secrets.token_urlsafe(24)
        self.default_redirect_uris = default_redirect_uris or ["http://127.0.0.1:9/oauth/callback/"]
        self.log_file = self.tmp_dir / "node-op.log"
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._client: dict[str, str] = {}
        self._admin = requests.Session()
        self._admin.headers["Authorization"] = f"Bearer {self._admin_token}"

    # -- can it run here? ------------------------------------------------------------------------------------

    @staticmethod
    def unavailable_reason() -> str | None:
        """Why node oidc-provider cannot run on this machine, or None when it can."""
        node = shutil.which("node")
        if node is None:
            return "node is not installed (CI installs it: .ci/run; `make test` runs npm ci in tests/op)"
        if not (OP_DIR / "node_modules" / "oidc-provider").is_dir():
            return "tests/op/node_modules is missing: run `npm ci --prefix tests/op` (make test does)"
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
        match = re.match(r"v(\d+)\.(\d+)", version)
        if match is None or (int(match[1]), int(match[2])) < MIN_NODE:
            return f"node {version or '?'} is too old for oidc-provider 9 (needs {MIN_NODE[0]}.{MIN_NODE[1]}+)"
        return None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> NodeProvider:
        """Launch node on a free loopback port, wait for discovery, register the default client."""
        if self._process is not None:
            raise NodeProviderError("provider already started")
        reason = self.unavailable_reason()
        if reason:
            raise NodeProviderError(reason)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = {
            **os.environ,
            "OP_PORT": str(self.port),
            "OP_USERNAME": self._username,
            "OP_ACCOUNT_NAME": self.account_name,
            "OP_ACCOUNT_EMAIL": self.account_email,
            "OP_PASSWORD": self._password,  # in the environment, not on the command line (ps)
            "OP_ADMIN_TOKEN": self._admin_token,
            "OP_ACCESS_TOKEN_TTL": str(self.access_token_seconds),
            "OP_ID_TOKEN_TTL": str(self.id_token_seconds),
            "OP_REFRESH_TOKEN_TTL": str(self.refresh_token_seconds),
            "OP_DPOP_NONCE": "1" if self.dpop_nonce else "",
            "OP_PAR": "on" if self.par else "off",
        }
        with self.log_file.open("ab") as log:
            log.write(f"\n--- starting node {SERVER.name} on port {self.port}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                ["node", str(SERVER)],
                cwd=OP_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_until_ready()
        secret = secrets.token_urlsafe(32)
        self.register_client("default-site", secret, redirect_uris=self.default_redirect_uris)
        self._client = {"client_id": "default-site", "client_secret": secret}
        return self

    # -- what a client needs -----------------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return self.base_url  # oidc-provider's issuer is exactly the URL it was given, without a trailing slash

    @property
    def username(self) -> str:
        return self._username

    @property
    def password(self) -> str:
        return self._password

    @property
    def client_id(self) -> str:
        return self._client_value("client_id")

    @property
    def client_secret(self) -> str:
        return self._client_value("client_secret")

    def metadata(self) -> dict[str, Any]:
        resp = requests.get(self.discovery_url, timeout=10)
        resp.raise_for_status()
        return dict(resp.json())

    # -- test-only admin API -----------------------------------------------------------------------------------

    def register_client(
        self,
        client_id: str,
        client_secret: str | None,
        *,
        redirect_uris: list[str],
        post_logout_redirect_uris: list[str] | None = None,
        backchannel_logout_uri: str | None = None,
        backchannel_logout_session_required: bool = True,
        token_endpoint_auth_method: str = "client_secret_basic",
        grant_types: tuple[str, ...] = ("authorization_code", "refresh_token"),
        **metadata: Any,
    ) -> dict[str, Any]:
        """Register (or replace) a confidential web client; returns its metadata as the provider stored it
        (without the secret). Web clients need exact redirect URIs, so each test site registers its own.

        `metadata`: more client metadata as the provider names it (RFC 7591, RFC 9126 §6, RFC 9449 §5.2): `jwks`
        or `jwks_uri` (for private_key_jwt), `token_endpoint_auth_signing_alg`,
        `require_pushed_authorization_requests`, `dpop_bound_access_tokens`."""
        body: dict[str, Any] = {
            "client_id": client_id,
            **({"client_secret": client_secret} if client_secret else {}),
            **metadata,
            "redirect_uris": redirect_uris,
            "post_logout_redirect_uris": post_logout_redirect_uris or [],
            "token_endpoint_auth_method": token_endpoint_auth_method,
            "grant_types": list(grant_types),
            "response_types": ["code"],
        }
        if backchannel_logout_uri:
            body["backchannel_logout_uri"] = backchannel_logout_uri
            body["backchannel_logout_session_required"] = backchannel_logout_session_required
        resp = self._admin.post(f"{self.base_url}/__test/clients", json=body, timeout=10)
        if resp.status_code != 201:
            raise NodeProviderError(f"client registration refused: HTTP {resp.status_code} {resp.text[:500]}")
        return dict(resp.json())

    def counts(self, client_id: str | None = None) -> dict[str, int]:
        """The provider's event counters since the last reset: authorization_code_grants, refresh_grants,
        refresh_errors, refresh_token_reuse, revocations, logout_grant_revocations, backchannel_success,
        backchannel_error, end_session, … — all clients together, or one client's."""
        data = self._counts()
        if client_id is None:
            return dict(data["total"])
        zero = dict.fromkeys(data["total"], 0)
        return {**zero, **data["clients"].get(client_id, {})}

    def backchannel_errors(self) -> list[dict[str, str]]:
        """Why back-channel deliveries failed (the provider's error message per delivery; no token material)."""
        return list(self._counts()["backchannel_errors"])

    def errors(self) -> dict[str, int]:
        """Error answers since the last reset, by endpoint event and error code, e.g.
        {"grant.error use_dpop_nonce": 2, "grant.error invalid_client": 1}."""
        return dict(self._counts()["errors"])

    def bound_keys(self, client_id: str) -> list[str]:
        """The DPoP key thumbprints (`cnf.jkt`) of the access tokens issued to `client_id`, in order."""
        return list(self._counts()["bound_keys"].get(client_id, []))

    def reset_counts(self) -> None:
        resp = self._admin.post(f"{self.base_url}/__test/counts/reset", timeout=10)
        resp.raise_for_status()

    def _counts(self) -> dict[str, Any]:
        resp = self._admin.get(f"{self.base_url}/__test/counts", timeout=10)
        resp.raise_for_status()
        return dict(resp.json())

    # -- internals ---------------------------------------------------------------------------------------------

    def _client_value(self, key: str) -> str:
        if not self._client:
            raise NodeProviderError("provider not started")
        return self._client[key]

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise NodeProviderError(f"node oidc-provider exited with {code} during start\n{self.log_tail()}")
            try:
                response = requests.get(self.discovery_url, timeout=2)
                if response.status_code == 200 and response.json().get("issuer") == self.issuer:
                    return
                last_error = f"HTTP {response.status_code}"
            except (requests.RequestException, ValueError) as exc:
                last_error = str(exc)
            time.sleep(0.1)
        self.stop()
        raise NodeProviderError(
            f"node oidc-provider not ready after {START_TIMEOUT:.0f}s ({last_error})\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
