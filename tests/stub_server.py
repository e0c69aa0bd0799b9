"""A local HTTP server with fixed answers per path, standing in for a provider we cannot reach here (Auth0,
Google, ...) or for a misbehaving endpoint: fault injection at the network edge. tests/faults.py (the fault and
relay servers) and tests/hostile.py (the hostile provider) build on this one."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass
class Answer:
    status: int = 200
    body: Any = field(default_factory=dict)  # dict/list → JSON; str/bytes as is
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0  # seconds to wait, then close without answering
    reset: bool = False  # close the connection without answering
    drip: float = 0.0  # send the body one byte at a time, pausing this many seconds before each byte
    drip_headers: bool = False  # with `drip`: the status line and headers too
    framed: bool = True  # send Content-Length (False: the body ends when the connection does)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class StubServer:
    """`server.routes["/path"] = Answer(...)` or a callable `(Seen) -> Answer`; other paths get `server.default`
    (404 when None). Every request is recorded in `server.seen`. Use as a context manager, or start() and stop()."""

    def __init__(self) -> None:
        self.routes: dict[str, Answer | Callable[[Seen], Answer]] = {}
        self.default: Answer | Callable[[Seen], Answer] | None = None
        self.seen: list[Seen] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, self.path, dict(self.headers), self.rfile.read(length) if length else b"")
                outer.seen.append(seen)
                route = outer.routes.get(self.path.split("?", 1)[0], outer.default)
                answer = route(seen) if callable(route) else route
                if answer is None:
                    answer = Answer(404, {"error": "not_found"})
                if answer.hang:
                    time.sleep(answer.hang)
                    return
                if answer.reset:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                body = answer.body
                headers = dict(answer.headers)
                if isinstance(body, dict | list):
                    body = json.dumps(body).encode()
                    headers.setdefault("Content-Type", "application/json")
                elif isinstance(body, str):
                    body = body.encode()
                if answer.drip:
                    self._drip(answer, headers, body)
                    return
                if "Date" in headers:
                    # A chosen Date (clock skew tests) replaces the one send_response would add.
                    self.send_response_only(answer.status)
                else:
                    self.send_response(answer.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if answer.framed:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on an oversized answer, as it should

            def _drip(self, answer: Answer, headers: dict[str, str], body: bytes) -> None:
                """A provider or gateway that answers one byte at a time (each byte well within any read
                timeout), until it is done or the client hangs up."""
                reason = self.responses.get(answer.status, ("",))[0]
                lines = [
                    f"{self.protocol_version} {answer.status} {reason}",
                    *(f"{k}: {v}" for k, v in headers.items()),
                ]
                if answer.framed:
                    lines.append(f"Content-Length: {len(body)}")
                head = ("\r\n".join(lines) + "\r\n\r\n").encode()
                try:
                    if not answer.drip_headers:
                        self.wfile.write(head)
                    for byte in head + body if answer.drip_headers else body:
                        time.sleep(answer.drip)
                        self.wfile.write(bytes([byte]))
                except OSError:
                    pass  # the client gave up

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path.split("?", 1)[0] == path]
