"""Streamed CSV exports: rows are written as they are read, so memory stays flat at any size."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Iterable, Iterator

from django.db.models import QuerySet
from django.http import StreamingHttpResponse

from loyalty.models import Member, Organization
from points.models import Transfer

EXPORT_CHUNK_ROWS = 2000


class _Echo:
    """A file-like object whose write returns the line, for csv.writer inside a generator."""

    def write(self, value: str) -> str:
        return value


def _stream(header: list[str], rows: Iterable[list]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow(row)


def _in_range(queryset: QuerySet, field: str, since: dt.date | None, until: dt.date | None):
    if since:
        queryset = queryset.filter(**{f"{field}__date__gte": since})
    if until:
        queryset = queryset.filter(**{f"{field}__date__lte": until})
    return queryset


def transfer_rows(organization, since, until) -> tuple[list[str], Iterator[list]]:
    queryset = _in_range(
        Transfer.objects.filter(program__organization=organization), "created_at", since, until
    ).order_by("id")
    header = [
        "id",
        "created_at",
        "program",
        "member_external_id",
        "kind",
        "source",
        "points",
        "balance_after",
        "reference",
        "actor",
        "description",
    ]
    values = queryset.values_list(
        "id",
        "created_at",
        "program__key",
        "member_account__member__external_id",
        "kind",
        "source",
        "amount",
        "credit_account_id",
        "member_account_id",
        "member_balance_after",
        "reference",
        "actor",
        "description",
    )

    def rows():
        for (
            pk,
            created,
            program,
            external_id,
            kind,
            source,
            amount,
            credit_id,
            member_account_id,
            balance_after,
            reference,
            actor,
            description,
        ) in values.iterator(chunk_size=EXPORT_CHUNK_ROWS):
            signed = amount if credit_id == member_account_id else -amount
            yield [
                pk,
                created.isoformat(),
                program,
                external_id,
                kind,
                source,
                signed,
                balance_after,
                reference,
                actor,
                description,
            ]

    return header, rows()


def member_rows(organization, since, until) -> tuple[list[str], Iterator[list]]:
    queryset = _in_range(
        Member.objects.filter(organization=organization), "created_at", since, until
    ).order_by("created_at", "id")
    header = ["id", "external_id", "first_name", "last_name", "email", "status", "created_at"]
    values = queryset.values_list(
        "id", "external_id", "first_name", "last_name", "email", "status", "created_at"
    )

    def rows():
        for pk, external_id, first, last, email, status, created in values.iterator(
            chunk_size=EXPORT_CHUNK_ROWS
        ):
            yield [pk, external_id, first, last, email, status, created.isoformat()]

    return header, rows()


EXPORTS: dict[str, Callable] = {"transfers": transfer_rows, "members": member_rows}


def register_export(kind: str, builder: Callable) -> None:
    EXPORTS[kind] = builder


def export_response(
    *, kind: str, organization: Organization, since: dt.date | None, until: dt.date | None
) -> StreamingHttpResponse:
    header, rows = EXPORTS[kind](organization, since, until)
    response = StreamingHttpResponse(_stream(header, rows), content_type="text/csv")
    period = f"{since or 'start'}_{until or 'now'}"
    response["Content-Disposition"] = (
        f'attachment; filename="{organization.slug}-{kind}-{period}.csv"'
    )
    return response
