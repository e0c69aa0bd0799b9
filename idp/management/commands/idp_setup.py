"""Idempotently provision the demo user and the site's confidential OIDC client (run on every start)."""

from __future__ import annotations

import json
import os
import secrets
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from oauth2_provider.models import get_application_model
from oauth2_provider.settings import oauth2_settings


def merge(existing: str, added: list[str]) -> str:
    """Space-separated URI list with `added` appended, order kept, duplicates dropped."""
    return " ".join(dict.fromkeys([*existing.split(), *added]))


def secret_from_output(path: Path | None, client_id: str) -> str | None:
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("client_id") != client_id:
        return None
    secret = data.get("client_secret")
    return secret if isinstance(secret, str) and secret else None


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to a leftover temp file
    os.replace(tmp, path)


class Command(BaseCommand):
    help = "Ensure the demo user and the demo site's OIDC client exist; write the client credentials."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default="demo-password")
        parser.add_argument("--client-id", default="demo-site")
        parser.add_argument("--client-secret", help="default: reuse the one in --output, else generate")
        parser.add_argument("--redirect-uri", action="append", default=[], dest="redirect_uris")
        parser.add_argument("--post-logout-redirect-uri", action="append", default=[], dest="post_logout_redirect_uris")
        parser.add_argument("--skip-authorization", action="store_true", help="no consent screen")
        parser.add_argument("--output", type=Path, help="JSON file for client_id, client_secret, issuer, ...")
        parser.add_argument("--show-secret", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        output: Path | None = options["output"]
        client_id: str = options["client_id"]
        username: str = options["username"]
        password: str = options["password"]
        with transaction.atomic():
            user_created = self.ensure_user(username, password)
            app, app_created, secret = self.ensure_application(options, client_id, output)

        issuer = oauth2_settings.OIDC_ISS_ENDPOINT
        if output is not None:
            if secret is None:  # cannot happen: ensure_application generates one when writing output
                raise CommandError("no client secret to write")
            write_private_json(
                output,
                {
                    "client_id": client_id,
                    "client_secret": secret,
                    "issuer": issuer,
                    "username": username,
                    "password": password,
                },
            )

        self.stdout.write(f"Issuer:        {issuer}")
        self.stdout.write(f"User:          {username} ({'created' if user_created else 'up to date'})")
        self.stdout.write(f"Client:        {client_id} ({'created' if app_created else 'up to date'})")
        self.stdout.write(f"Redirect URIs: {app.redirect_uris or '-'}")
        self.stdout.write(f"Logout URIs:   {app.post_logout_redirect_uris or '-'}")
        if options["show_secret"]:
            self.stdout.write(f"Client secret: {secret if secret is not None else '(unchanged, unknown)'}")
        if output is not None:
            self.stdout.write(f"Credentials:   {output}")

    def ensure_user(self, username: str, password: str) -> bool:
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(
            **{user_model.USERNAME_FIELD: username},
            defaults={"first_name": "Demo", "last_name": "User", "email": "demo@example.com"},
        )
        changed = created
        # check_password first: set_password re-hashes with a fresh salt on every run otherwise.
        if created or not user.check_password(password):
            user.set_password(password)
            changed = True
        if not user.is_active:
            user.is_active = True
            changed = True
        if changed:
            user.save()
        return created

    def ensure_application(
        self, options: dict[str, Any], client_id: str, output: Path | None
    ) -> tuple[Any, bool, str | None]:
        application_model = get_application_model()
        app = application_model.objects.filter(client_id=client_id).first()
        created = app is None
        if app is None:
            app = application_model(client_id=client_id)

        secret: str | None = options["client_secret"] or secret_from_output(output, client_id)
        if secret is None and (created or output is not None):
            # The stored secret is hashed, so a lost plaintext can only be replaced, not recovered.
            secret = secrets.token_urlsafe(32)

        app.name = "Demo site"
        app.client_type = application_model.CLIENT_CONFIDENTIAL
        app.authorization_grant_type = application_model.GRANT_AUTHORIZATION_CODE
        app.algorithm = application_model.RS256_ALGORITHM
        app.skip_authorization = options["skip_authorization"]
        app.redirect_uris = merge(app.redirect_uris, options["redirect_uris"])
        app.post_logout_redirect_uris = merge(app.post_logout_redirect_uris, options["post_logout_redirect_uris"])
        app.hash_client_secret = True
        if secret is not None and (created or not check_password(secret, app.client_secret)):
            app.client_secret = secret  # plaintext: DOT's ClientSecretField hashes it on save
        try:
            app.full_clean()
        except ValidationError as exc:
            raise CommandError(f"Invalid application settings: {exc}") from exc
        app.save()
        return app, created, secret
