"""A local HTTP server that misbehaves on demand, standing in for a provider endpoint (fault injection
at the network edge; everything else in the tests talks to the real provider)."""

from __future__ import annotations

import socket

from tests.stub_server import Answer, Seen, StubServer


class FaultServer(StubServer):
    """Answers every request according to `mode`: "500", "503" (with Retry-After), "junk", "hang",
    "invalid_grant", "reset" (close the connection), or "ok" (with a fixed JSON body in `body`)."""

    def __init__(self, mode: str = "500", hang_seconds: float = 30.0, retry_after: int = 1) -> None:
        super().__init__()
        self.mode = mode
        self.hang_seconds = hang_seconds
        self.retry_after = retry_after
        self.body: dict[str, object] = {}
        self.default = self._answer
        self.url += "/token"

    @property
    def hits(self) -> int:
        return len(self.seen)

    def _answer(self, seen: Seen) -> Answer:
        mode = self.mode
        if mode == "hang":
            return Answer(hang=self.hang_seconds)
        if mode == "reset":
            return Answer(reset=True)
        if mode == "500":
            return Answer(500, "Internal Server Error", {"Content-Type": "application/json"})
        if mode == "503":
            return Answer(503, {"error": "temporarily_unavailable"}, {"Retry-After": str(self.retry_after)})
        if mode == "junk":
            return Answer(200, "<html>this is not JSON", {"Content-Type": "application/json"})
        if mode == "invalid_grant":
            return Answer(400, {"error": "invalid_grant", "error_description": "revoked"})
        return Answer(200, dict(self.body))


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/token"
