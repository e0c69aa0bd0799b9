"""Behind a TLS-terminating reverse proxy, configured by the environment alone (docs/deployment.md).

Debian's nginx terminates TLS with a certificate made here (a CA of the test's own), in front of two servers of the
demo site under gunicorn sharing the PostgreSQL test database; the embedded provider knows only the https
callback. A browser signs in, has its tokens refreshed and signs out, all over https, through both servers.

The gunicorn servers trust forwarded headers from no address of this machine (FORWARDED_ALLOW_IPS): like a proxy
on another host (a container, a load balancer), so what makes the site see https here is the site's own setting
(DJANGO_SECURE_PROXY_SSL_HEADER), not gunicorn's loopback default. Without the knobs the failure is real: an
http:// redirect URI the provider refuses, and a CSRF 403 on the sign-out POST.

nginx runs as a child of the test (its own configuration, prefix, pid file and logs in a temporary directory,
`daemon off`), never as the system service. Skipped without PostgreSQL or without nginx (.ci/run installs it).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.db import connection

from bench import harness
from oauth_client.models import OAuthSession
from tests.browser import Browser
from tests.conftest import requires_postgres
from tests.helpers import expire_tokens
from tests.provider import EmbeddedProvider, free_port

pytestmark = [pytest.mark.django_db(transaction=True), requires_postgres]

UPSTREAM = "sitebackend"  # nginx's name for the two site servers (the Host header when nginx forwards none)
# Forwarded headers are trusted by gunicorn from this address only (TEST-NET-1: nobody): a proxy on another host.
GUNICORN_FORWARDED_ALLOW_IPS = "192.0.2.1"
NGINX_ACCESS_LOG_FORMAT = "$request_method $uri $status $upstream_addr"


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    # /usr/sbin is not on every user's PATH.
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


# --- a certificate authority and a server certificate, made for this run -----------------------------------------


@dataclass
class Certificates:
    ca: Path  # the CA certificate the browser trusts (requests' `verify`)
    cert: Path
    key: Path


def make_certificates(directory: Path) -> Certificates:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    valid_from, valid_to = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test_reverse_proxy CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    certs = Certificates(ca=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server.key")
    certs.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certs.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certs.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    certs.key.chmod(0o600)
    return certs


# --- nginx ---------------------------------------------------------------------------------------------------------


def nginx_config(
    directory: Path, port: int, upstreams: list[str], certs: Certificates, forward_host_and_scheme: bool
) -> str:
    servers = "\n".join(f"        server {address};" for address in upstreams)
    if forward_host_and_scheme:
        # As docs/deployment.md, except $http_host (host *and* port): the test listens on a port other than 443.
        forwarded = (
            "proxy_set_header Host $http_host;\n"
            "            proxy_set_header X-Forwarded-Proto $scheme;\n"
            "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"
        )
    else:
        # nginx's defaults: Host is the upstream's name, and nothing says the browser used https.
        forwarded = "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"
    # Run as root (CI), nginx would switch its workers to a user who cannot enter the test's private directory.
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
{user}
daemon off;
master_process on;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{ worker_connections 128; }}
http {{
    log_format upstreams '{NGINX_ACCESS_LOG_FORMAT}';
    access_log {directory}/access.log upstreams;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;

    upstream {UPSTREAM} {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name 127.0.0.1 localhost;
        ssl_certificate {certs.cert};
        ssl_certificate_key {certs.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass http://{UPSTREAM};
            {forwarded}
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(
    directory: Path, port: int, upstreams: list[str], certs: Certificates, forward_host_and_scheme: bool
) -> Iterator[Path]:
    """nginx in the foreground, terminating TLS on 127.0.0.1:`port`; yields its access log."""
    binary = nginx_binary()
    assert binary is not None
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(nginx_config(directory, port, upstreams, certs, forward_host_and_scheme))
    command = [binary, "-p", f"{directory}/", "-c", str(conf), "-e", str(directory / "error.log")]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, f"nginx -t:\n{check.stdout}\n{check.stderr}"
    stderr_log = (directory / "stderr.log").open("wb")
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=stderr_log, stderr=subprocess.STDOUT, start_new_session=True
    )

    def logs() -> str:
        return "\n".join(
            f"--- {name}:\n{(directory / name).read_text(errors='replace')[-3000:]}"
            for name in ("stderr.log", "error.log")
            if (directory / name).exists()
        )

    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"https://127.0.0.1:{port}/", verify=str(certs.ca), timeout=5)
                break
            except requests.RequestException as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start ({exc}):\n{logs()}") from None
                time.sleep(0.1)
        yield directory / "access.log"
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGQUIT)  # graceful stop of master and workers
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        stderr_log.close()


# --- the deployment: provider, two site servers, nginx ---------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (Debian's `nginx` package; .ci/run installs it)")
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https_provider(tmp_path_factory: pytest.TempPathFactory, certificates: Certificates) -> Iterator[EmbeddedProvider]:
    """The embedded provider with a client that knows https redirect URIs only (each test registers its own
    port): an http:// callback is refused, as a production provider refuses it."""
    provider = EmbeddedProvider(
        tmp_path_factory.mktemp("idp-https"),
        redirect_uris=["https://127.0.0.1:9/oauth/callback/"],
        post_logout_redirect_uris=["https://127.0.0.1:9/"],
    )
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()


def register_origin(provider: EmbeddedProvider, origin: str) -> None:
    """Add `origin`'s callback and post-logout URIs to the provider's client (same id and secret)."""
    provider.manage(
        "idp_setup",
        "--output",
        str(provider.client_file),
        "--redirect-uri",
        f"{origin}/oauth/callback/",
        "--post-logout-redirect-uri",
        f"{origin}/",
    )


@dataclass
class Deployment:
    url: str  # the public origin, https://127.0.0.1:<nginx port>
    upstreams: list[str]  # host:port of the two site servers
    access_log: Path  # nginx's, one line per request: method, path, status, the upstream that answered

    def upstreams_that_served(self) -> set[str]:
        served = set()
        for line in self.access_log.read_text().splitlines():
            fields = line.split()
            if len(fields) == 4 and fields[3] in self.upstreams:
                served.add(fields[3])
        return served

    def browser(self, ca: Path) -> Browser:
        b = Browser()
        b.verify = str(ca)
        # Otherwise REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment would replace the session's `verify`.
        b.trust_env = False
        return b


@contextlib.contextmanager
def deployment(
    directory: Path,
    provider: EmbeddedProvider,
    certs: Certificates,
    knobs: Callable[[str], dict[str, str]],
    *,
    forward_host_and_scheme: bool = True,
    allowed_hosts: str = "127.0.0.1,localhost",
) -> Iterator[Deployment]:
    """nginx on a free port in front of two gunicorn servers of the demo site on the test database, configured
    by the environment: production defaults plus `knobs(public_origin)`."""
    port = free_port()
    origin = f"https://127.0.0.1:{port}"
    register_origin(provider, origin)
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {
        **harness.site_environment(provider),  # one secret key for both servers: one site
        "DJANGO_SETTINGS_MODULE": "project.settings",  # the demo site as deployed
        "DJANGO_DEBUG": "false",
        "DJANGO_SECURE_COOKIES": "true",
        "DJANGO_ALLOWED_HOSTS": allowed_hosts,
        "FORWARDED_ALLOW_IPS": GUNICORN_FORWARDED_ALLOW_IPS,
        **knobs(origin),
    }
    with (
        harness.gunicorn_site(database_url, env, workers=2) as first,
        harness.gunicorn_site(database_url, env, workers=2) as second,
    ):
        upstreams = [urlsplit(first).netloc, urlsplit(second).netloc]
        with nginx(directory / "nginx", port, upstreams, certs, forward_host_and_scheme) as access_log:
            yield Deployment(url=origin, upstreams=upstreams, access_log=access_log)


def session_record() -> OAuthSession:
    """The one session record, without its token columns: the test process does not hold the site's secret key,
    so it could not decrypt them (the provider's database tells which refresh tokens are alive)."""
    return OAuthSession.objects.defer("access_token", "id_token", "refresh_token").get()


def authorize_redirect_uri(browser: Browser, site_url: str) -> str:
    """The redirect_uri the site puts on the provider's /authorize URL."""
    resp = browser.get(f"{site_url}/oauth/login/", allow_redirects=False, timeout=30)
    assert resp.status_code == 302, resp.status_code
    return parse_qs(urlsplit(resp.headers["Location"]).query)["redirect_uri"][0]


def sign_out(browser: Browser, page: requests.Response, origin: str) -> requests.Response:
    """Submit the page's sign-out form as a browser does: with its CSRF token, Referer and Origin."""
    form = browser.find_form(page, action="/oauth/logout/")
    return browser.post(
        urljoin(page.url, form.action),
        data=form.fields,
        headers={"Referer": page.url, "Origin": origin},
        timeout=30,
    )


def forwarded_knobs(origin: str) -> dict[str, str]:
    """nginx forwards Host and the scheme: the site trusts the scheme header; HSTS on."""
    return {
        "DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO=https",
        "DJANGO_CSRF_TRUSTED_ORIGINS": origin,
        "DJANGO_SECURE_HSTS_SECONDS": "3600",
    }


def fixed_url_knobs(origin: str) -> dict[str, str]:
    """nginx forwards neither Host nor the scheme: the site is told its public URLs instead."""
    return {
        "OIDC_REDIRECT_URI": f"{origin}/oauth/callback/",
        "OIDC_POST_LOGOUT_REDIRECT_URI": f"{origin}/",
        "DJANGO_CSRF_TRUSTED_ORIGINS": origin,
    }


@pytest.mark.parametrize(
    ("knobs", "forward_host_and_scheme", "allowed_hosts"),
    [
        pytest.param(forwarded_knobs, True, "127.0.0.1,localhost", id="proxy-ssl-header"),
        pytest.param(fixed_url_knobs, False, UPSTREAM, id="fixed-urls"),
    ],
)
def test_sign_in_refresh_and_sign_out_over_https_behind_nginx(
    tmp_path, https_provider, certificates, knobs, forward_host_and_scheme, allowed_hosts
):
    provider = https_provider
    with deployment(
        tmp_path,
        provider,
        certificates,
        knobs,
        forward_host_and_scheme=forward_host_and_scheme,
        allowed_hosts=allowed_hosts,
    ) as site:
        browser = site.browser(certificates.ca)

        # Sign-in: the provider is sent the https callback, and accepts it.
        assert authorize_redirect_uri(browser, site.url) == f"{site.url}/oauth/callback/"
        resp = browser.sign_in(site.url, provider.username, provider.password, "/account/")
        assert resp.status_code == 200, resp.text[:2000]
        assert resp.url == f"{site.url}/account/"
        assert provider.username in resp.text
        assert all(c.secure for c in browser.cookies if c.name in ("sessionid", "csrftoken"))
        if forward_host_and_scheme:
            assert resp.headers["Strict-Transport-Security"] == "max-age=3600"
        record = session_record()
        assert record.is_active and record.refresh_count == 0
        issued = provider.count_refresh_tokens()

        # Refresh: the tokens expire, the next page over https refreshes them in place.
        expire_tokens()
        resp = browser.get(f"{site.url}/account/", timeout=30)
        assert resp.status_code == 200 and resp.url == f"{site.url}/account/", resp.url
        record = session_record()
        assert record.is_active and record.refresh_count == 1
        assert provider.count_refresh_tokens() == issued + 1
        assert len(provider.active_refresh_tokens()) == 1

        # Sign-out: the CSRF-protected POST passes, the refresh token is revoked, the provider's session ends and
        # sends the browser back to the https site.
        resp = sign_out(browser, resp, site.url)
        assert resp.status_code == 200, resp.text[:2000]
        end_session = browser.find_form(resp, with_field="id_token_hint")
        assert end_session.fields["post_logout_redirect_uri"] == f"{site.url}/"
        record = session_record()
        assert record.ended_reason == OAuthSession.EndReason.LOGOUT
        assert provider.active_refresh_tokens() == []
        final = browser.submit(resp, end_session)
        assert final.url == f"{site.url}/", final.url
        assert 'href="/oauth/login/"' in final.text
        assert browser.get(f"{site.url}/account/", allow_redirects=False, timeout=30).status_code == 302

        # nginx spread the requests over both servers.
        assert site.upstreams_that_served() == set(site.upstreams)


def test_without_the_knobs_the_redirect_uri_is_http_and_sign_out_is_refused(tmp_path, https_provider, certificates):
    """The same deployment with none of the proxy settings: what the knobs are for."""
    provider = https_provider
    with deployment(tmp_path, provider, certificates, lambda origin: {}) as site:
        browser = site.browser(certificates.ca)
        http_callback = f"http://{urlsplit(site.url).netloc}/oauth/callback/"
        assert authorize_redirect_uri(browser, site.url) == http_callback
        # ... which the provider refuses: the browser never comes back to the site.
        resp = browser.sign_in(site.url, provider.username, provider.password, "/account/")
        assert resp.status_code == 400 and resp.url.startswith(provider.issuer), resp.url
        assert "<code>invalid_request</code>" in resp.text and "redirect" in resp.text.lower(), resp.text[:3000]
        assert not OAuthSession.objects.exists()

        # A sign-out POST with the page's own CSRF token, from the site's own https page, is refused: the site
        # believes it is served over http, so the browser's https Origin is foreign to it.
        home = browser.get(f"{site.url}/", timeout=30)
        form = browser.find_form(home, with_field="csrfmiddlewaretoken")
        resp = browser.post(
            f"{site.url}/oauth/logout/",
            data={"csrfmiddlewaretoken": form.fields["csrfmiddlewaretoken"]},
            headers={"Referer": home.url, "Origin": site.url},
            allow_redirects=False,
            timeout=30,
        )
        assert resp.status_code == 403
