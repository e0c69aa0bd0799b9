"""A short version of `make load` (bench/load.py): 20 people for 20 seconds against the site under gunicorn
(4 workers, PostgreSQL) and 6-second tokens. What it asserts does not depend on the machine's speed: no error,
nobody signed out, every refresh grant at the provider caused by a token expiry or a sensitive request (and
recorded by the site), no expiry missed or refreshed early, every session's refresh-token family alive."""

from __future__ import annotations

import pytest
from django.db import connection

from bench import harness
from bench.load import run_load
from tests.conftest import requires_postgres

pytestmark = [pytest.mark.django_db(transaction=True), requires_postgres]


def test_twenty_users_twenty_seconds(tmp_path):
    db = connection.settings_dict
    database_url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    provider = harness.start_provider(tmp_path, token_seconds=6)
    try:
        env = harness.site_environment(provider)  # product defaults
        accounts = harness.create_accounts(provider, 5)
        with harness.gunicorn_site(database_url, env, workers=4) as site_url:
            browsers = harness.sign_in_many(site_url, accounts, 20)
            report = run_load(site_url, provider, browsers, duration=20, think=(1.0, 3.0))
    finally:
        provider.stop()

    summary = report.format()
    assert len(report.samples) >= 40 and not report.warmup_failures, summary
    assert not report.errors and not report.logouts and report.sessions_ended == 0, summary
    assert report.profile_refreshes >= 10, summary  # not a vacuous pass: expiries were met
    assert report.provider_grants == report.caused_refreshes == report.site_refreshes, summary
    assert report.expiries_met == report.profile_refreshes and report.missed == 0 and report.premature == 0, summary
    assert report.sensitive_without_refresh == 0 and report.expired_shown == 0, summary
    assert report.live_families == report.sessions == 20, summary
