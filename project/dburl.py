"""Parse `DATABASE_URL` into a Django DATABASES entry (postgres:// and sqlite:/// only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit


def sqlite_config(path: str | Path) -> dict[str, Any]:
    # IMMEDIATE makes every atomic() take SQLite's write lock up front, so a token refresh
    # serializes with other writers instead of failing on lock upgrade; `timeout` bounds the wait.
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
    }


def parse(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return sqlite_config(unquote(parts.path.removeprefix("/")) or ":memory:")
    if parts.scheme in ("postgres", "postgresql", "pgsql"):
        options: dict[str, Any] = dict(parse_qsl(parts.query))
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.removeprefix("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": options,
            "CONN_MAX_AGE": int(options.pop("conn_max_age", 0)),
            "CONN_HEALTH_CHECKS": True,
        }
    raise ValueError(f"Unsupported DATABASE_URL scheme: {parts.scheme!r}")
