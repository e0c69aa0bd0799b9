"""REDIS_URL: one discovery fetch and one JWKS fetch in all, shared by every worker of every server.

Two servers of the demo site under gunicorn (3 worker processes each), configured by the environment alone with
REDIS_URL on the machine's Redis, sign people in and refresh their tokens through every worker (each refresh
needs the discovery document for the token endpoint and the JWKS for the new ID token). The embedded provider's
own access log then shows one discovery request and one JWKS request from the site in all; with the default
in-process cache every worker would make both. Skipped only when no Redis answers on 127.0.0.1:6379 (CI has
one: .ci/run starts it when it is down).
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import requests
from django.db import connection

from bench import harness
from oauth_client.http import USER_AGENT
from tests.conftest import POSTGRES, repo_root
from tests.provider import EmbeddedProvider

# A database of its own on the local Redis, and a fresh key prefix per test inside it: nothing else's keys are
# read or deleted.
REDIS_URL = "redis://127.0.0.1:6379/13"
SERVERS = 2
WORKERS = 3
BROWSERS = SERVERS * WORKERS
MAX_ROUNDS = 25
SITE_ACCESS_LOG_FORMAT = "SITE %(p)s %(m)s %(U)s %(s)s"  # %(p)s: "<pid>" of the worker that answered
# gunicorn's default access log line: … "GET /path HTTP/1.1" 200 123 "referer" "user agent"
PROVIDER_ACCESS_RE = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) [^"]*" \d{3} \S+ "[^"]*" "(?P<ua>[^"]*)"')


def delete_prefixed(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
    if keys:
        client.delete(*keys)


@pytest.fixture
def redis_prefix() -> Iterator[tuple[redis.Redis, str]]:
    """(client on REDIS_URL's database, a key prefix of this test's own), emptied before and after."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=10)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        pytest.skip(f"no Redis answers at {REDIS_URL} ({exc}); .ci/run starts one in CI")
    prefix = f"oauthsite-test-{secrets.token_hex(6)}"
    delete_prefixed(client, prefix)
    try:
        yield client, prefix
    finally:
        delete_prefixed(client, prefix)
        client.close()


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=repo_root(),
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)}: {result.stdout}\n{result.stderr}"
    return result


def test_site_starts_with_redis_url(redis_prefix):
    client, prefix = redis_prefix
    env = {"REDIS_URL": REDIS_URL, "REDIS_KEY_PREFIX": prefix}
    manage("check", env=env)
    # `check` alone passes without the redis library (Django builds the cache client lazily): the first cache
    # call is what imports it and connects, so make one, in a process of its own, and find its key in Redis.
    probe = manage(
        "shell",
        "-c",
        "from django.core.cache import cache; cache.set('probe', 'ok', 60); print(cache.get('probe'))",
        env=env,
    )
    assert probe.stdout.splitlines()[-1] == "ok", probe.stdout
    assert client.get(f"{prefix}:1:probe") is not None


@pytest.fixture
def site_database_url(tmp_path: Path) -> str:
    """One database for both servers: PostgreSQL's test database (the test is marked transactional), or a
    migrated SQLite file (the in-memory SQLite test database cannot be shared with other processes)."""
    if POSTGRES:
        db = connection.settings_dict
        return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    url = f"sqlite:///{tmp_path / 'site.sqlite3'}"
    manage("migrate", "--noinput", "-v", "0", env={"DATABASE_URL": url})
    return url


@pytest.fixture
def own_provider(tmp_path: Path) -> Iterator[EmbeddedProvider]:
    """A provider of this test's own, so that its access log holds this test's requests only."""
    provider = EmbeddedProvider(
        tmp_path / "idp",
        redirect_uris=["http://127.0.0.1:9/oauth/callback/"],
        post_logout_redirect_uris=["http://127.0.0.1:9/"],
    )
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


def site_requests(provider: EmbeddedProvider) -> Counter[tuple[str, str]]:
    """(method, path) of every request the site (its User-Agent) made to the provider, from its access log."""
    counts: Counter[tuple[str, str]] = Counter()
    for line in provider.log_file.read_text(errors="replace").splitlines():
        m = PROVIDER_ACCESS_RE.search(line)
        if m and m["ua"] == USER_AGENT:
            counts[(m["method"], urlsplit(m["target"]).path)] += 1
    return counts


def workers_that_served(access_log: Path, path: str) -> set[int]:
    """Pids of the site's workers that answered `path` with 200 (SITE_ACCESS_LOG_FORMAT)."""
    if not access_log.exists():
        return set()
    pids = set()
    for line in access_log.read_text(errors="replace").splitlines():
        fields = line.split()
        if len(fields) == 5 and fields[0] == "SITE" and fields[3] == path and fields[4] == "200":
            pids.add(int(fields[1].strip("<>")))
    return pids


@pytest.mark.django_db(transaction=True)
def test_discovery_and_jwks_fetched_once_for_all_workers(redis_prefix, site_database_url, own_provider, tmp_path):
    client, prefix = redis_prefix
    provider = own_provider
    metadata = requests.get(provider.discovery_url, timeout=10).json()  # the test's own User-Agent: not counted
    discovery_path = urlsplit(provider.discovery_url).path
    jwks_path = urlsplit(metadata["jwks_uri"]).path
    token_path = urlsplit(metadata["token_endpoint"]).path
    env = {
        **harness.site_environment(provider),  # one secret key for both servers: one site
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": prefix,
    }
    logs = [tmp_path / f"site{i}-access.log" for i in range(SERVERS)]

    def server(i: int):  # type: ignore[no-untyped-def]
        access_log = f"--access-logfile {shlex.quote(str(logs[i]))} --access-logformat '{SITE_ACCESS_LOG_FORMAT}'"
        return harness.gunicorn_site(site_database_url, {**env, "GUNICORN_CMD_ARGS": access_log}, workers=WORKERS)

    with server(0) as url0, server(1) as url1:
        urls = [url0, url1]
        # The first sign-in fills the cache (discovery for /authorize, the JWKS for the ID token); every other
        # browser signs in on the servers in turn, reusing the provider session of the first.
        first = harness.sign_in(url0, provider.username, provider.password)
        browsers = [first] + [
            harness.sign_in(urls[i % SERVERS], provider.username, provider.password, provider_cookies=first)
            for i in range(1, BROWSERS)
        ]

        def sensitive(i: int, round_no: int) -> requests.Response:
            url = urls[(i + round_no) % SERVERS] + "/account/sensitive/"
            return browsers[i].get(url, allow_redirects=False, timeout=60)

        # All browsers at once, alternating servers, until every worker of both servers has answered a
        # sensitive request (a refresh: token endpoint from discovery, new ID token checked against the JWKS).
        served: list[set[int]] = []
        for round_no in range(MAX_ROUNDS):
            with ThreadPoolExecutor(max_workers=BROWSERS) as pool:
                responses = list(pool.map(lambda i: sensitive(i, round_no), range(BROWSERS)))
            assert [r.status_code for r in responses] == [200] * BROWSERS, [r.status_code for r in responses]
            served = [workers_that_served(log, "/account/sensitive/") for log in logs]
            if all(len(pids) >= WORKERS for pids in served):
                break
        assert all(len(pids) >= WORKERS for pids in served), f"not every worker was reached: {served}"

    fetched = site_requests(provider)
    # Not vacuous: every code exchange and refresh reached the provider (one per sign-in, one per sensitive page).
    assert fetched[("POST", token_path)] >= BROWSERS + SERVERS * WORKERS, fetched
    assert fetched[("GET", discovery_path)] == 1, fetched
    assert fetched[("GET", jwks_path)] == 1, fetched
    # Where they were shared: this test's prefix in REDIS_URL's database.
    for kind in ("metadata", "jwks"):
        assert len(list(client.scan_iter(match=f"{prefix}:1:oauth_client:{kind}:*"))) == 1, kind
