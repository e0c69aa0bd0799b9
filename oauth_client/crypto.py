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
    keys = list(oauth_settings.ENCRYPTION_KEYS) or [derive_key(settings.SECRET_KEY)]
    return MultiFernet([Fernet(k) for k in keys])


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting in ("OAUTH_CLIENT", "SECRET_KEY"):
        fernet.cache_clear()


setting_changed.connect(_reset)


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

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return encrypt(value) if value else ""
