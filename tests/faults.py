"""A local HTTP server that misbehaves on demand, standing in for a provider endpoint (fault injection
at the network edge; everything else in the tests talks to the real provider)."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.stub_server import Answer, Seen, StubServer

# A token response long enough that, one byte every DRIP_SECONDS, it takes far longer than any deadline.
DRIP_BODY = {"access_token": "a" * 200, "token_type": "Bearer", "expires_in": 300}


class FaultServer(StubServer):
    """Answers every request according to `mode`: "500", "503" (with Retry-After), "junk", "hang",
    "invalid_grant", "reset" (close the connection), "drip" (headers at once, then the body one byte every
    `drip_seconds`), "drip_headers" (status line and headers one byte at a time too), "drip_unframed" (like "drip",
    without Content-Length: the body ends with the connection), or "ok" (with a fixed JSON body in `body`)."""

    def __init__(
        self,
        mode: str = "500",
        hang_seconds: float = 30.0,
        retry_after: int = 1,
        drip_seconds: float = 0.1,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        super().__init__()
        if tls is not None:
            serve_tls(self, *tls)
        self.mode = mode
        self.hang_seconds = hang_seconds
        self.retry_after = retry_after
        self.drip_seconds = drip_seconds
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
        if mode in ("drip", "drip_headers", "drip_unframed"):
            body = dict(self.body) or DRIP_BODY
            return Answer(
                200,
                body,
                drip=self.drip_seconds,
                drip_headers=mode == "drip_headers",
                framed=mode != "drip_unframed",
            )
        if mode == "invalid_grant":
            return Answer(400, {"error": "invalid_grant", "error_description": "revoked"})
        return Answer(200, dict(self.body))


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/token"


class RelayServer(StubServer):
    """Forwards every request to `upstream` (a real provider) and its answer back, adding `extra_headers` to
    the answer (e.g. a Set-Cookie). Also works as a plain HTTP forward proxy (absolute-form request targets,
    as `HTTP_PROXY` clients send them): any host is relayed to `upstream`. Every request is in `seen`."""

    def __init__(self, upstream: str, extra_headers: dict[str, str] | None = None) -> None:
        super().__init__()
        self.upstream = urlsplit(upstream)
        self.extra_headers = dict(extra_headers or {})
        self.default = self._relay

    def _relay(self, seen: Seen) -> Answer:
        target = urlsplit(seen.path)
        path = target.path + (f"?{target.query}" if target.query else "")
        headers = {k: v for k, v in seen.headers.items() if k.lower() not in ("host", "connection", "proxy-connection")}
        # http.client, not requests: the relay itself must not go through the proxy it stands for.
        conn = http.client.HTTPConnection(self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=10)
        try:
            conn.request(seen.method, path, body=seen.body or None, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            kept = ("content-type", "cache-control", "pragma", "www-authenticate")
            answer_headers = {k: v for k, v in resp.getheaders() if k.lower() in kept}
            return Answer(resp.status, body, {**answer_headers, **self.extra_headers})
        finally:
            conn.close()


class DripSocketServer:
    """A raw TCP server that sends `data` one byte every `pause` seconds to whoever connects, e.g. the start of
    a TLS record that never ends: an https client reads it during its handshake, one byte per read."""

    # A TLS handshake record header announcing 16 KiB, then the drip: the client waits for the whole record.
    TLS_RECORD = b"\x16\x03\x03\x40\x00" + b"\x02" * 400

    def __init__(self, data: bytes = TLS_RECORD, pause: float = 0.1) -> None:
        self.data = data
        self.pause = pause
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}/token"
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            try:
                for byte in self.data:
                    if self._stop.is_set():
                        return
                    time.sleep(self.pause)
                    conn.sendall(bytes([byte]))
            except OSError:
                pass  # the client gave up

    def __enter__(self) -> DripSocketServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(timeout=2)
        self.listener.close()


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made at test time: (certificate file, which is also the CA bundle; key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def serve_tls(server: StubServer, cert_file: Path, key_file: Path) -> None:
    """Make a (not yet started) stub server answer over https."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    server.url = server.url.replace("http://", "https://", 1)
