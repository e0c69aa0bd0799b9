"""`manage.py oidc_doctor`: check the provider setup line by line, with a fix for every problem."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from oauth_client import diagnostics

SYMBOLS = {diagnostics.OK: "✓", diagnostics.FAIL: "✗", diagnostics.WARN: "!", diagnostics.INFO: "–"}


class Command(BaseCommand):
    help = (
        "Fetch the provider's discovery document and JWKS and check that sign-in and refresh tokens can work "
        "with this configuration. Prints the authorize URL and curl commands (client secret masked). "
        "Exits non-zero when a check fails."
    )
    # The doctor reports oauth_client's system checks itself, instead of refusing to run on an error.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="machine-readable output (for CI)")
        parser.add_argument(
            "--site-url",
            help="the site's public base URL, to show the redirect URI it sends (default: from DEBUG/ALLOWED_HOSTS)",
        )
        parser.add_argument(
            "--no-token-probe",
            action="store_true",
            help="do not check the client credentials with a made-up refresh token at the token endpoint",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        report = diagnostics.run(
            site_url=options.get("site_url"), probe_token_endpoint=not options.get("no_token_probe")
        )
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.print_report(report)
        failures = sum(1 for f in report.findings if f.status == diagnostics.FAIL)
        if failures:
            raise CommandError(f"oidc_doctor: {failures} problem(s) found", returncode=1)

    def print_report(self, report: diagnostics.Report) -> None:
        write = self.stdout.write
        write(f"Provider {report.issuer or '(no issuer)'} · client {report.client_id or '(no client id)'}\n")
        for finding in report.findings:
            line = f"{SYMBOLS[finding.status]} {finding.message}"
            if finding.status == diagnostics.OK:
                write(self.style.SUCCESS(line))
            elif finding.status == diagnostics.FAIL:
                write(self.style.ERROR(line))
            elif finding.status == diagnostics.WARN:
                write(self.style.WARNING(line))
            else:
                write(line)
            if finding.fix and finding.status in (diagnostics.FAIL, diagnostics.WARN):
                write(f"    fix: {finding.fix}")
        if report.authorize_url:
            write("\nAuthorize URL the site sends (open it, sign in; the provider redirects to the redirect URI with")
            write("?code=…; the site will refuse that state, which is expected — copy the code from the address bar):")
            write(f"  {report.authorize_url}")
        if report.curl_code_exchange:
            write("\nExchange the code (quickly: codes expire within minutes, and work once) with this PKCE verifier:")
            write(report.curl_code_exchange)
            write("\nRefresh (the response must contain a refresh_token for the site to keep people signed in):")
            write(report.curl_refresh)
        write("")
        failures = sum(1 for f in report.findings if f.status == diagnostics.FAIL)
        if failures:
            write(self.style.ERROR(f"{failures} problem(s) found."))
        else:
            write(self.style.SUCCESS("No problems found."))
