"""The demo site's settings, as deployed, plus what the benchmarks need (and nothing else):

- BENCH_REFRESH_LEEWAY: the load run uses 10 s token lifetimes, shorter than the product's 60 s default leeway
  (which would refresh on every request);
- a control view at /bench/plain-profile/ for the throughput comparison (bench/views.py).
"""

from __future__ import annotations

import os

from project.settings import *  # noqa: F403
from project.settings import OAUTH_CLIENT

ROOT_URLCONF = "bench.urls"

if os.environ.get("BENCH_REFRESH_LEEWAY"):
    OAUTH_CLIENT = {**OAUTH_CLIENT, "REFRESH_LEEWAY": int(os.environ["BENCH_REFRESH_LEEWAY"])}

# Warnings only: an INFO line per refresh would cost the load run more than the refresh bookkeeping itself.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"oauth_client": {"handlers": ["console"], "level": os.environ.get("OAUTH_LOG_LEVEL", "WARNING")}},
}
