"""oauth_client is a reusable app: `pip wheel .` ships it with its templates, migrations, management commands
and py.typed, and a throwaway Django project that installs only that wheel (stock User model, contrib apps)
signs in against the embedded provider."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.browser import Browser
from tests.conftest import repo_root
from tests.provider import EmbeddedProvider, free_port


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel from a copy of the sources (setuptools writes build/ next to pyproject.toml)."""
    src = tmp_path_factory.mktemp("src")
    root = repo_root()
    for name in ("pyproject.toml", "README.md"):
        if (root / name).exists():
            shutil.copy(root / name, src / name)
    shutil.copytree(root / "oauth_client", src / "oauth_client", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--quiet", "-w", str(dist)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel_path,) = dist.glob("*.whl")
    return wheel_path


def test_wheel_contains_the_app_with_templates_migrations_and_types(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    app = {n for n in names if n.startswith("oauth_client/")}
    for required in (
        "oauth_client/__init__.py",
        "oauth_client/py.typed",
        "oauth_client/migrations/0001_initial.py",
        "oauth_client/templates/oauth_client/error.html",
        "oauth_client/templates/oauth_client/end_session.html",
        "oauth_client/management/commands/oidc_doctor.py",
    ):
        assert required in app, required
    # Only the reusable app: not the demo site, the embedded provider or the tests.
    assert not {n.split("/")[0] for n in names if not n.startswith(("oauth_client/", "django_oauth"))}


STANDALONE_SETTINGS = """
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "standalone-project-for-tests"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "oauth_client",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "oauth_client.middleware.OAuthSessionMiddleware",
]
AUTHENTICATION_BACKENDS = ["oauth_client.backends.OAuthBackend"]
ROOT_URLCONF = "standalone_urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
        # The refresh lock on SQLite (check oauth_client.E014).
        "OPTIONS": {"transaction_mode": "IMMEDIATE"},
    }
}
USE_TZ = True
LOGIN_REDIRECT_URL = "/whoami/"
OAUTH_CLIENT = {
    "ISSUER": os.environ["OIDC_ISSUER"],
    "CLIENT_ID": os.environ["OIDC_CLIENT_ID"],
    "CLIENT_SECRET": os.environ["OIDC_CLIENT_SECRET"],
    "REVOCATION_ENDPOINT": os.environ["OIDC_REVOCATION_ENDPOINT"],
}
"""

STANDALONE_URLS = """
import oauth_client
from django.http import JsonResponse
from django.urls import include, path
from oauth_client import api_session, get_tokens, oauth_login_required, provider_metadata


@oauth_login_required
def whoami(request):
    tokens = get_tokens(request)
    userinfo = api_session(request).get(provider_metadata()["userinfo_endpoint"]).json()
    return JsonResponse(
        {
            "username": request.user.get_username(),
            "email": request.user.email,
            "sub": tokens.claims["sub"],
            "userinfo_email": userinfo.get("email"),
            "has_refresh_token": tokens.has_refresh_token,
            "oauth_client": oauth_client.__file__,
        }
    )


urlpatterns = [path("oauth/", include("oauth_client.urls")), path("whoami/", whoami)]
"""


@pytest.fixture
def standalone(wheel, provider: EmbeddedProvider, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The throwaway project, with the wheel unpacked first on its path, served by runserver."""
    site_packages = tmp_path / "site-packages"
    zipfile.ZipFile(wheel).extractall(site_packages)
    project = tmp_path / "project"
    project.mkdir()
    (project / "standalone_settings.py").write_text(textwrap.dedent(STANDALONE_SETTINGS))
    (project / "standalone_urls.py").write_text(textwrap.dedent(STANDALONE_URLS))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site_packages), str(project)]),
        "DJANGO_SETTINGS_MODULE": "standalone_settings",
        "OIDC_ISSUER": provider.issuer,
        "OIDC_CLIENT_ID": provider.client_id,
        "OIDC_CLIENT_SECRET": provider.client_secret,
        "OIDC_REVOCATION_ENDPOINT": provider.base_url + "/o/revoke_token/",
    }

    def django_admin(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "django", *args], cwd=project, env=env, capture_output=True, text=True, timeout=120
        )

    for args in (("migrate", "--noinput"), ("check", "--fail-level", "WARNING")):
        result = django_admin(*args)
        assert result.returncode == 0, result.stdout + result.stderr

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "django", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(url + "/oauth/login/", timeout=2, allow_redirects=False)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        yield url, site_packages
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_a_project_using_only_the_wheel_signs_in(standalone, provider):
    url, site_packages = standalone
    browser = Browser()
    browser.headers["Accept"] = "application/json, text/html"
    resp = browser.sign_in(url, provider.username, provider.password, "/whoami/")
    assert resp.status_code == 200 and resp.url == url + "/whoami/", resp.text[:2000]
    data = resp.json()
    assert data["email"] == "demo@example.com" and data["userinfo_email"] == "demo@example.com"
    assert data["has_refresh_token"] is True and data["sub"]
    # The app came from the wheel, not from the repository.
    assert Path(data["oauth_client"]).resolve().is_relative_to(site_packages.resolve())


def test_the_wheels_doctor_runs_in_the_standalone_project(standalone, provider, tmp_path):
    url, site_packages = standalone
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site_packages), str(tmp_path / "project")]),
        "DJANGO_SETTINGS_MODULE": "standalone_settings",
        "OIDC_ISSUER": provider.issuer,
        "OIDC_CLIENT_ID": provider.client_id,
        "OIDC_CLIENT_SECRET": provider.client_secret,
        "OIDC_REVOCATION_ENDPOINT": provider.base_url + "/o/revoke_token/",
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", "oidc_doctor", "--json", "--site-url", url],
        cwd=tmp_path / "project",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["ok"] is True
