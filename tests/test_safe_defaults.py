"""Safe by default (issue 12, items 9-11): plain-http provider endpoints refused, SQLite without IMMEDIATE
transactions refused, `ended_by` the username, and `dumpdata` of the token table writes ciphertext."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection

from oauth_client import checks, discovery, providers
from oauth_client.exceptions import ConfigurationError
from oauth_client.models import OAuthSession
from tests.browser import Browser
from tests.helpers import active_record
from tests.stub_server import Answer, StubServer


def stub_provider(stub: StubServer, **endpoints: str) -> str:
    issuer = stub.url
    metadata = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/jwks",
        "userinfo_endpoint": f"{issuer}/userinfo",
        **endpoints,
    }
    stub.routes["/.well-known/openid-configuration"] = Answer(200, metadata)
    stub.routes["/jwks"] = Answer(200, {"keys": []})
    return issuer


def configure(settings, issuer: str) -> None:  # type: ignore[no-untyped-def]
    settings.OAUTH_CLIENT = {"ISSUER": issuer, "CLIENT_ID": "site", "CLIENT_SECRET": "s" * 32}
    cache.clear()


# -- 9. provider endpoints over plain http ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint", ["token_endpoint", "userinfo_endpoint", "jwks_uri", "revocation_endpoint", "end_session_endpoint"]
)
def test_plain_http_endpoint_from_discovery_is_refused(settings, endpoint):
    """A loopback issuer (allowed) whose discovery points an endpoint at plain http on another host."""
    with StubServer() as stub:
        configure(settings, stub_provider(stub, **{endpoint: f"http://idp.example.com/{endpoint}"}))
        with pytest.raises(ConfigurationError, match=endpoint):
            discovery.get_metadata(providers.get())
        settings.DEBUG = True  # development against a provider on another machine: allowed
        cache.clear()
        assert discovery.get_metadata(providers.get())[endpoint] == f"http://idp.example.com/{endpoint}"


def test_https_and_loopback_endpoints_are_accepted(settings):
    with StubServer() as stub:
        configure(settings, stub_provider(stub, revocation_endpoint="https://idp.example.com/revoke"))
        assert discovery.get_metadata(providers.get())["token_endpoint"].startswith("http://127.0.0.1:")


@pytest.mark.django_db(transaction=True)
def test_sign_in_with_a_plain_http_token_endpoint_is_503_and_sends_nothing(live_server, settings):
    with StubServer() as stub:
        configure(settings, stub_provider(stub, token_endpoint="http://idp.example.com/token"))
        resp = Browser().get(live_server.url + "/oauth/login/", allow_redirects=False)
        assert resp.status_code == 503
        assert [s.path for s in stub.seen] == ["/.well-known/openid-configuration"]


def test_system_check_reports_cached_plain_http_endpoints(settings):
    with StubServer() as stub:
        issuer = stub_provider(stub, userinfo_endpoint="http://idp.example.com/userinfo")
        configure(settings, issuer)
        settings.DEBUG = True
        discovery.get_metadata(providers.get())  # cached, as a running site would have it
        assert "oauth_client.E013" not in {m.id for m in checks.check_https(None)}
        settings.DEBUG = False
        messages = [m for m in checks.check_https(None) if m.id == "oauth_client.E013"]
        assert len(messages) == 1 and "userinfo_endpoint" in messages[0].msg


# -- 10. SQLite without IMMEDIATE transactions ----------------------------------------------------------------


def test_sqlite_without_immediate_transactions_is_an_error(monkeypatch, settings):
    if connection.vendor != "sqlite":
        assert checks.check_sqlite_transaction_mode(None) == []
        return
    assert checks.check_sqlite_transaction_mode(None) == []  # the site's own configuration (project/dburl.py)
    options = dict(settings.DATABASES["default"].get("OPTIONS", {}))
    options.pop("transaction_mode", None)
    monkeypatch.setitem(settings.DATABASES["default"], "OPTIONS", options)
    assert [m.id for m in checks.check_sqlite_transaction_mode(None)] == ["oauth_client.E014"]
    monkeypatch.setitem(settings.DATABASES["default"], "OPTIONS", {**options, "transaction_mode": "DEFERRED"})
    assert [m.id for m in checks.check_sqlite_transaction_mode(None)] == ["oauth_client.E014"]


# -- 11. small ones -----------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_ended_by_is_the_username_not_the_display_name(site, settings):
    browser = site.signed_in_browser()
    record = active_record()
    user = record.user
    user.first_name, user.last_name = "Display", "Name"
    user.save()
    form = browser.find_form(browser.get(site.url + "/account/"), action="/oauth/logout/")
    browser.submit(browser.get(site.url + "/account/"), form)
    ended = OAuthSession.objects.get(pk=record.pk)
    assert ended.ended_reason == OAuthSession.EndReason.LOGOUT
    assert ended.ended_by == user.get_username()


@pytest.mark.django_db(transaction=True)
def test_dumpdata_writes_ciphertext_and_loaddata_reads_it_back(site, tmp_path):
    site.signed_in_browser()
    record = active_record()
    tokens = {"access_token": record.access_token, "id_token": record.id_token, "refresh_token": record.refresh_token}
    out = StringIO()
    call_command("dumpdata", "oauth_client.oauthsession", stdout=out)
    dump = out.getvalue()
    for token in tokens.values():
        assert token[:16] not in dump and token[-16:] not in dump
    fields = json.loads(dump)[0]["fields"]
    assert all(fields[name].startswith("gAAAAA") for name in tokens)

    fixture = tmp_path / "sessions.json"
    fixture.write_text(dump)
    OAuthSession.objects.filter(pk=record.pk).update(access_token="", id_token="", refresh_token="")
    call_command("loaddata", str(fixture), verbosity=0)
    restored = OAuthSession.objects.get(pk=record.pk)
    assert {name: getattr(restored, name) for name in tokens} == tokens


@pytest.mark.django_db(databases=["default", "other"])  # a plain check reads every database's features
def test_sqlite_check_runs_with_plain_manage_py_check(monkeypatch, settings):
    """Not a database-tagged check: `manage.py check` and runserver report it, not only `check --database`."""
    from django.core.checks import run_checks

    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    options = {k: v for k, v in settings.DATABASES["default"].get("OPTIONS", {}).items() if k != "transaction_mode"}
    monkeypatch.setitem(settings.DATABASES["default"], "OPTIONS", options)
    assert "oauth_client.E014" in {m.id for m in run_checks()}


def test_empty_secret_key_is_a_check_error(settings):
    assert checks.check_secret_key(None) == []
    settings.SECRET_KEY = ""
    assert [m.id for m in checks.check_secret_key(None)] == ["oauth_client.E015"]


@pytest.mark.django_db(transaction=True)
def test_loaddata_of_a_dump_made_under_other_keys_fails_loudly(site, settings, tmp_path):
    site.signed_in_browser()
    out = StringIO()
    call_command("dumpdata", "oauth_client.oauthsession", stdout=out)
    fixture = tmp_path / "sessions.json"
    fixture.write_text(out.getvalue())
    settings.SECRET_KEY = "another-" + "k" * 50
    with pytest.raises(Exception, match="none of the current keys"):
        call_command("loaddata", str(fixture), verbosity=0)


@pytest.mark.django_db(transaction=True)
def test_any_django_logout_ends_the_record_and_revokes(site, settings):
    """A project's own `auth.logout()` (or the admin's sign-out) ends this browser's token record at once."""
    from importlib import import_module

    from django.contrib.auth import logout
    from django.test import RequestFactory

    browser = site.signed_in_browser()
    record = active_record()
    request = RequestFactory().get("/")
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(browser.cookies["sessionid"])
    request.user = record.user
    logout(request)
    ended = OAuthSession.objects.get(pk=record.pk)
    assert ended.ended_reason == OAuthSession.EndReason.LOGOUT and ended.ended_by == record.user.get_username()
    assert site.provider.is_refresh_token_revoked(record.refresh_token)
