"""`manage.py oidc_client_key`: the client's private_key_jwt key pair.

    manage.py oidc_client_key --out /etc/mysite/client-key.pem       # new EC P-256 key; prints its public JWK
    manage.py oidc_client_key --out key.pem --type rsa               # RSA 3072 instead
    manage.py oidc_client_key --show [--provider NAME]               # the configured keys' public JWK Set
    manage.py oidc_client_key --assertion [--provider NAME]          # a fresh client assertion (60 s), for curl

The private key is written to the file only (mode 0600, never over an existing file) and never printed.
"""

from __future__ import annotations

import json
import os
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from oauth_client import client_auth, discovery, keys, providers
from oauth_client.exceptions import OAuthClientError


class Command(BaseCommand):
    help = (
        "Generate the client's private_key_jwt key pair (the private key to a file, the public JWK printed), show the "
        "configured public keys, or print a fresh client assertion for a manual token request."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--out", metavar="PATH", help="write a new private key (PEM, mode 0600) to PATH")
        action.add_argument("--show", action="store_true", help="print the public JWK Set of the configured keys")
        action.add_argument(
            "--assertion",
            action="store_true",
            help="print a client assertion for the token endpoint, valid for 60 seconds (uses discovery)",
        )
        parser.add_argument("--type", choices=("ec", "rsa"), default="ec", help="key type for --out (default: ec)")
        parser.add_argument("--kid", default="", help="key id for the printed JWK (default: its RFC 7638 thumbprint)")
        parser.add_argument("--provider", default=None, help="the provider's name (with several providers)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["out"]:
            self.generate(options["out"], options["type"], options["kid"])
        elif options["show"]:
            self.show(options["provider"])
        else:
            self.assertion(options["provider"])

    def generate(self, path: str, kind: str, kid: str) -> None:
        key = keys.generate(kind)
        pem = key.export_to_pem(private_key=True, password=None)
        try:
            # O_EXCL: never replace a key a provider may already know.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise CommandError(f"{path} exists; choose another path (keys are never overwritten)") from None
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        loaded = keys.load(path, kid)
        self.stderr.write(f"Private key written to {path} (mode 0600). Keep it out of version control.")
        self.stderr.write(
            "Register the public key below with the provider (or its jwks_uri: https://<your site>/oauth/jwks.json),"
            " then set OIDC_TOKEN_AUTH_METHOD=private_key_jwt and OIDC_CLIENT_KEY_FILE="
            + path
            + (f" and OIDC_CLIENT_KEY_ID={kid}" if kid else "")
            + ". During a rotation, set it as OIDC_CLIENT_KEY_FILE_NEXT first."
        )
        self.stdout.write(json.dumps(loaded.public_jwk(), indent=2))

    def _provider(self, name: str | None) -> providers.Provider:
        try:
            return providers.get(name)
        except LookupError as exc:
            raise CommandError(str(exc)) from None

    def show(self, name: str | None) -> None:
        chosen = [self._provider(name)] if name else list(providers.registry().values())
        try:
            self.stdout.write(json.dumps(keys.published_keys(chosen), indent=2))
        except OAuthClientError as exc:
            raise CommandError(str(exc)) from None

    def assertion(self, name: str | None) -> None:
        provider = self._provider(name)
        try:
            metadata = discovery.get_metadata(provider)
            auth = client_auth.for_provider(provider, metadata)
        except OAuthClientError as exc:
            raise CommandError(str(exc)) from None
        if not isinstance(auth, client_auth.PrivateKeyJWT):
            raise CommandError(f"provider {provider.name!r} does not use private_key_jwt (TOKEN_AUTH_METHOD)")
        self.stdout.write(auth.assertion())
