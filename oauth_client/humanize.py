"""Sessions described for people: the device from its User-Agent ("Firefox on Windows") and relative times
("in 3 minutes", "expired 2 hours ago").

The User-Agent parsing is deliberately small: enough for a person to recognise their own devices, not device
analytics. Order matters, because most browsers also claim to be the ones they descend from (Edge says Chrome,
Chrome says Safari).
"""

from __future__ import annotations

import re
from datetime import datetime

from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince, timeuntil
from django.utils.translation import gettext as _

_BROWSERS = (
    (re.compile(r"\bEdg(?:e|A|iOS)?/"), "Edge"),
    (re.compile(r"\bOPR/|\bOpera\b"), "Opera"),
    (re.compile(r"\bSamsungBrowser/"), "Samsung Internet"),
    (re.compile(r"\bFirefox/|\bFxiOS/"), "Firefox"),
    (re.compile(r"\bChrome/|\bCriOS/|\bChromium/"), "Chrome"),
    (re.compile(r"\bVersion/[\d.]+.*\bSafari/"), "Safari"),
    (re.compile(r"^curl/"), "curl"),
    (re.compile(r"^python-requests/"), "Python requests"),
)
_SYSTEMS = (
    (re.compile(r"\b(?:iPhone|iPad|iPod)\b"), "iOS"),
    (re.compile(r"\bAndroid\b"), "Android"),
    (re.compile(r"\bCrOS\b"), "ChromeOS"),
    (re.compile(r"\bWindows\b"), "Windows"),
    (re.compile(r"\bMac OS X\b|\bMacintosh\b"), "macOS"),
    (re.compile(r"\bLinux\b"), "Linux"),
)


def _first(patterns: tuple[tuple[re.Pattern[str], str], ...], text: str) -> str | None:
    for pattern, name in patterns:
        if pattern.search(text):
            return name
    return None


def describe(user_agent: str) -> str:
    """Say "Firefox on Linux", "Safari", "Android", or "Unknown device"."""
    ua = (user_agent or "")[:300]
    browser, system = _first(_BROWSERS, ua), _first(_SYSTEMS, ua)
    if browser and system:
        return _("%(browser)s on %(system)s") % {"browser": browser, "system": system}
    return browser or system or _("Unknown device")


def relative(moment: datetime | None, now: datetime | None = None, *, expiry: bool = False) -> SafeString | str:
    """Say "in 3 minutes" / "expired 2 hours ago" (or "2 hours ago"), with the exact time as a tooltip."""
    if moment is None:
        return "—"
    now = now or timezone.now()
    seconds = (moment - now).total_seconds()
    if seconds >= 60:
        text = _("in %(time)s") % {"time": timeuntil(moment, now, depth=1)}
    elif seconds > 0:
        text = _("in less than a minute")
    elif seconds > -60:
        text = _("expired just now") if expiry else _("just now")
    elif expiry:
        text = _("expired %(time)s ago") % {"time": timesince(moment, now, depth=1)}
    else:
        text = _("%(time)s ago") % {"time": timesince(moment, now, depth=1)}
    exact = date_format(timezone.localtime(moment), "DATETIME_FORMAT")
    return format_html('<time datetime="{}" title="{}">{}</time>', moment.isoformat(), exact, text)
