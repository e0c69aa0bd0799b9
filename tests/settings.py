"""The site's settings for the test suite: as `make run` uses them (DJANGO_DEBUG on unless the environment says
otherwise). pytest-django still runs the tests themselves with DEBUG off; servers the tests start as separate
processes (gunicorn) get their own environment."""

import os

os.environ.setdefault("DJANGO_DEBUG", "true")

from project.settings import *  # noqa: E402, F403
