"""Secrets never leak: a full sign-in → refresh → sensitive refresh → logout against the real embedded provider,
with DEBUG logging on every logger and SQL logging on, and then a search for every access token, refresh
token, ID token, the client secret and the authorization code in everything the site produced: log records,
response bodies and headers, cookies, the URLs the browser visited, and every table of the site's database.

Two places hold a secret by design, and the test pins them down exactly instead of skipping them:
- The authorization code is in the one URL the provider redirects the browser to (/oauth/callback/?code=…),
  as OAuth 2.0 defines it (RFC 6749 §4.1.2). It is single-use, bound to our PKCE verifier and useless without
  the client secret; the site answers that URL with a redirect, so the code leaves the address bar at once.
- The sign-out page carries the ID token as `id_token_hint` in a hidden field of a form that POSTs to the
  provider's end_session_endpoint (RP-Initiated Logout 1.0 §2): the provider is its issuer and intended
  recipient, POST keeps it out of URLs, history and access logs, the page is not cacheable, and by then the
  session's refresh token is revoked and its record wiped. Anywhere else in any page, it would be a leak.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Iterator
from importlib import import_module
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.conf import settings as django_settings
from django.db import connection

from oauth_client import discovery, providers, signals
from oauth_client.models import OAuthSession
from tests.browser import Browser, forms
from tests.helpers import active_record, expire_tokens

pytestmark = pytest.mark.django_db(transaction=True)

# The attributes every LogRecord has; anything else was passed as `extra=` and is searched too.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_WATCHED = ("", "oauth_client", "django", "urllib3", "requests", "py.warnings")


class Capture(logging.Handler):
    """Every record at every level, rendered with its arguments, exception, stack and extras."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_records:
            self.records.append(record)

    @staticmethod
    def render(record: logging.LogRecord) -> str:
        try:
            parts = [record.getMessage()]
        except Exception:  # a bad format string must not hide the raw arguments
            parts = [str(record.msg), repr(record.args)]
        if record.exc_info:
            parts.append("".join(traceback.format_exception(*record.exc_info)))
        if record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(record.stack_info)
        parts += [f"{k}={v!r}" for k, v in vars(record).items() if k not in _STANDARD]
        return "\n".join(parts)


@pytest.fixture
def debug_logs(settings) -> Iterator[Capture]:  # type: ignore[no-untyped-def]
    # django.db.backends logs every SQL statement with its parameters only when DEBUG is on.
    settings.DEBUG = True
    capture = Capture()
    names = set(_WATCHED) | {
        n for n in logging.Logger.manager.loggerDict if n.split(".")[0] in ("oauth_client", "django", "urllib3")
    }
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (logger.level, logger.propagate, logger.disabled)
        logger.setLevel(logging.DEBUG)
        logger.propagate = True  # e.g. django.server does not propagate by default
        logger.disabled = False
    logging.getLogger().addHandler(capture)
    try:
        yield capture
    finally:
        logging.getLogger().removeHandler(capture)
        for name, (level, propagate, disabled) in saved.items():
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.propagate = propagate
            logger.disabled = disabled


def dump_site_database() -> str:
    """Every row of every table of the site's database, as text; session data decoded too."""
    session_store = import_module(django_settings.SESSION_ENGINE).SessionStore()
    lines = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - table names from introspection
            columns = [c[0] for c in cursor.description]
            for row in cursor.fetchall():
                values = dict(zip(columns, row, strict=True))
                lines.append(f"{table}: {values!r}")
                if table == "django_session":
                    lines.append(f"{table} decoded: {session_store.decode(values['session_data'])!r}")
    return "\n".join(lines)


WINDOW = 16


def secret_forms(token: str) -> list[str]:
    """What to search for: the whole token, and every 16-character slice of its secret part (the signature
    of a JWT, all of an opaque token), so a truncated or partly masked token in a log line is found too."""
    secret = token.rsplit(".", 1)[1] if token.count(".") == 2 else token
    return [token] + [secret[i : i + WINDOW] for i in range(len(secret) - WINDOW + 1)]


def test_no_secret_in_logs_pages_cookies_urls_or_database(site, debug_logs):
    provider = site.provider
    seen_refresh_rows = {row["id"] for row in provider.refresh_token_rows()}
    browser = Browser()
    responses: list[requests.Response] = []
    browser.hooks["response"].append(lambda r, *args, **kwargs: responses.append(r))

    # Every token the site ever held, straight from the public signals (not from the code under test).
    tokens: dict[str, set[str]] = {"access": set(), "refresh": set(), "id": set()}

    def collect(sender, record, **kwargs):
        tokens["access"].add(record.access_token)
        tokens["refresh"].add(record.refresh_token)
        tokens["id"].add(record.id_token)

    signals.oauth_login.connect(collect)
    signals.tokens_refreshed.connect(collect)
    try:
        # Sign in.
        resp = browser.sign_in(site.url, provider.username, provider.password, "/account/")
        assert resp.status_code == 200 and resp.url == site.url + "/account/"
        # A refresh in the middleware, on expiry.
        expire_tokens()
        assert browser.get(site.url + "/account/").status_code == 200
        # A sensitive action: refresh on GET, on POST, and on the redirected GET.
        page = browser.get(site.url + "/account/sensitive/")
        assert page.status_code == 200
        done = browser.submit(page, browser.find_form(page, with_field="display_name"), {"display_name": "Leak Test"})
        assert done.status_code == 200 and "Leak Test" in done.text
        assert active_record().refresh_count == 4
        database_while_signed_in = dump_site_database()
        # Sign out: revoke, end the record, then RP-initiated logout at the provider.
        profile = browser.get(site.url + "/account/")
        end_session_page = browser.submit(profile, browser.find_form(profile, action="/oauth/logout/"))
        final = browser.submit(end_session_page, browser.find_form(end_session_page, with_field="id_token_hint"))
        assert final.url == site.url + "/" and 'href="/oauth/login/"' in final.text
    finally:
        signals.oauth_login.disconnect(collect)
        signals.tokens_refreshed.disconnect(collect)
    database_after_logout = dump_site_database()
    assert OAuthSession.objects.get().ended_reason == OAuthSession.EndReason.LOGOUT

    # -- what there is to look for ------------------------------------------------------------------------
    assert len(tokens["access"]) == 5 and len(tokens["refresh"]) == 5 and len(tokens["id"]) == 5
    # The provider's own table adds every refresh token it issued in this test, rotated-out ones included.
    tokens["refresh"] |= {row["token"] for row in provider.refresh_token_rows() if row["id"] not in seen_refresh_rows}
    callback_urls = [r.headers["Location"] for r in responses if "/oauth/callback/?" in r.headers.get("Location", "")]
    assert len(callback_urls) == 1
    code = parse_qs(urlsplit(callback_urls[0]).query)["code"][0]
    secrets_by_kind = {
        "access token": tokens["access"],
        "refresh token": tokens["refresh"],
        "ID token": tokens["id"],
        "client secret": {provider.client_secret},
        "authorization code": {code},
    }
    assert all(len(v) >= 30 for values in secrets_by_kind.values() for v in values)
    needles = [
        (kind, secret, form)
        for kind, values in secrets_by_kind.items()
        for secret in values
        for form in secret_forms(secret)
    ]

    def leaks(text: str, *, allow: str = "") -> list[str]:
        return sorted({kind for kind, secret, form in needles if form in text and secret != allow})

    # -- log records (the site's: the test's own browser logs its URLs from the main thread) ----------------
    main = threading.main_thread().ident
    records = [r for r in debug_logs.records if r.thread != main]
    rendered = [(r.name, r.levelname, Capture.render(r)) for r in records]
    # The capture saw the site at work, at DEBUG, on every path that matters.
    names = {name for name, _, _ in rendered}
    assert {"oauth_client.store", "urllib3.connectionpool", "django.db.backends"} <= names, names
    assert any("/o/token/" in text for name, _, text in rendered if name.startswith("urllib3"))
    assert any("oauth_client_oauthsession" in text for name, _, text in rendered if name == "django.db.backends")
    for name, level, text in rendered:
        assert not leaks(text), f"{leaks(text)} in a {level} record of {name}: {text[:300]}"

    # -- response bodies and headers ------------------------------------------------------------------------
    end_session_endpoint = discovery.get_metadata(providers.get())["end_session_endpoint"]
    hinted = 0
    for r in responses:
        body = r.text
        hint_forms = [f for f in forms(body) if "id_token_hint" in f.fields]
        if hint_forms:
            # The one place an ID token may be: the hint posted to the provider's end_session_endpoint.
            (form,) = hint_forms
            assert r.url == site.url + "/oauth/logout/" and r.request.method == "POST"
            assert form.method == "post" and form.action == end_session_endpoint
            assert form.fields["id_token_hint"] in tokens["id"]
            assert "no-store" in r.headers["Cache-Control"]
            assert body.count(form.fields["id_token_hint"]) == 1
            body = body.replace(form.fields["id_token_hint"], "")
            hinted += 1
        assert not leaks(body), f"{leaks(body)} in the body of {r.request.method} {r.url}"
        location = r.headers.get("Location", "")
        assert not leaks(location, allow=code if location in callback_urls else ""), location
        for header in ("Set-Cookie", "Refresh", "Link"):
            assert not leaks(r.headers.get(header, "")), header
    assert hinted == 1

    # -- cookies ------------------------------------------------------------------------------------------
    for cookie in browser.cookies:
        assert not leaks(f"{cookie.name}={cookie.value}"), cookie.name

    # -- URLs the browser visited -------------------------------------------------------------------------
    visited = [r.request.url for r in responses] + [r.url for r in responses]
    code_urls = {url for url in visited if code in url}
    assert code_urls and all(urlsplit(url).path == "/oauth/callback/" for url in code_urls)
    for url in visited:
        assert not leaks(url, allow=code if url in code_urls else ""), url

    # -- the database, in plaintext -----------------------------------------------------------------------
    # The token columns held Fernet ciphertext, and the session row was there to search.
    assert "gAAAA" in database_while_signed_in and "django_session decoded" in database_while_signed_in
    for dump in (database_while_signed_in, database_after_logout):
        assert "oauth_client_oauthsession" in dump
        assert not leaks(dump), leaks(dump)
