"""What the benchmark and the load run share: the PostgreSQL database, the embedded provider, the site under
gunicorn, signed-in simulated browsers, and figures. Loopback only; every wait is bounded.

The site runs with `bench.settings` (the demo site's settings, on product defaults, plus one control view).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.browser import Browser  # noqa: E402
from tests.provider import (  # noqa: E402
    EmbeddedProvider,
    free_port,
    launch_gunicorn,
    stop_process_group,
    wait_until_ready,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/oauthsite_bench"
# The provider's access log gives each request's own time (%(D)s, microseconds): benchmark (3) needs the
# token endpoint's time as the provider saw it.
PROVIDER_ACCESS_LOG_FORMAT = "--access-logformat 'ACCESS %(m)s %(U)s %(s)s %(D)s'"
ACCOUNT_PASSWORD = "bench-password"  # noqa: S105 - a throwaway account on a throwaway provider


# --- the database ---------------------------------------------------------------------------------------------


def bench_database_url() -> str:
    """DATABASE_URL (default oauthsite_bench). The run empties the site's session tables, so the database name
    must say it is a benchmark database."""
    url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise SystemExit(f"the benchmarks need PostgreSQL; DATABASE_URL is {parts.scheme}://…")
    name = parts.path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"refusing to empty database {name!r}: use a database whose name contains 'bench'")
    return url


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query)))


def ensure_database(url: str) -> None:
    """Create the database if it does not exist yet (connecting to the server's `postgres` database)."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres", query=""))
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(database_url: str, site_env: dict[str, str]) -> None:
    """Configure this process like the site's workers (same settings, database and secret key), migrate,
    and empty the session tables, so the run starts from nothing."""
    os.environ.update(site_env)
    os.environ["DATABASE_URL"] = database_url
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", "--noinput", verbosity=0)
    from django.contrib.sessions.models import Session

    from oauth_client.models import OAuthIdentity, OAuthSession

    # The last run's tokens were encrypted under its own random secret key: delete without reading them.
    OAuthSession.objects.defer("access_token", "id_token", "refresh_token").delete()
    OAuthIdentity.objects.all().delete()
    Session.objects.all().delete()


# --- the provider ---------------------------------------------------------------------------------------------


def start_provider(tmp_dir: Path, token_seconds: int) -> EmbeddedProvider:
    provider = EmbeddedProvider(
        tmp_dir,
        redirect_uris=["http://127.0.0.1:9/oauth/callback/"],
        post_logout_redirect_uris=["http://127.0.0.1:9/"],
        access_token_seconds=token_seconds,
        id_token_seconds=token_seconds,
        extra_env={"GUNICORN_CMD_ARGS": PROVIDER_ACCESS_LOG_FORMAT},
    )
    return provider.start()


def create_accounts(provider: EmbeddedProvider, count: int) -> list[str]:
    """`count` user accounts at the provider (one password hash computed once and shared: only the sign-in
    itself should pay for key stretching)."""
    script = (
        "from django.contrib.auth import get_user_model\n"
        "from django.contrib.auth.hashers import make_password\n"
        "User = get_user_model()\n"
        f"h = make_password({ACCOUNT_PASSWORD!r})\n"
        f"for i in range({count}):\n"
        "    User.objects.update_or_create(username=f'bench{i:03d}', defaults=dict(password=h,"
        " first_name='Bench', last_name=f'User {i:03d}', email=f'bench{i:03d}@example.com'))\n"
    )
    provider.manage("shell", "-c", script)
    return [f"bench{i:03d}" for i in range(count)]


@dataclass
class AccessLogEntry:
    method: str
    path: str
    status: int
    micros: int


class ProviderAccessLog:
    """The provider's access log, read from a position onwards (see PROVIDER_ACCESS_LOG_FORMAT)."""

    def __init__(self, provider: EmbeddedProvider) -> None:
        self.path = provider.log_file
        self.offset = self.path.stat().st_size

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def entries(self) -> list[AccessLogEntry]:
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        out = []
        for line in data.decode(errors="replace").splitlines():
            fields = line.split()
            if len(fields) == 5 and fields[0] == "ACCESS":
                out.append(AccessLogEntry(fields[1], fields[2], int(fields[3]), int(fields[4])))
        return out


# --- the site under gunicorn ----------------------------------------------------------------------------------


def site_environment(provider: EmbeddedProvider) -> dict[str, str]:
    env = {
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_SECURE_COOKIES": "false",  # plain http on loopback
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "OIDC_ISSUER": provider.issuer,
        "OIDC_CLIENT_ID": provider.client_id,
        "OIDC_CLIENT_SECRET": provider.client_secret,
        "OIDC_REVOCATION_ENDPOINT": f"{provider.base_url}/o/revoke_token/",
    }
    return env


@contextlib.contextmanager
def gunicorn_site(database_url: str, env: dict[str, str], workers: int = 4) -> Iterator[str]:
    """The site in `workers` sync worker processes; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def answers() -> None:
        requests.get(url + "/", timeout=5)  # any answer: the site is up

    with tempfile.TemporaryFile() as log:
        site_env = {**os.environ, **env, "DATABASE_URL": database_url}
        proc = launch_gunicorn("project.wsgi:application", port, site_env, log, "--backlog", "1024", workers=workers)
        try:
            failure = wait_until_ready(proc, answers, 60)
            if failure:
                stop_process_group(proc)
                log.seek(0)
                output = log.read()[-3000:].decode(errors="replace")
                raise RuntimeError(f"the site under gunicorn {failure}:\n{output}")
            yield url
        finally:
            stop_process_group(proc, timeout=20)


@contextlib.contextmanager
def uvicorn_site(database_url: str, env: dict[str, str], workers: int = 1) -> Iterator[str]:
    """The site under uvicorn (ASGI, `project.asgi:application`) in `workers` processes; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def answers() -> None:
        requests.get(url + "/", timeout=5)

    command = [sys.executable, "-m", "uvicorn", "project.asgi:application", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(workers), "--no-access-log"]
    with tempfile.TemporaryFile() as log:
        site_env = {**os.environ, **env, "DATABASE_URL": database_url}
        proc = subprocess.Popen(
            command, cwd=REPO_ROOT, env=site_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            failure = wait_until_ready(proc, answers, 60)
            if failure:
                stop_process_group(proc)
                log.seek(0)
                raise RuntimeError(f"the site under uvicorn {failure}:\n{log.read()[-3000:].decode(errors='replace')}")
            yield url
        finally:
            stop_process_group(proc, timeout=20)


# --- simulated browsers ---------------------------------------------------------------------------------------


def sign_in(site_url: str, username: str, password: str, provider_cookies: Browser | None = None) -> Browser:
    """A browser signed in to the site through the provider's real login and consent pages.

    With `provider_cookies`, the new browser starts with that browser's provider session (as a second tab or
    device would after the person signed in at the provider once), so only the consent page is shown.
    """
    browser = Browser()
    if provider_cookies is not None:
        for cookie in provider_cookies.cookies:
            if cookie.name.startswith("idp_"):
                browser.cookies.set_cookie(copy.copy(cookie))
    resp = browser.sign_in(site_url, username, password, "/account/")
    if resp.status_code != 200 or urlsplit(resp.url).path != "/account/":
        raise RuntimeError(f"sign-in of {username} failed: HTTP {resp.status_code} at {resp.url}")
    return browser


def sign_in_many(site_url: str, accounts: Sequence[str], sessions: int, parallel: int = 4) -> list[Browser]:
    """`sessions` signed-in browsers spread over `accounts` (each account types its password once)."""
    firsts = accounts[: min(len(accounts), sessions)]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        first = list(pool.map(lambda name: sign_in(site_url, name, ACCOUNT_PASSWORD), firsts))
        rest = list(
            pool.map(
                lambda i: sign_in(site_url, firsts[i % len(firsts)], ACCOUNT_PASSWORD, first[i % len(firsts)]),
                range(len(firsts), sessions),
            )
        )
    return first + rest


# --- figures --------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def ms(seconds: float) -> str:
    return "—" if seconds != seconds else f"{seconds * 1000:.1f} ms"
