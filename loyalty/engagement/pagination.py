"""Keyset pagination of the logs and listings: `limit` and an opaque `cursor`, never OFFSET.

A page is "the next `limit` rows with an id below the cursor's", answered from an index on
(owner, -id), so page 500 costs what page 1 costs. The cursor is base64url of `<list>:<id>`:
opaque to clients, validated on the way back in (a cursor of another list, or anything that does
not decode to a positive id, is a 400).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from loyalty.engagement.exceptions import InvalidCursor, InvalidInput

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
_MAX_CURSOR_LENGTH = 100


@dataclass(frozen=True)
class Page:
    results: list
    next_cursor: str | None


def cursor_encode(*, kind: str, last_id: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{last_id}".encode()).decode("ascii").rstrip("=")


def cursor_decode(*, kind: str, cursor: str | None) -> int | None:
    """The id a page starts below, or None for the first page. Raises InvalidCursor."""
    if cursor is None or cursor == "":
        return None
    if len(cursor) > _MAX_CURSOR_LENGTH:
        raise InvalidCursor(field="cursor")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidCursor(field="cursor") from None
    prefix, _, raw_id = decoded.partition(":")
    if prefix != kind or not raw_id.isdigit() or int(raw_id) <= 0:
        raise InvalidCursor(field="cursor")
    return int(raw_id)


def limit_parse(raw: str | None) -> int:
    """`limit`: default 20, at most 100 (larger values are capped, not refused)."""
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidInput("limit: must be a whole number from 1", field="limit")
    return min(int(raw), MAX_LIMIT)


def page_from_rows(rows: list, *, limit: int, kind: str, id_of=lambda row: row.pk) -> Page:
    """`rows` holds up to limit + 1 rows; the extra one only says that a next page exists."""
    if len(rows) > limit:
        rows = rows[:limit]
        return Page(results=rows, next_cursor=cursor_encode(kind=kind, last_id=id_of(rows[-1])))
    return Page(results=rows, next_cursor=None)
