"""Rotating SECRET_KEY the Django way (new key, old one in SECRET_KEY_FALLBACKS) signs nobody out.

Django verifies the session's auth hash with the fallback key and cycles the session key; the token record must
carry over to the new key (not be ended by the deletion of the old session row), and its tokens, encrypted with a
key derived from the old secret, must stay readable. Against the real embedded provider.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from oauth_client import crypto
from oauth_client.models import OAuthSession
from tests.conftest import repo_root
from tests.helpers import active_record, expire_tokens

pytestmark = pytest.mark.django_db(transaction=True)


def test_rotating_the_secret_key_keeps_sessions_and_tokens(site, settings):
    browser = site.signed_in_browser()
    before = active_record()
    old_secret = settings.SECRET_KEY
    settings.SECRET_KEY = "rotated-" + "k" * 50
    settings.SECRET_KEY_FALLBACKS = [old_secret]

    resp = browser.get(site.url + "/account/", allow_redirects=False)
    assert resp.status_code == 200
    after = OAuthSession.objects.get(pk=before.pk)
    assert after.is_active, after.ended_reason
    assert after.session_key != before.session_key  # Django cycled the key; the record followed it
    assert after.refresh_token == before.refresh_token  # readable through the fallback-derived key

    # The next refresh presents that refresh token and stores the new tokens under the new key only.
    expire_tokens()
    assert browser.get(site.url + "/account/", allow_redirects=False).status_code == 200
    refreshed = active_record()
    assert refreshed.pk == before.pk and refreshed.refresh_count == 1
    settings.SECRET_KEY_FALLBACKS = []
    assert active_record().refresh_token == refreshed.refresh_token  # no fallback needed any more
    assert browser.get(site.url + "/account/", allow_redirects=False).status_code == 200


def test_without_the_fallback_old_tokens_are_unreadable(settings):
    """The control: the derived key really changes with the secret, so the fallback is what kept them readable."""
    token = crypto.encrypt("a-token")
    settings.SECRET_KEY = "another-" + "k" * 50
    assert crypto.decrypt(token) == ""


def test_fallbacks_come_from_the_environment():
    code = "from django.conf import settings; print(settings.SECRET_KEY_FALLBACKS)"
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DJANGO_SECRET_KEY": "new-" + "s" * 50,
        "DJANGO_SECRET_KEY_FALLBACKS": "old-one,older-one",
    }
    out = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=repo_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "['old-one', 'older-one']"
