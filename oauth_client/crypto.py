"""Encryption at rest for tokens: Fernet (AES-128-CBC + HMAC-SHA256) with key rotation via MultiFernet."""

from __future__ import annotations

import base64
import functools
import logging
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.signals import setting_changed
from django.db import models

from oauth_client.conf import oauth_settings

logger = logging.getLogger("oauth_client.crypto")


def derive_key(secret: str) -> bytes:
    """A Fernet key derived from SECRET_KEY, for when no ENCRYPTION_KEYS are configured."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"oauth_client.tokens", info=b"fernet-v1")
    return base64.urlsafe_b64encode(hkdf.derive(secret.encode()))


@functools.cache
def fernet() -> MultiFernet:
    """ENCRYPTION_KEYS, or keys derived from SECRET_KEY and then each of SECRET_KEY_FALLBACKS: rotating the secret
    key the Django way (new key in front, old one in the fallbacks) keeps stored tokens readable; tokens are
    re-encrypted with the first key whenever they are written (every refresh)."""
    keys = list(oauth_settings.ENCRYPTION_KEYS) or [
        derive_key(secret) for secret in [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    ]
    return MultiFernet([Fernet(k) for k in keys])


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting in ("OAUTH_CLIENT", "SECRET_KEY", "SECRET_KEY_FALLBACKS"):
        fernet.cache_clear()


setting_changed.connect(_reset)


# Every Fernet token starts with the version byte 0x80 and a timestamp whose high bytes are zero.
FERNET_PREFIX = "gAAAAA"


def encrypt(value: str) -> str:
    return fernet().encrypt(value.encode()).decode("ascii")


def decrypt(value: str) -> str:
    try:
        return fernet().decrypt(value.encode("ascii")).decode()
    except (InvalidToken, ValueError):
        # A key was removed from ENCRYPTION_KEYS: the token is unusable, the user signs in again.
        logger.warning("a stored token could not be decrypted (encryption key rotated out?)")
        return ""


class EncryptedTextField(models.TextField):
    """A text column whose values are Fernet-encrypted in the database and plain str in Python."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str:
        return decrypt(value) if value else ""

    def value_to_string(self, obj: models.Model) -> str:
        # Serialization (dumpdata, fixtures) writes what the database holds: ciphertext, never a token.
        value = self.value_from_object(obj)
        return encrypt(str(value)) if value else ""

    def to_python(self, value: Any) -> Any:
        # Deserialization (loaddata of a dump) gets our ciphertext back: the token it stands for. Any other string
        # (a token set in Python) is taken as it is.
        if isinstance(value, str) and value.startswith(FERNET_PREFIX):
            try:
                return fernet().decrypt(value.encode("ascii")).decode()
            except (InvalidToken, ValueError):
                # A dump made under other keys: refuse it rather than store ciphertext as if it were a token.
                msg = "encrypted token that none of the current keys can read"  # i18n: ignore - for loaddata
                raise ValidationError(msg) from None
        return super().to_python(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return encrypt(value) if value else ""
