"""Numbers and server-side SVG charts for the operator dashboard (no JavaScript, no CDN)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from integrations.models import OutboxMessage, OutboxStatus
from loyalty.models import Organization
from points.models import AccountKind, Hold, HoldStatus, Transfer

SERIES = [
    ("issued", "Issued", "#1a7f37"),
    ("redeemed", "Redeemed", "#0b5cad"),
    ("expired", "Expired", "#a40e26"),
]


@dataclass
class DailyPoints:
    days: list[dt.date]
    values: dict[str, list[int]]  # series key -> one value per day

    @property
    def totals(self) -> dict[str, int]:
        return {key: sum(values) for key, values in self.values.items()}

    def rows(self):
        for index, day in enumerate(self.days):
            yield day, [self.values[key][index] for key, _, _ in SERIES]


def daily_points(*, organization: Organization, days: int) -> DailyPoints:
    """Points issued, redeemed and expired per day over the last `days` days (UTC)."""
    today = timezone.now().date()
    first = today - dt.timedelta(days=days - 1)
    start = timezone.make_aware(dt.datetime.combine(first, dt.time.min), dt.UTC)
    rows = (
        Transfer.objects.filter(program__organization=organization, created_at__gte=start)
        .annotate(day=TruncDate("created_at", tzinfo=dt.UTC))
        .values("day")
        .annotate(
            issued=Coalesce(Sum("amount", filter=Q(debit_account__kind=AccountKind.ISSUED)), 0),
            redeemed=Coalesce(
                Sum("amount", filter=Q(credit_account__kind=AccountKind.REDEEMED)), 0
            ),
            expired=Coalesce(Sum("amount", filter=Q(credit_account__kind=AccountKind.EXPIRED)), 0),
        )
        .order_by("day")
    )
    by_day = {row["day"]: row for row in rows}
    all_days = [first + dt.timedelta(days=i) for i in range(days)]
    values = {key: [by_day.get(day, {}).get(key, 0) for day in all_days] for key, _, _ in SERIES}
    return DailyPoints(days=all_days, values=values)


@dataclass
class DeliveryHealth:
    delivered: int = 0
    retrying: int = 0
    waiting: int = 0
    dead: int = 0
    by_topic: dict[str, dict[str, int]] = field(default_factory=dict)


def delivery_health(*, organization: Organization) -> DeliveryHealth:
    health = DeliveryHealth()
    rows = (
        OutboxMessage.objects.filter(organization=organization)
        .values("topic", "status")
        .annotate(
            count=Count("id"),
            retrying=Count("id", filter=Q(status=OutboxStatus.PENDING, attempts__gt=0)),
        )
        .order_by()
    )
    topics: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        status = row["status"]
        if status == OutboxStatus.PENDING:
            health.retrying += row["retrying"]
            health.waiting += row["count"] - row["retrying"]
            topics[row["topic"]]["retrying"] += row["retrying"]
            topics[row["topic"]]["waiting"] += row["count"] - row["retrying"]
        else:
            setattr(health, status, getattr(health, status) + row["count"])
            topics[row["topic"]][status] += row["count"]
    health.by_topic = {topic: dict(counts) for topic, counts in topics.items()}
    return health


def open_holds(*, organization: Organization) -> dict[str, int]:
    return Hold.objects.filter(
        program__organization=organization, status=HoldStatus.HELD
    ).aggregate(count=Count("id"), points=Coalesce(Sum("amount"), 0))


def bar_chart_svg(data: DailyPoints, *, width: int = 720, height: int = 220) -> SafeString:
    """Grouped bars per day, with a labelled axis; readable without colour (title per bar)."""
    margin_left, margin_bottom, margin_top = 48, 28, 10
    plot_width = width - margin_left - 8
    plot_height = height - margin_bottom - margin_top
    peak = max([1, *(v for values in data.values.values() for v in values)])
    slot = plot_width / max(1, len(data.days))
    bar = max(1.0, slot / (len(SERIES) + 1))
    bars = []
    for day_index, day in enumerate(data.days):
        for series_index, (key, label, colour) in enumerate(SERIES):
            value = data.values[key][day_index]
            if not value:
                continue
            bar_height = plot_height * value / peak
            x = margin_left + day_index * slot + series_index * bar
            y = margin_top + plot_height - bar_height
            bars.append(
                (
                    f"{x:.1f}",
                    f"{y:.1f}",
                    f"{bar:.1f}",
                    f"{bar_height:.1f}",
                    colour,
                    f"{day.isoformat()} {label.lower()}: {value}",
                )
            )
    ticks = []
    for fraction in (0, 0.5, 1):
        y = margin_top + plot_height * (1 - fraction)
        ticks.append(
            (
                margin_left,
                f"{y:.1f}",
                width - 8,
                margin_left - 6,
                f"{y + 4:.1f}",
                round(peak * fraction),
            )
        )
    labels = []
    step = max(1, len(data.days) // 6)
    for index in range(0, len(data.days), step):
        x = margin_left + index * slot
        labels.append((f"{x:.1f}", height - 8, data.days[index].strftime("%m-%d")))
    return format_html(
        '<svg class="console-chart" role="img" viewBox="0 0 {} {}" width="100%" '
        'aria-label="Points issued, redeemed and expired per day">'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#888"/>{}{}{}</svg>',
        width,
        height,
        margin_left,
        margin_top + plot_height,
        width - 8,
        margin_top + plot_height,
        format_html_join(
            "",
            '<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="#ddd"/>'
            '<text x="{3}" y="{4}" font-size="10" text-anchor="end">{5}</text>',
            ticks,
        ),
        format_html_join(
            "",
            '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>',
            bars,
        ),
        format_html_join("", '<text x="{}" y="{}" font-size="10">{}</text>', labels),
    )
