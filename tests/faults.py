"""A small local HTTP server that misbehaves on demand, standing in for a provider endpoint (fault injection
at the network edge; everything else in the tests talks to the real provider)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultServer:
    """Answers every request according to `mode`: "500", "503" (with Retry-After), "junk", "hang",
    "invalid_grant", "reset" (close the connection), or "ok" (with a fixed JSON body in `body`)."""

    def __init__(self, mode: str = "500", hang_seconds: float = 30.0, retry_after: int = 1) -> None:
        self.mode = mode
        self.hang_seconds = hang_seconds
        self.retry_after = retry_after
        self.body: dict[str, object] = {}
        self.hits = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with outer._lock:
                    outer.hits += 1
                mode = outer.mode
                if mode == "hang":
                    time.sleep(outer.hang_seconds)
                    return
                if mode == "reset":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, headers, body = 200, {"Content-Type": "application/json"}, b""
                if mode == "500":
                    status, body = 500, b"Internal Server Error"
                elif mode == "503":
                    status, body = 503, b'{"error": "temporarily_unavailable"}'
                    headers["Retry-After"] = str(outer.retry_after)
                elif mode == "junk":
                    body = b"<html>this is not JSON"
                elif mode == "invalid_grant":
                    status, body = 400, b'{"error": "invalid_grant", "error_description": "revoked"}'
                else:
                    body = json.dumps(outer.body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/token"
