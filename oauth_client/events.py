"""The admin's activity summary: sign-ins, refreshes and refresh failures per hour, as a server-side SVG chart."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db.models import Count
from django.db.models.functions import TruncHour
from django.utils import timezone
from django.utils.translation import gettext as _

from oauth_client.models import OAuthEvent, OAuthSession

Kind = OAuthEvent.Kind
# Drawn as bars, in this order within each hour.
CHART_KINDS = (Kind.REFRESH, Kind.REFRESH_FAILED)

# Chart geometry (SVG user units).
WIDTH, HEIGHT = 720, 150
LEFT, BOTTOM, TOP = 36, 22, 10


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str
    label: str


@dataclass
class Activity:
    hours: int
    since: datetime
    active_sessions: int
    totals: dict[str, int]
    buckets: list[tuple[datetime, dict[str, int]]]
    bars: list[Bar] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)
    max_value: int = 0
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = LEFT
    plot_bottom: int = HEIGHT - BOTTOM
    plot_top: int = TOP


def activity(hours: int = 24, now: datetime | None = None) -> Activity:
    """Counts per hour for the last `hours` hours (the current hour included): two queries in all."""
    now = now or timezone.now()
    current_hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    since = current_hour - timedelta(hours=hours - 1)
    rows = (
        OAuthEvent.objects.filter(created_at__gte=since)
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values("hour", "kind")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts: dict[tuple[datetime, str], int] = {}
    for row in rows:
        hour = row["hour"]
        if timezone.is_naive(hour):  # backends without time zone support return naive UTC
            hour = hour.replace(tzinfo=UTC)
        counts[(hour.astimezone(UTC), row["kind"])] = row["n"]
    buckets = [
        (start, {kind: counts.get((start, kind), 0) for kind in Kind.values})
        for start in (since + timedelta(hours=i) for i in range(hours))
    ]
    totals = {kind: sum(c[kind] for _, c in buckets) for kind in Kind.values}
    result = Activity(
        hours=hours,
        since=since,
        active_sessions=OAuthSession.objects.active().count(),
        totals=totals,
        buckets=buckets,
    )
    _lay_out(result)
    return result


def _lay_out(chart: Activity) -> None:
    """Bar rectangles and hour ticks, scaled to the largest hourly count."""
    chart.max_value = max([c[k] for _, c in chart.buckets for k in CHART_KINDS] + [1])
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
