"""Transport to the provider: one pooled `requests.Session` per thread, a hard deadline on every attempt, bounded
response size, bounded retries with backoff and jitter for failures that are known to be safe to repeat.

Every call is stateless: the session keeps no cookies (a provider's cookies would otherwise travel with the
next call, made for another user) and never reads `~/.netrc` (which would replace our `Authorization` header).
Proxies from the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`) and `REQUESTS_CA_BUNDLE`
still apply, as everywhere in `requests`.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from email.utils import parsedate_to_datetime
from http.cookiejar import DefaultCookiePolicy
from types import TracebackType
from typing import Any

import requests
import urllib3
import urllib3.connection

from oauth_client import strictjson
from oauth_client.conf import oauth_settings
from oauth_client.exceptions import InvalidResponse, TransientProviderError

logger = logging.getLogger("oauth_client.http")

_local = threading.local()
USER_AGENT = "oauth_client/0.1 (+django)"


# --- one hard deadline per attempt ----------------------------------------------------------------------------
#
# requests' timeouts apply to each socket operation, not to the exchange: a server (or gateway, or proxy) that
# sends one byte of its status line, headers (http.client reads them line by line, one recv at a time, over TLS
# one record at a time) or body before every read timeout holds the call for as long as it likes. So every
# attempt runs under a `_Deadline`: a timer that, when the attempt's time is up, shuts the connection's socket
# down, which ends whatever read is blocked on it at once (what urllib3's own `HTTPResponse.shutdown()` does).
# The connection classes below tell the current deadline which connection (and socket) the attempt uses, from
# the TCP connect on: TLS handshake, a proxy's CONNECT answer, request, headers, body. The timeouts themselves
# never exceed what is left, which bounds the TCP connect; only name resolution (getaddrinfo) is out of reach.


def _shutdown(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError):
        pass  # already closed, detached (wrapped in TLS) or never connected


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._done = False
        self._lock = threading.Lock()
        self._connection: urllib3.connection.HTTPConnection | None = None
        self._sockets: list[Any] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.name = "oauth_client.http deadline"
        self._timer.daemon = True

    def watch(self, connection: urllib3.connection.HTTPConnection) -> None:
        """Called by the connection at connect and at every request on it."""
        with self._lock:
            self._connection = connection
            # http.client drops `connection.sock` once a response says "Connection: close", while the body is
            # still read from that socket: keep our own reference.
            sock = connection.sock
            if sock is not None and not any(s is sock for s in self._sockets):
                self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            sockets = [*self._sockets, getattr(self._connection, "sock", None)]
            for sock in sockets:
                if sock is not None:
                    _shutdown(sock)

    def finish(self) -> bool:
        """Stop the timer; True when it had already shut the connection down."""
        with self._lock:
            self._done = True
            self._timer.cancel()
            self._connection = None
            self._sockets.clear()
            return self.expired

    def __enter__(self) -> _Deadline:
        self._timer.start()
        _local.deadline = self
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _local.deadline = None
        self.finish()


def _watch(connection: urllib3.connection.HTTPConnection) -> None:
    deadline: _Deadline | None = getattr(_local, "deadline", None)
    if deadline is not None:
        deadline.watch(connection)


class _HTTPConnection(urllib3.connection.HTTPConnection):
    def connect(self) -> None:
        _watch(self)
        super().connect()
        _watch(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self)
        super().request(*args, **kwargs)


class _HTTPSConnection(urllib3.connection.HTTPSConnection):
    def connect(self) -> None:
        _watch(self)  # the TLS handshake (and a proxy's CONNECT answer) is read from `self.sock` too
        super().connect()
        _watch(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self)
        super().request(*args, **kwargs)


class _HTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS: dict[type, type] = {
    urllib3.HTTPConnectionPool: _HTTPConnectionPool,
    urllib3.HTTPSConnectionPool: _HTTPSConnectionPool,
}


def _use_deadline_pools(manager: urllib3.PoolManager) -> None:
    manager.pool_classes_by_scheme = {
        scheme: _POOLS.get(cls, cls) for scheme, cls in manager.pool_classes_by_scheme.items()
    }


class _ProviderAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, with connections that report to the current attempt's deadline, direct or through
    an HTTP(S) proxy."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _use_deadline_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        _use_deadline_pools(manager)
        return manager


# --- no cookies, no netrc --------------------------------------------------------------------------------------


class _NoAuth(requests.auth.AuthBase):
    """The session's default authentication: adds nothing. requests consults `~/.netrc` (or `$NETRC`) only
    when a request has no authentication at all, and lets it replace an `Authorization` header, so this keeps
    netrc out while leaving `trust_env` (proxies, CA bundle) as it is. A call's own `auth` still wins."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


def session() -> requests.Session:
    """A per-thread pooled session (requests.Session is not documented as thread-safe)."""
    s: requests.Session | None = getattr(_local, "session", None)
    if s is None:
        s = requests.Session()
        s.headers["User-Agent"] = USER_AGENT
        # Refuse every cookie: a provider's (or gateway's) cookies must not travel with calls for other users.
        s.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        s.auth = _NoAuth()
        adapter = _ProviderAdapter()
        s.mount("https://", adapter)
        s.mount("http://", adapter)
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


class _DeadlineExceeded(Exception):
    pass


def _read_limited(response: requests.Response, deadline: _Deadline) -> bytes:
    limit = oauth_settings.HTTP_MAX_RESPONSE_BYTES
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        response.close()
        raise InvalidResponse(f"response too large ({declared} bytes)")
    chunks, size = [], 0
    # A read the deadline interrupts raises (requests.RequestException), so the loop needs no clock of its own.
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > limit:
            response.close()
            raise InvalidResponse("response too large")
        chunks.append(chunk)
    if deadline.finish():
        # A body with a length (Content-Length or chunked) that was read in full is complete, even if the deadline
        # passed a moment later: keep it (it may carry a rotated refresh token). One that ends with the connection
        # looks complete when the deadline shut the socket down.
        framing = response.headers.get("Transfer-Encoding", "").lower()
        delimited = "Content-Length" in response.headers or "chunked" in framing
        if not delimited:
            raise _DeadlineExceeded
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

    Each attempt — connect, TLS, request, status line, headers, body — ends by HTTP_DEADLINE seconds or what
    is left of the budget, whichever comes first, however the provider or a gateway dribbles its answer.

    `idempotent=False` is for calls that must not be repeated once the provider may have acted on them: a
    refresh whose response was lost may already have rotated the token, and sending the old token again
    would look like reuse (theft) to the provider. Those are retried only when the request never left.
    """
    budget_end = time.monotonic() + oauth_settings.HTTP_RETRY_BUDGET
    attempts = 1 + max(0, int(oauth_settings.HTTP_RETRIES))
    connect_timeout, read_timeout = kwargs.pop("timeout", oauth_settings.HTTP_TIMEOUT)
    # Never followed: provider endpoints are exact URLs, and a redirect would be a new exchange (requests would
    # also consult netrc for the new host).
    kwargs["allow_redirects"] = False
    last_error: TransientProviderError | None = None
    for attempt in range(attempts):
        retry_after: float | None = None
        # Every attempt fits in what is left of the budget, so the whole call is bounded.
        remaining = max(0.5, budget_end - time.monotonic())
        seconds = min(float(oauth_settings.HTTP_DEADLINE), remaining)
        timeout = (min(connect_timeout, seconds), min(read_timeout, seconds))
        try:
            with _Deadline(seconds) as deadline:
                with session().request(method, url, stream=True, timeout=timeout, **kwargs) as raw:
                    body = _read_limited(raw, deadline)
                    resp = Response(raw.status_code, raw.headers, body)
        except (requests.RequestException, _DeadlineExceeded) as exc:
            if deadline.expired or isinstance(exc, _DeadlineExceeded):
                last_error = TransientProviderError(f"{what} did not answer within {seconds:.1f}s")
            else:
                last_error = TransientProviderError(f"{what} unreachable ({type(exc).__name__})")
            never_sent = isinstance(exc, requests.RequestException) and _not_sent(exc)
            if not (idempotent or never_sent):
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
        if time.monotonic() + delay >= budget_end:
            break
        logger.info("%s; retrying in %.2fs (attempt %d/%d)", last_error, delay, attempt + 2, attempts)
        time.sleep(delay)
    assert last_error is not None
    raise last_error
