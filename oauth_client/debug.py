"""Error reports that never show a token, also with DEBUG on.

Django hides what `sensitive_variables` and `sensitive_post_parameters` mark only when DEBUG is off: its
`SafeExceptionReporterFilter.is_active` is `not DEBUG`. A developer's technical 500 page against a real provider
still shows real refresh tokens and the client secret (screenshots, pasted tracebacks), so this filter, set as
`DEFAULT_EXCEPTION_REPORTER_FILTER`, hides them always. The rest of the page (other frames' variables, the
request, settings cleansed by name) is Django's as usual.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter


class SensitiveDataFilter(SafeExceptionReporterFilter):
    def is_active(self, request: HttpRequest | None) -> bool:
        return True
