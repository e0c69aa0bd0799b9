"""The site's settings for the test suite: as `make run` uses them (DJANGO_DEBUG on unless the environment says
otherwise). pytest-django still runs the tests themselves with DEBUG off; servers the tests start as separate
processes (gunicorn) get their own environment."""

import os

os.environ.setdefault("DJANGO_DEBUG", "true")

from project.settings import *  # noqa: E402, F403

# A second database for the routing test (tests/test_routing.py), created only when a test asks for it.
DATABASES["other"] = {  # noqa: F405
    **DATABASES["default"],  # noqa: F405
    "TEST": {"NAME": f"test_{DATABASES['default']['NAME']}_other"},  # noqa: F405
}
if DATABASES["other"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    DATABASES["other"]["TEST"] = {"NAME": str(BASE_DIR / "test-other.sqlite3")}  # noqa: F405
