"""WSGI entry point of the embedded provider (`gunicorn idp.wsgi:application`)."""

import os

from django.core.wsgi import get_wsgi_application

# Forced rather than setdefault: a parent process (pytest-django, `make run`) may export the
# site's settings module, and this entry point only ever serves the provider.
os.environ["DJANGO_SETTINGS_MODULE"] = "idp.settings"
application = get_wsgi_application()
