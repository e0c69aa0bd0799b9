"""The demo site's settings, as deployed, plus what the benchmarks need (and nothing else):

- a control view at /bench/plain-profile/ for the throughput comparison (bench/views.py).
"""

from __future__ import annotations

import os

from project.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"

# Warnings only: an INFO line per refresh would cost the load run more than the refresh bookkeeping itself.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"oauth_client": {"handlers": ["console"], "level": os.environ.get("OAUTH_LOG_LEVEL", "WARNING")}},
}
