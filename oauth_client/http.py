"""Transport to the provider: one pooled `requests.Session`, timeouts on every call, bounded response size,
bounded retries with backoff and jitter for failures that are known to be safe to repeat."""

from __future__ import annotations

import logging
import random
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any

import requests
import urllib3

from oauth_client import strictjson
from oauth_client.conf import oauth_settings
from oauth_client.exceptions import InvalidResponse, TransientProviderError

logger = logging.getLogger("oauth_client.http")

_local = threading.local()
USER_AGENT = "oauth_client/0.1 (+django)"


def session() -> requests.Session:
    """A per-thread pooled session (requests.Session is not documented as thread-safe)."""
    s: requests.Session | None = getattr(_local, "session", None)
    if s is None:
        s = requests.Session()
        s.headers["User-Agent"] = USER_AGENT
        _local.session = s
    return s


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _read_limited(response: requests.Response) -> bytes:
    limit = oauth_settings.HTTP_MAX_RESPONSE_BYTES
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        response.close()
        raise InvalidResponse(f"response too large ({declared} bytes)")
    chunks, size = [], 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > limit:
            response.close()
            raise InvalidResponse("response too large")
        chunks.append(chunk)
    return b"".join(chunks)


def _not_sent(exc: requests.RequestException) -> bool:
    """True when the connection was never established, so the provider cannot have seen the request."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError)


class Response:
    """The parts of an HTTP response the pipeline needs, read fully (size-limited) and closed."""

    def __init__(self, status: int, headers: requests.structures.CaseInsensitiveDict[str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        try:
            return strictjson.loads(self.body)
        except ValueError as exc:
            raise InvalidResponse(f"HTTP {self.status}: response is not JSON") from exc


def request(
    method: str,
    url: str,
    *,
    idempotent: bool = True,
    what: str = "provider",
    **kwargs: Any,
) -> Response:
    """Send one request, retrying connection failures, 429 and 5xx within HTTP_RETRY_BUDGET seconds.

    `idempotent=False` is for calls that must not be repeated once the provider may have acted on them: a
    refresh whose response was lost may already have rotated the token, and sending the old token again
    would look like reuse (theft) to the provider. Those are retried only when the request never left.
    """
    deadline = time.monotonic() + oauth_settings.HTTP_RETRY_BUDGET
    attempts = 1 + max(0, int(oauth_settings.HTTP_RETRIES))
    connect_timeout, read_timeout = kwargs.pop("timeout", oauth_settings.HTTP_TIMEOUT)
    kwargs.setdefault("allow_redirects", False)
    last_error: TransientProviderError | None = None
    for attempt in range(attempts):
        retry_after: float | None = None
        # Every attempt fits in what is left of the budget, so the whole call is bounded.
        remaining = max(0.5, deadline - time.monotonic())
        timeout = (min(connect_timeout, remaining), min(read_timeout, remaining))
        try:
            with session().request(method, url, stream=True, timeout=timeout, **kwargs) as raw:
                body = _read_limited(raw)
                resp = Response(raw.status_code, raw.headers, body)
        except requests.RequestException as exc:
            last_error = TransientProviderError(f"{what} unreachable ({type(exc).__name__})")
            if not (idempotent or _not_sent(exc)):
                raise last_error from None
        else:
            if resp.status == 429 or resp.status >= 500:
                retry_after = _retry_after(raw)
                last_error = TransientProviderError(f"{what} answered HTTP {resp.status}", retry_after=retry_after)
            else:
                return resp
        if attempt + 1 >= attempts:
            break
        delay = retry_after if retry_after is not None else min(2.0, 0.2 * 2**attempt)
        delay += random.uniform(0, 0.1)  # noqa: S311 - jitter, not crypto
        if time.monotonic() + delay >= deadline:
            break
        logger.info("%s; retrying in %.2fs (attempt %d/%d)", last_error, delay, attempt + 2, attempts)
        time.sleep(delay)
    assert last_error is not None
    raise last_error
