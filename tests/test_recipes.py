"""The provider recipes of docs/providers.md, tested as written: each `# recipe:` block is read from the document,
fed to project/settings.py as its environment, and the site's sign-in is started against a local stub serving a
discovery document shaped like that provider's (no real provider is reachable from the tests)."""

from __future__ import annotations

import os
import re
import runpy
import shlex
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.checks import run_checks
from django.test import Client
from jwcrypto import jwk

from oauth_client import diagnostics
from oauth_client.client_auth import SECRET_METHODS
from tests.conftest import repo_root
from tests.stub_server import Answer, StubServer

pytestmark = pytest.mark.django_db

DOC = repo_root() / "docs" / "providers.md"


def recipes() -> dict[str, dict[str, str]]:
    """{name: environment} from the ```sh blocks that start with `# recipe: name`."""
    found = {}
    for block in re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S):
        lines = block.strip().splitlines()
        if not lines[0].startswith("# recipe:"):
            continue
        name = lines[0].split(":", 1)[1].strip()
        env = {}
        for line in lines[1:]:
            key, value = line.split("=", 1)
            env[key] = shlex.split(value)[0] if value else ""
        found[name] = env
    return found


# Discovery documents trimmed to what a client reads, with the paths and values each provider publishes.
def auth0(base: str, issuer: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": base + "/authorize",
        "token_endpoint": base + "/oauth/token",
        "userinfo_endpoint": base + "/userinfo",
        "jwks_uri": base + "/.well-known/jwks.json",
        "revocation_endpoint": base + "/oauth/revoke",
        "end_session_endpoint": base + "/oidc/logout",
        "scopes_supported": ["openid", "profile", "offline_access", "name", "email", "email_verified"],
        "response_types_supported": ["code", "token", "id_token", "code token", "code id_token"],
        "code_challenge_methods_supported": ["S256", "plain"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "id_token_signing_alg_values_supported": ["HS256", "RS256", "PS256"],
    }


def keycloak(base: str, issuer: str) -> dict[str, Any]:
    oidc = issuer + "/protocol/openid-connect"
    return {
        "issuer": issuer,
        "authorization_endpoint": oidc + "/auth",
        "token_endpoint": oidc + "/token",
        "userinfo_endpoint": oidc + "/userinfo",
        "jwks_uri": oidc + "/certs",
        "revocation_endpoint": oidc + "/revoke",
        "end_session_endpoint": oidc + "/logout",
        "grant_types_supported": ["authorization_code", "implicit", "refresh_token", "password", "client_credentials"],
        "scopes_supported": ["openid", "offline_access", "profile", "email", "roles", "web-origins"],
        "token_endpoint_auth_methods_supported": [
            "private_key_jwt",
            "client_secret_basic",
            "client_secret_post",
            "tls_client_auth",
            "client_secret_jwt",
        ],
        "id_token_signing_alg_values_supported": ["PS384", "ES384", "RS384", "HS256", "HS512", "ES256", "RS256"],
        "code_challenge_methods_supported": ["plain", "S256"],
    }


def okta(base: str, issuer: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": issuer + "/v1/authorize",
        "token_endpoint": issuer + "/v1/token",
        "userinfo_endpoint": issuer + "/v1/userinfo",
        "jwks_uri": issuer + "/v1/keys",
        "revocation_endpoint": issuer + "/v1/revoke",
        "end_session_endpoint": issuer + "/v1/logout",
        "grant_types_supported": ["authorization_code", "implicit", "refresh_token", "password", "client_credentials"],
        "scopes_supported": ["openid", "profile", "email", "address", "phone", "offline_access"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "client_secret_jwt",
            "private_key_jwt",
            "none",
        ],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
    }


def entra(base: str, issuer: str) -> dict[str, Any]:
    tenant = issuer.removesuffix("/v2.0")
    return {
        "issuer": issuer,
        "authorization_endpoint": tenant + "/oauth2/v2.0/authorize",
        "token_endpoint": tenant + "/oauth2/v2.0/token",
        "userinfo_endpoint": base + "/oidc/userinfo",
        "jwks_uri": tenant + "/discovery/v2.0/keys",
        "end_session_endpoint": tenant + "/oauth2/v2.0/logout",
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }


def google(base: str, issuer: str) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": base + "/o/oauth2/v2/auth",
        "token_endpoint": base + "/token",
        "userinfo_endpoint": base + "/v1/userinfo",
        "revocation_endpoint": base + "/revoke",
        "jwks_uri": base + "/oauth2/v3/certs",
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["plain", "S256"],
    }


PROVIDERS: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "auth0": auth0,
    "keycloak": keycloak,
    "okta": okta,
    "entra": entra,
    "google": google,
}


def test_every_provider_has_a_recipe():
    assert set(recipes()) == set(PROVIDERS)


@pytest.fixture(params=sorted(PROVIDERS))
def recipe(request, settings, monkeypatch):
    """The recipe's environment, with the issuer moved to a local stub of that provider, loaded through
    project/settings.py exactly as a deployment would load it."""
    name = request.param
    env = recipes()[name]
    key = jwk.JWK.generate(kty="RSA", size=2048, kid="recipe-key", use="sig")
    with StubServer() as stub:
        issuer = stub.url + urlsplit(env["OIDC_ISSUER"]).path
        metadata = PROVIDERS[name](stub.url, issuer)
        stub.routes[urlsplit(issuer.rstrip("/") + "/.well-known/openid-configuration").path] = Answer(200, metadata)
        stub.routes[urlsplit(metadata["jwks_uri"]).path] = Answer(200, {"keys": [key.export_public(as_dict=True)]})
        # The token endpoint answers a made-up refresh token as a real provider would (client accepted).
        stub.routes[urlsplit(metadata["token_endpoint"]).path] = Answer(400, {"error": "invalid_grant"})

        for var in [v for v in os.environ if v.startswith("OIDC_")]:
            monkeypatch.delenv(var)
        for var, value in {**env, "OIDC_ISSUER": issuer}.items():
            monkeypatch.setenv(var, value)
        site_settings = runpy.run_path(str(repo_root() / "project" / "settings.py"))
        settings.OAUTH_CLIENT = {**site_settings["OAUTH_CLIENT"], "HTTP_TIMEOUT": (2.0, 5.0)}
        yield name, env, metadata, stub


def test_recipe_authorize_url(recipe):
    name, env, metadata, _ = recipe
    resp = Client().get("/oauth/login/")
    assert resp.status_code == 302
    location = resp["Location"]
    assert location.startswith(metadata["authorization_endpoint"] + "?")
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    scopes = params["scope"].split()

    assert params["response_type"] == "code" and params["client_id"] == env["OIDC_CLIENT_ID"]
    assert params["redirect_uri"] == "http://testserver/oauth/callback/"
    assert params["code_challenge_method"] == "S256" and params["state"] and params["nonce"]
    assert {"openid", "profile", "email"} <= set(scopes)
    if name == "google":
        assert "offline_access" not in scopes
        assert params["access_type"] == "offline" and params["prompt"] == "consent"
    else:
        assert "offline_access" in scopes and "access_type" not in params
    if name == "auth0":
        assert params["audience"] == "https://api.example.com/"
    else:
        assert "audience" not in params


def test_recipe_passes_checks_and_the_doctor(recipe, settings):
    name, env, _, stub = recipe
    settings.DEBUG = True  # as a developer would first try it; the issuer here is a loopback stub anyway
    assert {m.id for m in run_checks(tags=["oauth_client"])} == set()

    report = diagnostics.run(site_url="https://app.example.com")
    findings = {f.name: f for f in report.findings}
    assert report.ok, [f for f in report.findings if f.status == diagnostics.FAIL]
    for check in ("issuer", "offline_access", "auth_method", "client_auth", "jwks", "endpoint:authorization_endpoint"):
        assert findings[check].status == diagnostics.OK, findings[check]
    advertised = PROVIDERS[name]("", "")["token_endpoint_auth_methods_supported"]
    # Without a client key (OIDC_CLIENT_KEY_FILE), the first advertised method that uses the secret.
    expected_method = env.get("OIDC_TOKEN_AUTH_METHOD") or next(m for m in advertised if m in SECRET_METHODS)
    assert expected_method in findings["auth_method"].message
    # The probe went to the token endpoint with the client's credentials, the way the recipe says.
    probe = next(s for s in stub.seen if s.method == "POST")
    if expected_method == "client_secret_basic":
        assert probe.headers["Authorization"].startswith("Basic ")
    else:
        assert b"client_secret=" in probe.body and "Authorization" not in probe.headers
    if name == "entra":
        assert findings["endpoint:revocation_endpoint"].status == diagnostics.WARN
    if name == "google":
        assert findings["endpoint:end_session_endpoint"].status == diagnostics.WARN
    assert report.authorize_url.startswith(findings["endpoint:authorization_endpoint"].message.split(": ", 1)[1])
