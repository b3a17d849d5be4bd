"""Writes of the core domain: the audit trail and CSV imports."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from loyalty.models import AuditEntry, ImportJob, Member, Organization
from loyalty.validators import external_id_problem

logger = logging.getLogger(__name__)

IMPORT_CHUNK_ROWS = 500
IMPORT_MAX_ROWS = 1_000_000


def _plain(value):
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def audit_record(
    *,
    actor,
    action: str,
    obj,
    changes: dict | None = None,
    organization: Organization | None = None,
) -> AuditEntry:
    """Append what an operator did. Call it inside the transaction that makes the change."""
    if organization is None:
        organization = _organization_of(obj)
    return AuditEntry.objects.create(
        organization=organization,
        actor=actor if getattr(actor, "pk", None) else None,
        actor_name=getattr(actor, "get_username", lambda: str(actor))()[:150],
        action=action[:64],
        object_type=f"{obj._meta.app_label}.{obj._meta.model_name}",
        object_id=str(obj.pk)[:64],
        object_repr=str(obj)[:200],
        changes={
            field: [_plain(old), _plain(new)] for field, (old, new) in (changes or {}).items()
        },
    )


def _organization_of(obj) -> Organization | None:
    """Follow the usual paths from a row to its organisation."""
    if isinstance(obj, Organization):
        return obj
    for path in ("organization", "org", "program", "account", "reward_type", "member", "vendor"):
        target = getattr(obj, path, None)
        if target is None:
            continue
        if isinstance(target, Organization):
            return target
        found = _organization_of(target)
        if found is not None:
            return found
    return None


def model_changes(before, after, fields: list[str]) -> dict:
    """{field: (old, new)} for the fields whose value differs."""
    return {
        name: (getattr(before, name, None), getattr(after, name, None))
        for name in fields
        if getattr(before, name, None) != getattr(after, name, None)
    }


# --- CSV imports ----------------------------------------------------------------------------


def import_job_create(
    *, organization: Organization, kind: str, file_name: str, content: str, user, target: str = ""
) -> ImportJob:
    """Store the upload and queue the job; the worker imports it after commit."""
    job = ImportJob.objects.create(
        organization=organization,
        kind=kind,
        target=target,
        created_by=user,
        file_name=file_name[:200],
        content=content,
    )
    job_id = job.pk

    def dispatch():
        from loyalty.tasks import import_job_run_task

        try:
            import_job_run_task.delay(job_id)
        except Exception:  # broker down: the job stays queued; "run again" re-dispatches it
            logger.warning("import job %s could not be queued", job_id, exc_info=True)

    transaction.on_commit(dispatch)
    return job


RowImporter = Callable[[ImportJob, dict], None]  # raises ValueError(reason) to reject a row


def _import_member_row(job: ImportJob, row: dict) -> None:
    external_id = (row.get("external_id") or "").strip()
    problem = external_id_problem(external_id)
    if problem:
        raise ValueError(f"external_id {problem}")
    email = (row.get("email") or "").strip()
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise ValueError("email is not a valid e-mail address") from None
    Member.objects.update_or_create(
        organization=job.organization,
        external_id=external_id,
        defaults={
            "first_name": (row.get("first_name") or "").strip()[:150],
            "last_name": (row.get("last_name") or "").strip()[:150],
            "email": email,
        },
    )


ROW_IMPORTERS: dict[str, tuple[list[str], RowImporter]] = {
    ImportJob.Kind.MEMBERS: (["external_id"], _import_member_row),
}


def register_row_importer(kind: str, required: list[str], importer: RowImporter) -> None:
    ROW_IMPORTERS[kind] = (required, importer)


def import_job_run(*, job_id: int) -> ImportJob:
    """Import the job's rows in chunks; each good row is saved, each bad one reported by line.

    Safe to run twice: a finished job is left alone, and rows are upserts.
    """
    with transaction.atomic():
        job = ImportJob.objects.select_for_update().get(pk=job_id)
        if job.status in (ImportJob.Status.DONE, ImportJob.Status.FAILED):
            return job
        job.status = ImportJob.Status.RUNNING
        job.save(update_fields=["status"])
    try:
        _import_rows(job)
    except Exception as exc:
        logger.exception("import job %s failed", job.pk)
        ImportJob.objects.filter(pk=job.pk).update(
            status=ImportJob.Status.FAILED, error=str(exc)[:500], finished_at=timezone.now()
        )
    job.refresh_from_db()
    return job


def _import_rows(job: ImportJob) -> None:
    required, importer = ROW_IMPORTERS[job.kind]
    reader = csv.DictReader(io.StringIO(job.content))
    headers = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = headers
    missing = [name for name in required if name not in headers]
    if missing:
        raise ValueError(f"the header row lacks {', '.join(missing)}")
    rows = list(reader)
    if len(rows) > IMPORT_MAX_ROWS:
        raise ValueError(f"at most {IMPORT_MAX_ROWS} rows per file")
    ImportJob.objects.filter(pk=job.pk).update(total_rows=len(rows))
    rejected, imported, seen = list(job.rejected), job.imported_rows, set()
    start = job.processed_rows  # a re-run after a crash goes on where it stopped
    for chunk_start in range(start, len(rows), IMPORT_CHUNK_ROWS):
        chunk = rows[chunk_start : chunk_start + IMPORT_CHUNK_ROWS]
        with transaction.atomic():
            for offset, row in enumerate(chunk):
                line = chunk_start + offset + 2  # the header is line 1
                key = tuple(sorted((k, v) for k, v in row.items() if k))
                if key in seen:
                    rejected.append({"line": line, "reason": "duplicate of an earlier line"})
                    continue
                seen.add(key)
                try:
                    with transaction.atomic():
                        importer(job, {k: v for k, v in row.items() if k})
                    imported += 1
                except (ValueError, ValidationError) as exc:
                    reason = exc.messages[0] if isinstance(exc, ValidationError) else str(exc)
                    rejected.append({"line": line, "reason": reason})
            ImportJob.objects.filter(pk=job.pk).update(
                processed_rows=chunk_start + len(chunk),
                imported_rows=imported,
                rejected=rejected,
            )
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.DONE, finished_at=timezone.now()
    )
