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
from django.db.models.query_utils import DeferredAttribute

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


class Sealed:
    """A token read from the database and not yet decrypted. Only the per-request read (`oauth_client.queries`)
    produces these, so a request that never looks at a token (a freshness check reads only expiries) never pays
    for decrypting it; the model attribute decrypts on first access. Every other read decrypts at once."""

    __slots__ = ("ciphertext",)

    def __init__(self, ciphertext: str) -> None:
        self.ciphertext = ciphertext

    def __repr__(self) -> str:
        return "<Sealed token>"

    def __str__(self) -> str:
        # Fail loudly rather than send "<Sealed token>" somewhere a token was expected.
        raise TypeError("a sealed token must be read through its model attribute")

    def __reduce__(self) -> tuple[Any, ...]:
        return (Sealed, (self.ciphertext,))


def seal(value: str | None, expression: Any, connection: Any) -> Sealed | str:
    """A converter (as `from_db_value`) that defers decryption to the model attribute."""
    return Sealed(value) if value else ""


class DecryptingAttribute(DeferredAttribute):
    # A data descriptor (it has __set__), so reads come here even when the value is in the instance dict.
    def __get__(self, instance: Any, cls: Any = None) -> Any:
        value = super().__get__(instance, cls)
        if isinstance(value, Sealed):
            value = instance.__dict__[self.field.attname] = decrypt(value.ciphertext)
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.field.attname] = value

    def __delete__(self, instance: Any) -> None:
        # `del record.field` makes the next access reload it, as for any Django field.
        try:
            del instance.__dict__[self.field.attname]
        except KeyError:
            raise AttributeError(self.field.attname) from None


class EncryptedTextField(models.TextField):
    """A text column whose values are Fernet-encrypted in the database and plain str in Python."""

    descriptor_class = DecryptingAttribute

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str:
        return decrypt(value) if value else ""

    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        # An untouched token is written back as the ciphertext it was read as: no decrypt/encrypt round trip.
        value = model_instance.__dict__.get(self.attname)
        return value if isinstance(value, Sealed) else super().pre_save(model_instance, add)

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
        if isinstance(value, Sealed):
            return value.ciphertext
        value = super().get_prep_value(value)
        return encrypt(value) if value else ""
