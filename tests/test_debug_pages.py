"""Safe by default: DEBUG is off unless asked for, and even with DEBUG on, Django's technical error page shows no
token and no client secret (every function that holds one is marked with `sensitive_variables`).

Faults are injected at the database edge with Django's public `connection.execute_wrapper`, in-process, against
the real embedded provider."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.db import DatabaseError, connection
from django.test import Client

from tests.browser import Browser
from tests.conftest import repo_root
from tests.helpers import active_record, client_for

pytestmark = pytest.mark.django_db(transaction=True)


def slices(secret: str, size: int = 16) -> set[str]:
    return {secret[i : i + size] for i in range(0, max(1, len(secret) - size + 1))}


def assert_no_secret(page: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret and len(secret) >= 16
        leaked = [s for s in slices(secret) if s in page]
        if leaked and os.environ.get("DEBUG_PAGE_DUMP"):
            at = page.index(leaked[0])
            print("LEAK CONTEXT:", page[max(0, at - 1200) : at].replace("\n", " "))
        assert not leaked, f"a secret shows on the debug page: …{leaked[0][:6]}…"


def failing_write(table: str, statement: str):  # type: ignore[no-untyped-def]
    def wrapper(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if sql.lstrip().upper().startswith(statement) and table in sql:
            raise DatabaseError("simulated database failure")
        return execute(sql, params, many, context)

    return wrapper


def test_debug_page_of_a_failed_sign_out_shows_no_token(site, settings):
    browser = site.signed_in_browser()
    record = active_record()
    secrets = [record.access_token, record.id_token, record.refresh_token, site.client_secret]
    client = client_for(browser)
    client.raise_request_exception = False
    settings.DEBUG = True
    with connection.execute_wrapper(failing_write("oauth_client_oauthsession", "UPDATE")):
        resp = client.post("/oauth/logout/")
    page = resp.content.decode()
    assert resp.status_code == 500 and "simulated database failure" in page  # the technical page, with locals
    assert "sensitive_variables" in page or "********" in page
    assert_no_secret(page, secrets)


def test_debug_page_of_a_failed_sign_in_shows_no_token(site, settings):
    """The callback exchanged the code and validated the tokens, then storing them failed."""
    browser = Browser()
    resp = browser.get(f"{site.url}/oauth/login/")
    form = browser.find_form(resp, with_field="password")
    resp = browser.submit(resp, form, {"username": site.provider.username, "password": site.provider.password})
    if "allow" in {n for f in __import__("tests.browser", fromlist=["forms"]).forms(resp.text) for n in f.buttons}:
        resp = browser.submit(resp, browser.find_form(resp, with_field="allow"), button="allow", allow_redirects=False)
    # Follow the provider's redirects by hand until the browser is sent to our callback.
    while resp.is_redirect and not resp.headers["Location"].startswith(site.url + "/oauth/callback/"):
        resp = browser.get(resp.headers["Location"], allow_redirects=False)
    callback = resp.headers["Location"]
    assert callback.startswith(site.url + "/oauth/callback/")

    client = Client(raise_request_exception=False)
    client.cookies["sessionid"] = browser.cookies.get("sessionid")
    settings.DEBUG = True
    with connection.execute_wrapper(failing_write("oauth_client_oauthsession", "INSERT")):
        resp = client.get(callback[len(site.url) :])
    page = resp.content.decode()
    assert resp.status_code == 500 and "simulated database failure" in page
    issued = [row["token"] for row in site.provider.refresh_token_rows()[-1:]]
    issued += [row["token"] for row in site.provider.access_token_rows()[-1:]]
    assert_no_secret(page, [*issued, site.client_secret])


def test_debug_is_off_unless_asked_for():
    """A deployment that sets everything but DJANGO_DEBUG gets production behaviour."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OIDC_"))}
    env.update({"DJANGO_SETTINGS_MODULE": "project.settings", "DJANGO_SECRET_KEY": "s" * 50})
    code = "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo_root(), env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"
