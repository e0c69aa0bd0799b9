"""The one masking function and the one list of token columns (`oauth_client.redaction`), and what each caller
shows: the admin's tokens (`abcd*****MASKED*****`) and the doctor's client secret (`abc*****MASKED*****`)."""

from __future__ import annotations

import pytest

from oauth_client import diagnostics
from oauth_client.crypto import EncryptedTextField
from oauth_client.models import OAuthSession
from oauth_client.redaction import MASK, TOKEN_FIELDS, mask
from tests.conftest import run_fresh_python

TOKEN = "eyJhbGciOiJSUzI1NiJ9.payload.signature"


def test_mask_defaults_are_the_admin_s_token_mask():
    assert mask(TOKEN) == "eyJh*****MASKED*****"
    assert mask("x" * 16) == "xxxx" + MASK
    assert mask("x" * 15) == MASK  # too short to show any of it
    assert mask("") == "—"


@pytest.mark.parametrize(("show", "min_length"), [(4, 16), (3, 12)])
def test_mask_never_shows_more_than_asked(show, min_length):
    for length in range(1, 40):
        value = "".join(chr(ord("a") + i % 26) for i in range(length))
        prefix = mask(value, show=show, min_length=min_length).removesuffix(MASK)
        assert prefix == (value[:show] if length >= min_length else "")


@pytest.mark.parametrize(
    ("secret", "shown"),
    [
        ("abcdefghijklmnop", "abc*****MASKED*****"),
        ("abcdefghijkl", "abc*****MASKED*****"),
        ("abcdefghijk", "*****MASKED*****"),
        ("short", "*****MASKED*****"),
        ("", "(not set)"),
    ],
)
def test_doctor_shows_the_client_secret_as_auth0_does(settings, secret, shown):
    # No issuer: the doctor stops before any network call.
    settings.OAUTH_CLIENT = {"ISSUER": "", "CLIENT_ID": "client", "CLIENT_SECRET": secret}
    assert diagnostics.run(probe_token_endpoint=False).client_secret == shown


def test_token_fields_are_the_model_s_token_columns():
    columns = {f.name for f in OAuthSession._meta.get_fields() if isinstance(f, EncryptedTextField)}
    assert set(TOKEN_FIELDS) == columns


def test_redaction_imports_nothing_of_django_or_the_app():
    """So any module can use it early (the doctor, settings-time code) without the app registry."""
    code = (
        "import sys, oauth_client.redaction\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('django', 'oauth_client.')))\n"
        "assert loaded == ['oauth_client.redaction'], loaded\n"
    )
    result = run_fresh_python(code)
    assert result.returncode == 0, result.stderr
