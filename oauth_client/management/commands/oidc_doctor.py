"""`manage.py oidc_doctor`: check the provider setup line by line, with a fix for every problem; every configured
provider in turn, or the ones named with --provider."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from oauth_client import diagnostics, providers
from oauth_client.checks import is_named
from oauth_client.exceptions import ConfigurationError

SYMBOLS = {diagnostics.OK: "✓", diagnostics.FAIL: "✗", diagnostics.WARN: "!", diagnostics.INFO: "–"}


class Command(BaseCommand):
    help = (
        "Fetch the provider's discovery document and JWKS and check that sign-in and refresh tokens can work "
        "with this configuration, for every configured provider (or those named with --provider). Prints the "
        "authorize URL and curl commands (client secret masked). Exits non-zero when a check fails."
    )
    # The doctor reports oauth_client's system checks itself, instead of refusing to run on an error.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="machine-readable output (for CI)")
        parser.add_argument(
            "--provider",
            action="append",
            metavar="NAME",
            help="check only this provider (a name in OAUTH_CLIENT['PROVIDERS']; repeat for several; "
            "default: every provider)",
        )
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
        selected = self.selected_providers(options.get("provider") or [])
        reports = [
            diagnostics.run(
                site_url=options.get("site_url"),
                provider=provider,
                probe_token_endpoint=not options.get("no_token_probe"),
            )
            for provider in selected
        ]
        if options["json"]:
            # One provider: its report, as always; several: {"ok": …, "providers": {name: report, …}}.
            if len(reports) == 1:
                data: dict[str, Any] = reports[0].as_dict()
            else:
                data = {
                    "ok": all(report.ok for report in reports),
                    "providers": {report.provider.name: report.as_dict() for report in reports},
                }
            self.stdout.write(json.dumps(data, indent=2))
        else:
            for index, report in enumerate(reports):
                if index:
                    self.stdout.write("")
                self.print_report(report)
        counts = {report.provider.name: self.failures(report) for report in reports}
        failures = sum(counts.values())
        if failures:
            where = ""
            if len(reports) > 1:
                where = " (" + ", ".join(f"{name}: {count}" for name, count in counts.items() if count) + ")"
            raise CommandError(f"oidc_doctor: {failures} problem(s) found{where}", returncode=1)

    @staticmethod
    def selected_providers(names: list[str]) -> list[providers.Provider]:
        try:
            configured = providers.registry()
        except (ConfigurationError, TypeError, ValueError) as exc:
            raise CommandError(
                f"OAUTH_CLIENT['PROVIDERS'] is invalid: {exc} (`manage.py check --tag oauth_client` lists every "
                "problem)"
            ) from exc
        unknown = [name for name in names if name not in configured]
        if unknown:
            raise CommandError(
                f"no provider named {', '.join(repr(n) for n in unknown)}; the configured providers are: "
                f"{', '.join(configured)}"
            )
        if not names:
            return list(configured.values())
        return [configured[name] for name in dict.fromkeys(names)]

    @staticmethod
    def failures(report: diagnostics.Report) -> int:
        return sum(1 for f in report.findings if f.status == diagnostics.FAIL)

    def print_report(self, report: diagnostics.Report) -> None:
        write = self.stdout.write
        issuer, client_id = report.issuer or "(no issuer)", report.client_id or "(no client id)"
        if is_named(report.provider):
            write(f"Provider {report.provider.name}: {issuer} · client {client_id}\n")
        else:
            write(f"Provider {issuer} · client {client_id}\n")
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
        failures = self.failures(report)
        prefix = f"{report.provider.name}: " if is_named(report.provider) else ""
        if failures:
            write(self.style.ERROR(f"{prefix}{failures} problem(s) found."))
        else:
            write(self.style.SUCCESS(f"{prefix}No problems found."))
