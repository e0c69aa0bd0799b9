"""The provider's RSA signing key: created on first start, then read from disk."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def generate_private_key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def load_or_create_private_key(path: Path) -> str:
    """Return the PEM at `path`, creating a fresh RSA-2048 key there first if it is missing.

    The key is written to a private temp file in the same directory and then published with
    os.link, which (unlike os.replace) never overwrites: when two processes start at once, the
    first key published wins and both read that one, so every worker signs with the same key.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(generate_private_key_pem())
                tmp.flush()
                os.fsync(tmp.fileno())
            try:
                os.link(tmp_name, path)
            except FileExistsError:
                pass  # another process won the race; use its key
            except OSError:
                os.replace(tmp_name, path)  # filesystem without hard links
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
    return path.read_text()


def read_private_keys(paths: list[Path]) -> list[str]:
    """Read existing PEM files (retired keys are never generated: they must already exist)."""
    return [Path(p).read_text() for p in paths]
