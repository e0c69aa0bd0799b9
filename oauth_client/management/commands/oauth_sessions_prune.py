"""`manage.py oauth_sessions_prune`: revoke and remove token records that can no longer be used (see prune.py).

Run it from cron, e.g. every 15 minutes, on any number of hosts at once."""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from oauth_client import prune


class Command(BaseCommand):
    help = (
        "Revoke at the provider and remove token records whose refresh token expired or whose browser session "
        "is gone; delete old ended records, used logout-token ids and events. Safe to run on several hosts at once."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--batch-size", type=int, default=200, help="records per transaction (default 200)")
        parser.add_argument(
            "--keep-ended-days", type=float, default=30, help="keep ended records this long for the admin (default 30)"
        )
        parser.add_argument(
            "--keep-events-days", type=float, default=30, help="keep chart events this long (default 30)"
        )
        parser.add_argument("--dry-run", action="store_true", help="only count what would be done")

    def handle(self, *args: Any, **options: Any) -> None:
        batch_size = options["batch_size"]
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if options["keep_ended_days"] < 0 or options["keep_events_days"] < 0:
            raise CommandError("--keep-ended-days and --keep-events-days cannot be negative")
        keep_ended = timedelta(days=options["keep_ended_days"])
        keep_events = timedelta(days=options["keep_events_days"])
        if options["dry_run"]:
            for name, count in prune.preview(keep_ended=keep_ended, keep_events=keep_events).items():
                self.stdout.write(f"{name}: {count}")
            return
        result = prune.run(batch_size=batch_size, keep_ended=keep_ended, keep_events=keep_events)
        for name, count in vars(result).items():
            self.stdout.write(f"{name}: {count}")
