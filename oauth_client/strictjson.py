"""JSON from the provider, parsed strictly: what it sends ends up in the database and in comparisons, so
anything that would crash there later is refused here, at the edge, as a malformed response."""

from __future__ import annotations

import json
import math
from typing import Any


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; RFC 8259 does not, and neither do PostgreSQL's jsonb or dates.
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # A literal too large for a float (1e400) would become inf: refused like Infinity itself.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number is out of range")
    return value


def _storable(value: Any) -> bool:
    """No NUL characters (PostgreSQL text cannot hold them) and no lone surrogates (no database can encode them,
    and neither can a str.encode() in a comparison), in any key or value."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return False
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def loads(data: str | bytes) -> Any:
    """Parse RFC 8259 JSON; raise ValueError for anything else, including nesting too deep to parse."""
    try:
        value = json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("JSON is nested too deeply") from None
    if not _storable(value):
        raise ValueError("JSON contains NUL characters or unpaired surrogates")
    return value
