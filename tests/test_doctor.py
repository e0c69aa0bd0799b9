"""`manage.py oidc_doctor` against the real embedded provider (all ✓, exit 0) and against broken setups
(✗ with a fix, exit non-zero). The client secret is never printed in full."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from email.utils import formatdate
from io import StringIO
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.core.management import CommandError, call_command
from jwcrypto import jwk

from oauth_client.redaction import MASK
from tests.browser import Browser
from tests.conftest import client_settings, repo_root
from tests.faults import closed_port_url
from tests.stub_server import Answer, StubServer

FAST = {"HTTP_TIMEOUT": (0.5, 1.0), "HTTP_RETRIES": 1, "HTTP_RETRY_BUDGET": 2.0}


def doctor(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("oidc_doctor", *args, stdout=out, stderr=err)
        code = 0
    except CommandError as exc:
        code = exc.returncode
        err.write(str(exc))
    return code, out.getvalue(), err.getvalue()


def checks_by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


@pytest.fixture
def dev(site, settings):
    """As under `make run`: DEBUG on, the embedded provider's client."""
    settings.DEBUG = True
    return site


def test_embedded_provider_is_all_green(dev):
    code, out, _ = doctor("--site-url", dev.url)
    assert code == 0, out
    lines = [line for line in out.splitlines() if line[:2] in ("✓ ", "✗ ", "! ")]
    assert lines and all(line.startswith("✓ ") for line in lines), out
    for expected in (
        "issuer matches",
        "token_endpoint:",
        "end_session_endpoint:",
        "revocation_endpoint:",
        "offline_access is requested and in scopes_supported",
        "accepted the client credentials",
        "usable with RS256",
        "clock skew against the provider",
        f"redirect_uri={dev.url}/oauth/callback/",
    ):
        assert expected in out, expected
    assert "No problems found." in out


def test_json_output_for_ci(dev):
    code, out, _ = doctor("--json", "--site-url", dev.url)
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    statuses = {c["status"] for c in report["checks"]}
    assert statuses <= {"ok", "info"}
    checks = checks_by_name(report)
    for name in ("discovery", "issuer", "endpoint:jwks_uri", "offline_access", "auth_method", "jwks", "clock"):
        assert checks[name]["status"] == "ok", checks[name]
    assert report["client_secret"] == dev.provider.client_secret[:3] + MASK


def test_secret_is_masked_everywhere(dev):
    secret = dev.provider.client_secret
    for args in ((), ("--json",)):
        code, out, err = doctor(*args, "--site-url", dev.url)
        assert secret not in out + err
        assert secret[:3] + "*****MASKED*****" in out


def test_printed_authorize_url_and_curl_commands_work(dev):
    """What the doctor prints is enough to get tokens by hand, as Auth0's guide does it."""
    code, out, _ = doctor("--json", "--site-url", dev.url)
    report = json.loads(out)
    url = report["authorize_url"]
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert params["redirect_uri"] == dev.url + "/oauth/callback/"
    assert set(params["scope"].split()) >= {"openid", "offline_access"}
    assert params["code_challenge_method"] == "S256"

    # Sign in at the provider and catch the redirect back (the site would refuse this state: expected).
    browser = Browser()
    resp = browser.get(url)
    resp = browser.submit(
        resp,
        browser.find_form(resp, with_field="password"),
        {"username": dev.provider.username, "password": dev.provider.password},
    )
    resp = browser.submit(resp, browser.find_form(resp, with_field="allow"), button="allow", allow_redirects=False)
    while not resp.headers["Location"].startswith(dev.url + "/oauth/callback/"):
        resp = browser.get(resp.headers["Location"], allow_redirects=False)
    code_value = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]

    secret = dev.provider.client_secret
    exchange = report["curl"]["code_exchange"].replace(secret[:3] + MASK, secret)
    exchange = exchange.replace("YOUR_AUTHORIZATION_CODE", code_value)
    tokens = run_curl(exchange)
    assert tokens["token_type"].lower() == "bearer" and tokens["refresh_token"] and tokens["id_token"]

    refresh = report["curl"]["refresh"].replace(secret[:3] + MASK, secret)
    refreshed = run_curl(refresh.replace("YOUR_REFRESH_TOKEN", tokens["refresh_token"]))
    assert refreshed["access_token"] != tokens["access_token"] and refreshed["refresh_token"]


def run_curl(command: str) -> dict:
    """Run a printed curl command (curl itself when installed, else the same request with `requests`)."""
    if shutil.which("curl"):
        result = subprocess.run(["bash", "-c", command + " --silent --show-error"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)
    words = shlex.split(command.replace("\\\n", " "))
    url = words[words.index("--url") + 1]
    data = [tuple(words[i + 1].split("=", 1)) for i, w in enumerate(words) if w == "--data-urlencode"]
    auth = tuple(words[words.index("--user") + 1].split(":", 1)) if "--user" in words else None
    return requests.post(url, data=data, auth=auth, timeout=10).json()  # type: ignore[arg-type]


def test_wrong_issuer_fails_with_a_fix(dev, settings):
    settings.OAUTH_CLIENT = client_settings(dev.provider, ISSUER=dev.provider.base_url + "/wrong", **FAST)
    code, out, err = doctor("--site-url", dev.url)
    assert code == 1 and "problem(s) found" in err
    assert "✗ " in out and "answered HTTP 404" in out
    assert "fix: Check OIDC_ISSUER" in out


def test_unreachable_provider_fails(dev, settings):
    settings.OAUTH_CLIENT = client_settings(dev.provider, ISSUER=closed_port_url().removesuffix("/token"), **FAST)
    code, out, _ = doctor("--json", "--site-url", dev.url)
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    discovery = checks_by_name(report)["discovery"]
    assert discovery["status"] == "fail" and "unreachable" in discovery["message"] and discovery["fix"]


def test_wrong_secret_fails(dev, settings):
    settings.OAUTH_CLIENT = client_settings(dev.provider, CLIENT_SECRET="not-the-right-secret")
    code, out, _ = doctor("--json", "--site-url", dev.url)
    check = checks_by_name(json.loads(out))["client_auth"]
    assert code == 1 and check["status"] == "fail" and "invalid_client" in check["message"]
    assert "OIDC_CLIENT_SECRET" in check["fix"]
    # Without the probe the token endpoint is not called at all.
    code, out, _ = doctor("--json", "--no-token-probe", "--site-url", dev.url)
    assert code == 0 and "client_auth" not in checks_by_name(json.loads(out))


@pytest.fixture
def bad_provider(settings):
    """A provider that gets everything wrong that the doctor checks."""
    key = jwk.JWK.generate(kty="RSA", size=2048, kid="k1", use="sig")
    with StubServer() as server:
        issuer = server.url + "/tenant"
        server.routes["/tenant/.well-known/openid-configuration"] = Answer(
            200,
            {
                "issuer": server.url + "/other-tenant",
                "authorization_endpoint": issuer + "/authorize",
                "token_endpoint": issuer + "/token",
                "jwks_uri": issuer + "/jwks",
                "scopes_supported": ["openid", "email"],
                "grant_types_supported": ["authorization_code"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "id_token_signing_alg_values_supported": ["HS256"],
                "code_challenge_methods_supported": ["plain"],
            },
            # Ten minutes behind.
            {"Date": formatdate(timeval=time.time() - 600, usegmt=True)},
        )
        server.routes["/tenant/jwks"] = Answer(200, {"keys": [key.export_public(as_dict=True)]})
        settings.OAUTH_CLIENT = {"ISSUER": issuer, "CLIENT_ID": "site", "CLIENT_SECRET": "s3cr3t-s3cr3t-s3cr3t", **FAST}
        yield server


def test_broken_provider_setup_is_explained(bad_provider, settings):
    settings.DEBUG = True
    code, out, _ = doctor("--json", "--site-url", "http://127.0.0.1:8000")
    checks = checks_by_name(json.loads(out))
    assert code == 1
    expected_failures = ["issuer", "grant:refresh_token", "offline_access", "auth_method", "pkce", "jwks", "clock"]
    for name in expected_failures:
        assert checks[name]["status"] == "fail", checks[name]
        assert checks[name]["fix"], name
    assert "other-tenant" in checks["issuer"]["fix"]
    assert checks["endpoint:revocation_endpoint"]["status"] == "warn"
    assert checks["endpoint:end_session_endpoint"]["status"] == "warn"
    # The text report shows the same, with ✗ and a fix under each.
    _, text, _ = doctor("--site-url", "http://127.0.0.1:8000")
    assert text.count("✗ ") == len(expected_failures)
    assert text.count("    fix: ") >= len(expected_failures)


def test_missing_settings_and_system_check_errors_are_reported(settings):
    settings.DEBUG = False
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    settings.OAUTH_CLIENT = {"ISSUER": "", "CLIENT_ID": "", "CLIENT_SECRET": ""}
    code, out, _ = doctor("--json", "--site-url", "https://site.example.com")
    checks = checks_by_name(json.loads(out))
    assert code == 1
    assert checks["setting:ISSUER"]["status"] == "fail" and "OIDC_ISSUER" in checks["setting:ISSUER"]["fix"]
    assert checks["check:oauth_client.E001"]["status"] == "fail"
    assert checks["redirect_uri"]["status"] == "ok"


def test_http_redirect_uri_in_production_fails(dev, settings):
    settings.DEBUG = False
    code, out, _ = doctor("--json", "--site-url", "http://site.example.com")
    check = checks_by_name(json.loads(out))["redirect_uri"]
    assert code == 1 and check["status"] == "fail" and "not https" in check["message"]


def test_command_line_against_the_embedded_provider(provider):
    """`manage.py oidc_doctor` as a developer runs it, configured from the environment only."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "OIDC_ISSUER": provider.issuer,
        "OIDC_CLIENT_ID": provider.client_id,
        "OIDC_CLIENT_SECRET": provider.client_secret,
        "OIDC_REVOCATION_ENDPOINT": provider.base_url + "/o/revoke_token/",
    }
    env.pop("DATABASE_URL", None)

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", "oidc_doctor", *args],
            cwd=repo_root(),
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
        )

    ok = run()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "✓ issuer matches" in ok.stdout and "✗" not in ok.stdout
    assert provider.client_secret not in ok.stdout + ok.stderr
    broken = run("--json", OIDC_ISSUER=provider.base_url + "/nope")
    assert broken.returncode == 1 and json.loads(broken.stdout)["ok"] is False


# --- several providers (OAUTH_CLIENT["PROVIDERS"]) ---------------------------------------------------------------


def two_providers(provider, **partner_overrides: object) -> dict[str, object]:
    """Two providers, corp and partner, both clients of the embedded provider (a second entry may share an issuer)."""
    entry = {
        "ISSUER": provider.issuer,
        "CLIENT_ID": provider.client_id,
        "CLIENT_SECRET": provider.client_secret,
        "REVOCATION_ENDPOINT": f"{provider.base_url}/o/revoke_token/",
    }
    return {
        "HTTP_TIMEOUT": (2.0, 5.0),
        "PROVIDERS": {"corp": dict(entry), "partner": {**entry, "LABEL": "Partners", **partner_overrides}},
    }


def test_single_provider_json_names_it_default(dev):
    report = json.loads(doctor("--json", "--site-url", dev.url)[1])
    assert report["provider"] == "default"
    assert report["redirect_uri"] == dev.url + "/oauth/callback/"
    assert report["backchannel_logout_uri"] == dev.url + "/oauth/backchannel-logout/"
    assert "backchannel_logout_uri" not in checks_by_name(report)


def test_every_provider_is_checked_by_default(dev, settings):
    settings.OAUTH_CLIENT = two_providers(dev.provider)
    code, out, _ = doctor("--site-url", dev.url)
    assert code == 0, out
    corp, partner = out.split(f"Provider partner: {dev.provider.issuer} · client {dev.provider.client_id}")
    assert corp.startswith(f"Provider corp: {dev.provider.issuer} · client {dev.provider.client_id}")
    for name, text in (("corp", corp), ("partner", partner)):
        lines = [line for line in text.splitlines() if line[:2] in ("✓ ", "✗ ", "! ")]
        assert lines and all(line.startswith("✓ ") for line in lines), text
        assert "accepted the client credentials" in text and "issuer matches" in text
        # Each provider's own redirect and back-channel logout URIs, as the site serves them.
        assert f"redirect_uri={dev.url}/oauth/callback/{name}/ " in text
        assert f"{dev.url}/oauth/backchannel-logout/{name}/" in text
        assert f"{name}: No problems found." in text
    assert dev.provider.client_secret not in out


def test_json_for_several_providers(dev, settings):
    settings.OAUTH_CLIENT = two_providers(dev.provider)
    code, out, _ = doctor("--json", "--site-url", dev.url)
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and list(data["providers"]) == ["corp", "partner"]
    for name, report in data["providers"].items():
        assert report["ok"] is True and report["provider"] == name
        assert report["redirect_uri"] == f"{dev.url}/oauth/callback/{name}/"
        assert report["backchannel_logout_uri"] == f"{dev.url}/oauth/backchannel-logout/{name}/"
        params = {k: v[0] for k, v in parse_qs(urlsplit(report["authorize_url"]).query).items()}
        assert params["redirect_uri"] == f"{dev.url}/oauth/callback/{name}/"
        assert f"redirect_uri={dev.url}/oauth/callback/{name}/" in report["curl"]["code_exchange"]


def test_one_provider_with_the_provider_option(dev, settings):
    settings.OAUTH_CLIENT = two_providers(dev.provider, SCOPES=["openid", "email"])
    code, out, err = doctor("--provider", "partner", "--site-url", dev.url)
    assert code == 1 and "Provider partner:" in out and "Provider corp" not in out
    assert "✗ offline_access is not in the requested scopes (openid email)" in out
    assert "fix: Add offline_access to OIDC_PARTNER_SCOPES" in out
    assert "partner: 1 problem(s) found." in out and "oidc_doctor: 1 problem(s) found" in err
    code, out, _ = doctor("--json", "--provider", "corp", "--site-url", dev.url)
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["provider"] == "corp"


def test_a_problem_at_one_provider_is_reported_for_that_provider_only(dev, settings):
    settings.OAUTH_CLIENT = two_providers(dev.provider, CLIENT_SECRET="", TOKEN_AUTH_METHOD="tls_client_auth")
    code, out, err = doctor("--json", "--site-url", dev.url)
    data = json.loads(out)
    assert code == 1 and data["ok"] is False and "(partner: " in err
    corp, partner = (checks_by_name(data["providers"][name]) for name in ("corp", "partner"))
    assert data["providers"]["corp"]["ok"] is True and "client_auth" in corp
    assert partner["setting:CLIENT_SECRET"]["status"] == "fail"
    assert "OAUTH_CLIENT['PROVIDERS']['partner']['CLIENT_SECRET']" in partner["setting:CLIENT_SECRET"]["message"]
    assert partner["setting:CLIENT_SECRET"]["fix"].startswith("Set OIDC_PARTNER_CLIENT_SECRET")
    # The system check about partner's setting is in partner's report, not in corp's.
    assert partner["check:oauth_client.E008"]["status"] == "fail"
    assert "['partner']['TOKEN_AUTH_METHOD']" in partner["check:oauth_client.E008"]["message"]
    assert "check:oauth_client.E008" not in corp
    assert "client_auth" not in partner  # no secret: no probe


def test_unknown_provider_is_a_command_error(dev, settings):
    settings.OAUTH_CLIENT = two_providers(dev.provider)
    with pytest.raises(CommandError, match="no provider named 'parnter'.*corp, partner"):
        call_command("oidc_doctor", "--provider", "parnter", stdout=StringIO())
    settings.OAUTH_CLIENT = client_settings(dev.provider)
    with pytest.raises(CommandError, match="no provider named 'corp'.*default"):
        call_command("oidc_doctor", "--provider", "corp", stdout=StringIO())


def test_invalid_providers_setting_is_a_command_error(settings):
    settings.OAUTH_CLIENT = {"PROVIDERS": {"Corp": {"ISSUER": "https://corp.example.com/"}}}
    with pytest.raises(CommandError, match="'Corp' is not a lower-case slug"):
        call_command("oidc_doctor", stdout=StringIO())
