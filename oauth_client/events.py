"""The admin's activity summary: sign-ins, refreshes and refresh failures per hour, as a server-side SVG chart.

With several providers (oauth_client.providers) the chart is drawn once per provider, on one scale: events link to
their session, which knows its provider. With one provider, one chart for all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db.models import Count
from django.db.models.functions import TruncHour
from django.utils import timezone
from django.utils.translation import gettext as _

from oauth_client import providers
from oauth_client.models import OAuthEvent, OAuthSession

Kind = OAuthEvent.Kind
# Drawn as bars, in this order within each hour.
CHART_KINDS = (Kind.REFRESH, Kind.REFRESH_FAILED)

# Chart geometry (SVG user units).
WIDTH, HEIGHT = 720, 150
LEFT, BOTTOM, TOP = 36, 22, 10

# The series of events whose session is gone (pruned) or whose provider is no longer configured.
OTHER = ""

Buckets = list[tuple[datetime, dict[str, int]]]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str
    label: str


@dataclass
class Chart:
    """Hourly counts and their drawing: bar rectangles and hour ticks."""

    totals: dict[str, int]
    buckets: Buckets
    active_sessions: int
    bars: list[Bar] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)
    max_value: int = 0
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = LEFT
    plot_bottom: int = HEIGHT - BOTTOM
    plot_top: int = TOP


@dataclass
class Series(Chart):
    """One provider's chart (`name` is OTHER for events of no configured provider)."""

    name: str = ""
    label: str = ""


@dataclass
class Activity(Chart):
    """All events together; `series` has one chart per provider when the site has several (else it is empty)."""

    hours: int = 24
    since: datetime = field(default_factory=timezone.now)
    series: list[Series] = field(default_factory=list)


def activity(hours: int = 24, now: datetime | None = None) -> Activity:
    """Counts per hour for the last `hours` hours (the current hour included): two queries in all."""
    now = now or timezone.now()
    current_hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    since = current_hour - timedelta(hours=hours - 1)
    starts = [since + timedelta(hours=i) for i in range(hours)]
    several = providers.several()
    configured = providers.registry()

    group = ("hour", "kind", "session__provider") if several else ("hour", "kind")
    rows = (
        OAuthEvent.objects.filter(created_at__gte=since)
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values(*group)
        .annotate(n=Count("id"))
        .order_by()
    )
    # (provider, hour, kind) → count; the provider is OTHER with a single series.
    counts: dict[tuple[str, datetime, str], int] = {}
    for row in rows:
        hour = row["hour"]
        if timezone.is_naive(hour):  # backends without time zone support return naive UTC
            hour = hour.replace(tzinfo=UTC)
        name = row.get("session__provider") or OTHER
        if name not in configured:
            name = OTHER
        key = (name, hour.astimezone(UTC), row["kind"])
        counts[key] = counts.get(key, 0) + row["n"]

    def buckets_of(names: set[str]) -> Buckets:
        return [
            (start, {kind: sum(counts.get((n, start, kind), 0) for n in names) for kind in Kind.values})
            for start in starts
        ]

    def totals_of(buckets: Buckets) -> dict[str, int]:
        return {kind: sum(c[kind] for _, c in buckets) for kind in Kind.values}

    active = OAuthSession.objects.active()
    by_provider: dict[str, int] = {}
    if several:
        for row in active.values("provider").annotate(n=Count("id")).order_by():
            by_provider[row["provider"]] = row["n"]
        active_sessions = sum(by_provider.values())
    else:
        active_sessions = active.count()

    everything = buckets_of({name for name, _, _ in counts} | {OTHER})
    result = Activity(
        hours=hours,
        since=since,
        active_sessions=active_sessions,
        totals=totals_of(everything),
        buckets=everything,
    )
    if several:
        for name, provider in configured.items():
            buckets = buckets_of({name})
            result.series.append(
                Series(
                    name=name,
                    label=provider.label,
                    totals=totals_of(buckets),
                    buckets=buckets,
                    active_sessions=by_provider.get(name, 0),
                )
            )
        if any(name == OTHER for name, _, _ in counts):
            buckets = buckets_of({OTHER})
            result.series.append(
                Series(
                    name=OTHER,
                    label=_("Other providers"),
                    totals=totals_of(buckets),
                    buckets=buckets,
                    active_sessions=sum(n for name, n in by_provider.items() if name not in configured),
                )
            )
    _lay_out(result)
    # The providers' charts on one scale, so that they compare at a glance.
    scale = max([_largest(series) for series in result.series] + [1])
    for series in result.series:
        _lay_out(series, scale)
    return result


def _largest(chart: Chart) -> int:
    return max([c[k] for _, c in chart.buckets for k in CHART_KINDS] + [1])


def _lay_out(chart: Chart, max_value: int | None = None) -> None:
    """Bar rectangles and hour ticks, scaled to `max_value` (default: the largest hourly count of this chart)."""
    chart.max_value = max_value or _largest(chart)
    plot_height = chart.plot_bottom - chart.plot_top
    slot = (chart.width - chart.plot_left) / max(len(chart.buckets), 1)
    bar_width = slot * 0.8 / len(CHART_KINDS)
    names = dict(Kind.choices)
    for i, (start, counts) in enumerate(chart.buckets):
        x0 = chart.plot_left + i * slot + slot * 0.1
        local = timezone.localtime(start)
        for j, kind in enumerate(CHART_KINDS):
            value = counts[kind]
            height = plot_height * value / chart.max_value
            chart.bars.append(
                Bar(
                    x=round(x0 + j * bar_width, 1),
                    y=round(chart.plot_bottom - height, 1),
                    width=round(bar_width, 1),
                    height=round(height, 1),
                    kind=kind,
                    label=_("%(hour)s: %(count)d × %(what)s")
                    % {"hour": local.strftime("%H:00"), "count": value, "what": names[kind]},
                )
            )
        if i % 3 == 0:
            chart.ticks.append((round(chart.plot_left + i * slot + slot / 2, 1), local.strftime("%H:00")))
