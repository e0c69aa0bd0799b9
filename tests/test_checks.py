"""System checks (`manage.py check --tag oauth_client`): each misconfiguration gets its id, level and hint."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.core.checks import ERROR, WARNING, run_checks

from oauth_client.middleware import OAuthSessionMiddleware
from tests.conftest import repo_root

OAUTH = "oauth_client.middleware.OAuthSessionMiddleware"
SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
MESSAGES = "django.contrib.messages.middleware.MessageMiddleware"

GOOD = {
    "ISSUER": "https://idp.example.com/",
    "CLIENT_ID": "site",
    "CLIENT_SECRET": "a-long-client-secret",
    "ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
}


def found(deploy: bool = False) -> dict[str, int]:
    return {m.id: m.level for m in run_checks(tags=["oauth_client"], include_deployment_checks=deploy)}


@pytest.fixture
def production(settings):
    """A correct production configuration: no oauth_client messages at all."""
    settings.DEBUG = False
    settings.SESSION_COOKIE_SECURE = True
    settings.SESSION_COOKIE_HTTPONLY = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.OAUTH_CLIENT = dict(GOOD)
    return settings


def test_correct_production_configuration_is_clean(production):
    assert found() == {} and found(deploy=True) == {}


def test_the_sites_own_settings_pass_in_development(settings):
    settings.DEBUG = True
    settings.OAUTH_CLIENT = {**GOOD, "ISSUER": "http://127.0.0.1:8001/o", "ENCRYPTION_KEYS": []}
    assert found() == {}


def test_signed_cookie_sessions_are_an_error(production):
    production.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    assert found() == {"oauth_client.E001": ERROR}


@pytest.mark.parametrize("name,check_id", [("ISSUER", "W001"), ("CLIENT_ID", "W002"), ("CLIENT_SECRET", "W003")])
def test_missing_client_settings_warn_and_fail_deploy(production, name, check_id):
    production.OAUTH_CLIENT = {**GOOD, name: ""}
    # A warning, so `migrate` still runs before the client exists (`make run` order)…
    assert found() == {f"oauth_client.{check_id}": WARNING}
    # …but `check --deploy` refuses to ship it.
    assert found(deploy=True)["oauth_client.E020"] == ERROR


def test_offline_access_missing_warns_unless_the_google_recipe(production):
    production.OAUTH_CLIENT = {**GOOD, "SCOPES": ["openid", "email"]}
    assert found() == {"oauth_client.W004": WARNING}
    production.OAUTH_CLIENT = {
        **GOOD,
        "SCOPES": ["openid", "email"],
        "EXTRA_AUTH_PARAMS": {"access_type": "offline", "prompt": "consent"},
    }
    assert found() == {}


def test_http_issuer_in_production_is_an_error(production):
    production.OAUTH_CLIENT = {**GOOD, "ISSUER": "http://idp.example.com"}
    assert found() == {"oauth_client.E002": ERROR}
    # Loopback traffic never leaves the machine (RFC 8252).
    for loopback in ("http://127.0.0.1:8001/o", "http://localhost/o", "http://[::1]:9000/o"):
        production.OAUTH_CLIENT = {**GOOD, "ISSUER": loopback}
        assert found() == {}, loopback
    production.DEBUG = True
    production.OAUTH_CLIENT = {**GOOD, "ISSUER": "http://idp.example.com"}
    assert "oauth_client.E002" not in found()


@pytest.mark.parametrize("name", ["REDIRECT_URI", "POST_LOGOUT_REDIRECT_URI", "REVOCATION_ENDPOINT"])
def test_http_redirects_in_production_are_errors(production, name):
    production.OAUTH_CLIENT = {**GOOD, name: "http://site.example.com/oauth/callback/"}
    assert found() == {"oauth_client.E003": ERROR}


def test_redirect_uri_built_from_requests_needs_the_proxy_header_in_deploy(production):
    production.SECURE_PROXY_SSL_HEADER = None
    assert found() == {}
    assert found(deploy=True) == {"oauth_client.W005": WARNING}
    production.OAUTH_CLIENT = {**GOOD, "REDIRECT_URI": "https://site.example.com/oauth/callback/"}
    assert found(deploy=True) == {}


@pytest.mark.parametrize(
    "middleware,expected",
    [
        ([SESSION, AUTH, MESSAGES], {"oauth_client.E005": ERROR}),
        ([AUTH, MESSAGES, OAUTH], {"oauth_client.E004": ERROR}),
        ([SESSION, OAUTH, AUTH, MESSAGES], {"oauth_client.E006": ERROR, "oauth_client.E007": ERROR}),
        ([SESSION, MESSAGES, OAUTH, AUTH], {"oauth_client.E006": ERROR}),
        ([SESSION, AUTH, OAUTH, MESSAGES], {"oauth_client.E007": ERROR}),
        ([SESSION, AUTH, OAUTH], {"oauth_client.W009": WARNING}),
        # Subclasses count, as in Django's own admin check.
        ([SESSION, "tests.test_checks.MyAuthMiddleware", MESSAGES, "tests.test_checks.MyOAuthMiddleware"], {}),
    ],
)
def test_middleware_presence_and_order(production, middleware, expected):
    production.MIDDLEWARE = middleware
    assert found() == expected


def test_missing_authentication_backend_is_an_error(production):
    production.AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
    assert found() == {"oauth_client.E012": ERROR}


def test_production_warnings(production):
    production.OAUTH_CLIENT = {**GOOD, "ENCRYPTION_KEYS": []}
    production.SESSION_COOKIE_SECURE = False
    production.SESSION_COOKIE_HTTPONLY = False
    assert found() == {
        "oauth_client.W006": WARNING,
        "oauth_client.W007": WARNING,
        "oauth_client.W008": WARNING,
    }
    production.DEBUG = True
    assert found() == {}


def test_invalid_values(production):
    production.OAUTH_CLIENT = {
        **GOOD,
        "TOKEN_AUTH_METHOD": "tls_client_auth",
        "END_SESSION_METHOD": "PUT",
        "ENCRYPTION_KEYS": ["not-a-key"],
        "USER_MAPPER": "myproject.nowhere.mapper",
        "SCOPE": "openid",  # typo of SCOPES
    }
    assert found() == {
        "oauth_client.E008": ERROR,
        "oauth_client.E009": ERROR,
        "oauth_client.E010": ERROR,
        "oauth_client.E011": ERROR,
        "oauth_client.W010": WARNING,
    }


def manage_py_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`manage.py check --tag oauth_client` in a fresh process, on SQLite, with the demo site's environment `env`."""
    env = {key: value for key, value in env.items() if key != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--tag", "oauth_client"],
        cwd=repo_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_manage_py_check_reports_and_fails(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "x" * 50,
        "OIDC_ISSUER": "http://idp.example.com",
        "OIDC_CLIENT_ID": "site",
        "OIDC_CLIENT_SECRET": "secret",
    }
    result = manage_py_check(env)
    assert result.returncode != 0
    assert "oauth_client.E002" in result.stderr and "is not an https URL" in result.stderr


# --- several providers (OAUTH_CLIENT["PROVIDERS"]) ---------------------------------------------------------------

CORP = {"ISSUER": "https://corp.example.com/", "CLIENT_ID": "site", "CLIENT_SECRET": "a-long-corp-secret"}
PARTNER = {"ISSUER": "https://partner.example.com/", "CLIENT_ID": "site", "CLIENT_SECRET": "a-long-partner-secret"}


def several(**entries: dict) -> dict:
    return {"ENCRYPTION_KEYS": GOOD["ENCRYPTION_KEYS"], "PROVIDERS": entries}


def messages(deploy: bool = False) -> list:
    return list(run_checks(tags=["oauth_client"], include_deployment_checks=deploy))


def test_several_correct_providers_are_clean(production):
    production.OAUTH_CLIENT = {**several(corp=CORP, partner={**PARTNER, "LABEL": "Partners"}), "CLOCK_LEEWAY": 30}
    assert found() == {} and found(deploy=True) == {}


@pytest.mark.parametrize("name,check_id", [("ISSUER", "W001"), ("CLIENT_ID", "W002"), ("CLIENT_SECRET", "W003")])
def test_a_setting_missing_at_one_provider_names_that_provider(production, name, check_id):
    production.OAUTH_CLIENT = several(corp=CORP, partner={k: v for k, v in PARTNER.items() if k != name})
    [warning] = messages()
    assert warning.id == f"oauth_client.{check_id}" and warning.level == WARNING
    assert f"OAUTH_CLIENT['PROVIDERS']['partner']['{name}'] is not set" in warning.msg
    assert "corp" not in warning.msg and f"OIDC_PARTNER_{name}" in warning.hint
    # `manage.py check` prints the provider in front: "partner: (oauth_client.W00n) …".
    assert str(warning).startswith("partner: ")
    [error] = messages(deploy=True)[1:]
    assert error.id == "oauth_client.E020" and "['partner'] is missing " + name in error.msg


def test_each_per_provider_check_runs_for_every_provider(production):
    production.OAUTH_CLIENT = several(
        corp={**CORP, "ISSUER": "http://corp.example.com", "SCOPES": ["openid"], "END_SESSION_METHOD": "PUT"},
        partner={
            **PARTNER,
            "TOKEN_AUTH_METHOD": "tls_client_auth",
            "REDIRECT_URI": "http://site.example.com/oauth/callback/partner/",
            "SCOPES": ["openid"],
        },
    )
    by_id: dict[str, list[str]] = {}
    for message in messages():
        by_id.setdefault(message.id, []).append(message.msg)
    assert sorted(by_id) == [
        "oauth_client.E002",
        "oauth_client.E003",
        "oauth_client.E008",
        "oauth_client.E009",
        "oauth_client.W004",
    ]
    assert by_id["oauth_client.E002"] == [
        "The issuer 'http://corp.example.com' of provider 'corp' is not an https URL."
    ]
    assert by_id["oauth_client.E003"] == [
        "OAUTH_CLIENT['PROVIDERS']['partner']['REDIRECT_URI'] 'http://site.example.com/oauth/callback/partner/' "
        "is not an https URL."
    ]
    assert "['partner']['TOKEN_AUTH_METHOD']" in by_id["oauth_client.E008"][0]
    assert "['corp']['END_SESSION_METHOD']" in by_id["oauth_client.E009"][0]
    # Both providers lack offline_access: one warning each.
    assert [("corp" in m, "partner" in m) for m in by_id["oauth_client.W004"]] == [(True, False), (False, True)]


def test_the_redirect_uri_check_runs_per_provider(production):
    production.SECURE_PROXY_SSL_HEADER = None
    production.OAUTH_CLIENT = several(
        corp={**CORP, "REDIRECT_URI": "https://site.example.com/oauth/callback/corp/"}, partner=PARTNER
    )
    [warning] = messages(deploy=True)
    assert warning.id == "oauth_client.W005" and "of provider 'partner'" in warning.msg
    assert "OAUTH_CLIENT['PROVIDERS']['partner']['REDIRECT_URI']" in warning.hint


def test_plain_http_endpoints_in_one_providers_cached_discovery(production):
    from django.core.cache import cache

    from oauth_client import discovery, providers

    production.OAUTH_CLIENT = several(corp=CORP, partner=PARTNER)
    partner = providers.get("partner")
    metadata = {"issuer": PARTNER["ISSUER"], "token_endpoint": "http://partner.example.com/token"}
    cache.set(discovery._cache_key("metadata", partner), metadata, 60)
    try:
        [error] = messages()
    finally:
        discovery.clear_cache()
        cache.clear()
    assert error.id == "oauth_client.E013" and error.obj == partner
    assert "token_endpoint 'http://partner.example.com/token' of provider 'partner'" in error.msg


@pytest.mark.parametrize(
    "entries,expected",
    [
        ({"Corp": CORP}, "provider name 'Corp'"),
        ({"corp partner": CORP}, "provider name 'corp partner'"),
        ({"corp": {**CORP, "CLIENTID": "x"}}, "unknown key(s): CLIENTID"),
        ({"corp": {**CORP, "CLOCK_LEEWAY": 10}}, "CLOCK_LEEWAY is shared by every provider"),
        ({"corp": "https://corp.example.com/"}, "must be a dict of settings"),
    ],
)
def test_an_invalid_providers_setting_is_a_check_error_not_a_crash(production, entries, expected):
    production.OAUTH_CLIENT = several(**entries, partner=PARTNER) if "partner" not in entries else several(**entries)
    result = messages()
    assert [m.id for m in result] == ["oauth_client.E016"], result
    assert expected in result[0].msg and result[0].level == ERROR
    # The valid entries are still checked.
    production.OAUTH_CLIENT["PROVIDERS"]["partner"] = {**PARTNER, "CLIENT_SECRET": ""}
    production.OAUTH_CLIENT = dict(production.OAUTH_CLIENT)
    assert found() == {"oauth_client.E016": ERROR, "oauth_client.W003": WARNING}


def test_two_providers_with_one_redirect_uri_is_an_error(production):
    uri = "https://site.example.com/oauth/callback/"
    production.OAUTH_CLIENT = several(corp={**CORP, "REDIRECT_URI": uri}, partner={**PARTNER, "REDIRECT_URI": uri})
    found = messages()
    [error] = [m for m in found if m.id == "oauth_client.E017"]
    assert "'corp', 'partner'" in error.msg
    # And it is neither one's own callback (/oauth/callback/ serves only a provider named "default").
    assert {m.id for m in found} == {"oauth_client.E017", "oauth_client.W018"}


def test_top_level_provider_keys_are_ignored_with_providers(production):
    production.OAUTH_CLIENT = {**GOOD, "SCOPES": ["openid"], "PROVIDERS": {"corp": CORP}}
    [warning] = messages()
    assert warning.id == "oauth_client.W017" and "ISSUER, CLIENT_ID, CLIENT_SECRET, SCOPES" in warning.msg


def test_providers_and_label_are_known_top_level_keys(production):
    production.OAUTH_CLIENT = {**GOOD, "LABEL": "Example"}
    assert found() == {}
    production.OAUTH_CLIENT = several(corp=CORP)
    assert found() == {}
    production.OAUTH_CLIENT = {**several(corp=CORP), "PROVIDER": {}}
    assert found() == {"oauth_client.W010": WARNING}


def test_manage_py_check_names_the_provider(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "x" * 50,
        "OIDC_PROVIDERS": "corp partner",
        "OIDC_CORP_ISSUER": "https://corp.example.com",
        "OIDC_CORP_CLIENT_ID": "site",
        "OIDC_CORP_CLIENT_SECRET": "secret",
        "OIDC_PARTNER_ISSUER": "http://partner.example.com",
        "OIDC_PARTNER_CLIENT_ID": "site",
    }
    result = manage_py_check(env)
    assert result.returncode != 0
    assert "partner: (oauth_client.E002) The issuer 'http://partner.example.com' of provider 'partner'" in (
        result.stderr
    )
    assert "partner: (oauth_client.W003) OAUTH_CLIENT['PROVIDERS']['partner']['CLIENT_SECRET'] is not set." in (
        result.stderr
    )
    assert "corp:" not in result.stderr


class MyAuthMiddleware(AuthenticationMiddleware):
    pass


class MyOAuthMiddleware(OAuthSessionMiddleware):
    pass


def test_a_redirect_uri_that_is_not_the_providers_own_callback_is_reported(settings):
    """Safe (the answer is refused as meant for another provider) but every sign-in with it would fail."""
    from oauth_client.checks import check_providers_setting

    base = {"ISSUER": "https://a.example/", "CLIENT_ID": "a", "CLIENT_SECRET": "b"}
    settings.OAUTH_CLIENT = {
        "PROVIDERS": {
            "default": {**base, "REDIRECT_URI": "https://site.example/oauth/callback/"},
            "partner": {
                **base,
                "ISSUER": "https://p.example/",
                "REDIRECT_URI": "https://site.example/oauth/callback/x/",
            },
            "corp": {
                **base,
                "ISSUER": "https://c.example/",
                "REDIRECT_URI": "https://site.example/oauth/callback/corp/",
            },
        }
    }
    found = [m for m in check_providers_setting(None) if m.id == "oauth_client.W018"]
    assert len(found) == 1 and "'partner'" in found[0].msg
