"""Run the embedded development provider (idp/) as a real gunicorn server for end-to-end tests.

Plain class, no pytest fixtures::

    provider = EmbeddedProvider(tmp_dir, ["http://127.0.0.1:9/cb"], ["http://127.0.0.1:9/"])
    provider.start()
    try:
        ...  # provider.issuer, provider.client_id, provider.client_secret, provider.refresh_token_rows()
    finally:
        provider.stop()

All configuration goes through IDP_* environment variables (see idp/settings.py); `extra_env`
adds or overrides any of them, e.g. IDP_REFRESH_TOKEN_SECONDS or IDP_OLD_KEY_FILES.

Also the one gunicorn launcher (`launch_gunicorn`, `wait_until_ready`, `stop_process_group`), shared with
bench/harness.py's site under gunicorn. This module imports nothing from bench/ (bench imports it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Self

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process_group(process: subprocess.Popen[bytes] | None, timeout: float = 10) -> None:
    """SIGTERM to a server started with `start_new_session=True` and all its children (gunicorn's workers), then
    SIGKILL if it has not exited within `timeout`."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def launch_gunicorn(
    app: str, port: int, env: Mapping[str, str], log: IO[bytes], *options: str, workers: int = 1
) -> subprocess.Popen[bytes]:
    """`gunicorn <app>` on 127.0.0.1:<port> from the repository root, its output appended to `log`, in a session
    of its own (so stop_process_group signals master and workers as one group)."""
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        app,
        "-b",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--timeout",
        "60",
        # Gunicorn's default control socket is one per user ($HOME): servers running side by side (and the
        # developer's own `make run`) would fight over it.
        "--no-control-socket",
        *options,
    ]
    log.write(f"\n--- starting: {' '.join(command)}\n".encode())
    log.flush()
    return subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_until_ready(process: subprocess.Popen[bytes], probe: Callable[[], str | None], timeout: float) -> str | None:
    """Call `probe` (None once the server answers as it should, else what it got) until the server is ready:
    None then, else why not (the process exited, or what the last probe got when `timeout` ran out)."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with {process.returncode} during start"
        try:
            outcome = probe()
        except (requests.RequestException, ValueError) as exc:
            outcome = str(exc)
        if outcome is None:
            return None
        last = outcome
        time.sleep(0.1)
    return f"not ready after {timeout:.0f}s ({last})"


class ServerProcess:
    """What the test providers run as their own process share: stop, `with`, and loopback URLs. A subclass sets
    `port` and `_process` in `start()` and defines `issuer`."""

    error: type[RuntimeError] = RuntimeError
    port: int | None
    _process: subprocess.Popen[bytes] | None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server and its children (the whole process group)."""
        process, self._process = self._process, None
        stop_process_group(process)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise self.error("provider not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        raise NotImplementedError

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"


class EmbeddedProviderError(RuntimeError):
    pass


class EmbeddedProvider(ServerProcess):
    error = EmbeddedProviderError

    def __init__(
        self,
        tmp_dir: Path,
        redirect_uris: list[str],
        post_logout_redirect_uris: list[str],
        access_token_seconds: int = 120,
        id_token_seconds: int = 120,
        skip_authorization: bool = False,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.tmp_dir = Path(tmp_dir)
        self.redirect_uris = list(redirect_uris)
        self.post_logout_redirect_uris = list(post_logout_redirect_uris)
        self.access_token_seconds = access_token_seconds
        self.id_token_seconds = id_token_seconds
        self.skip_authorization = skip_authorization
        self.extra_env = dict(extra_env or {})
        self.database_path = self.tmp_dir / "idp.sqlite3"
        self.key_file = self.tmp_dir / "keys" / "oidc.pem"
        self.client_file = self.tmp_dir / "client.json"
        self.log_file = self.tmp_dir / "idp.log"
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._client: dict[str, str] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> EmbeddedProvider:
        """Migrate, provision the client, launch gunicorn and wait until discovery answers."""
        if self._process is not None:
            raise EmbeddedProviderError("provider already started")
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port = free_port()
        self.manage("migrate", "--noinput", "-v", "0")
        setup = ["idp_setup", "--output", str(self.client_file)]
        setup += [arg for uri in self.redirect_uris for arg in ("--redirect-uri", uri)]
        setup += [arg for uri in self.post_logout_redirect_uris for arg in ("--post-logout-redirect-uri", uri)]
        if self.skip_authorization:
            setup.append("--skip-authorization")
        self.manage(*setup)
        self._client = json.loads(self.client_file.read_text())
        self._launch()
        return self

    def restart(self, extra_env: dict[str, str] | None = None) -> None:
        """Restart the server on the same port and database, e.g. with a rotated signing key.

        `extra_env` is merged into the environment given at construction and kept for later restarts.
        """
        self.stop()
        if extra_env:
            self.extra_env.update(extra_env)
        self._launch()

    def rotate_signing_key(self, keep_old: bool = True) -> Path:
        """Restart with a newly generated signing key and return its path.

        With `keep_old`, the previous key stays published in the JWKS (IDP_OLD_KEY_FILES), as in a
        real rotation; without it, tokens signed before the rotation can no longer be verified.
        """
        env = self.env()
        current = Path(env["IDP_KEY_FILE"])
        retired = [p for p in env.get("IDP_OLD_KEY_FILES", "").split(",") if p]
        new_key = current.with_name(f"oidc-{time.time_ns()}.pem")
        old_keys = ",".join([str(current), *retired]) if keep_old else ""
        self.restart({"IDP_KEY_FILE": str(new_key), "IDP_OLD_KEY_FILES": old_keys})
        return new_key

    # -- what a client needs -------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/o"

    @property
    def client_id(self) -> str:
        return self._client_value("client_id")

    @property
    def client_secret(self) -> str:
        return self._client_value("client_secret")

    @property
    def username(self) -> str:
        return self._client_value("username")

    @property
    def password(self) -> str:
        return self._client_value("password")

    def env(self) -> dict[str, str]:
        """Environment for anything run against this provider (manage.py commands, gunicorn)."""
        if self.port is None:
            raise EmbeddedProviderError("provider not started")
        env = dict(os.environ)
        env.update(
            {
                # Explicit: pytest-django exports the site's settings module to child processes.
                "DJANGO_SETTINGS_MODULE": "idp.settings",
                "IDP_ISSUER": f"http://127.0.0.1:{self.port}/o",
                "IDP_DATABASE_PATH": str(self.database_path),
                "IDP_KEY_FILE": str(self.key_file),
                "IDP_ACCESS_TOKEN_SECONDS": str(self.access_token_seconds),
                "IDP_ID_TOKEN_SECONDS": str(self.id_token_seconds),
                "PYTHONUNBUFFERED": "1",
                "IDP_FAST_PASSWORD_HASHING": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `manage.py <args>` against this provider's database; raise with its output on failure."""
        if self.port is None:
            self.port = free_port()
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO_ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise EmbeddedProviderError(
                f"manage.py {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    # -- database inspection (read-only, from the test process) --------------------------------

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        # A fresh read-only connection per query sees the latest commit and never holds a read
        # lock across server writes; works with rollback-journal and WAL databases alike.
        uri = f"{self.database_path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=20)
        try:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()

    def refresh_token_rows(self) -> list[dict[str, Any]]:
        """Every RefreshToken row, oldest first: token, revoked, access_token_id, user_id, created."""
        return self._query(
            "SELECT id, token, revoked, access_token_id, user_id, created, token_family"
            " FROM oauth2_provider_refreshtoken ORDER BY id"
        )

    def count_refresh_tokens(self) -> int:
        return int(self._query("SELECT COUNT(*) AS n FROM oauth2_provider_refreshtoken")[0]["n"])

    def active_refresh_tokens(self) -> list[dict[str, Any]]:
        """The refresh token rows not revoked (same columns as refresh_token_rows)."""
        return [row for row in self.refresh_token_rows() if row["revoked"] is None]

    def is_refresh_token_revoked(self, token: str) -> bool:
        """True when the token is revoked or no longer in the database at all."""
        # Matched on DOT's checksum column too, so this keeps working with hashed token storage.
        checksum = hashlib.sha256(token.encode()).hexdigest()
        rows = self._query(
            "SELECT revoked FROM oauth2_provider_refreshtoken WHERE token_checksum = ? OR token = ?",
            (checksum, token),
        )
        return all(row["revoked"] is not None for row in rows)

    def access_token_rows(self) -> list[dict[str, Any]]:
        """Every AccessToken row, oldest first (a refresh deletes the previous access token's row)."""
        return self._query(
            "SELECT id, token, expires, source_refresh_token_id, id_token_id, user_id, created"
            " FROM oauth2_provider_accesstoken ORDER BY id"
        )

    def access_token_count(self) -> int:
        return int(self._query("SELECT COUNT(*) AS n FROM oauth2_provider_accesstoken")[0]["n"])

    # -- internals -----------------------------------------------------------------------------

    def _client_value(self, key: str) -> str:
        if not self._client:
            raise EmbeddedProviderError("provider not started")
        return self._client[key]

    def _launch(self) -> None:
        assert self.port is not None
        with self.log_file.open("ab") as log:
            options = ("--threads", "8", "--access-logfile", "-")
            self._process = launch_gunicorn("idp.wsgi:application", self.port, self.env(), log, *options)
        failure = wait_until_ready(self._process, self._discovery_answers, START_TIMEOUT)
        if failure:
            self.stop()
            raise EmbeddedProviderError(f"provider {failure}\n{self.log_tail()}")

    def _discovery_answers(self) -> str | None:
        response = requests.get(self.discovery_url, timeout=2)
        if response.status_code == 200 and response.json().get("issuer") == self.issuer:
            return None
        return f"HTTP {response.status_code}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def short_lived(tmp_dir: Path, token_seconds: int) -> EmbeddedProvider:
    """A started provider whose access and ID tokens live `token_seconds` (any loopback redirect URI)."""
    return EmbeddedProvider(
        tmp_dir,
        redirect_uris=["http://127.0.0.1:9/oauth/callback/"],
        post_logout_redirect_uris=["http://127.0.0.1:9/"],
        access_token_seconds=token_seconds,
        id_token_seconds=token_seconds,
    ).start()
