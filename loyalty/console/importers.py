"""CSV row importers beyond members: digital codes of a reward type's pool (seed 003)."""

from __future__ import annotations

from loyalty.models import ImportJob
from loyalty.services import register_row_importer
from rewards.models import RewardType
from rewards.services import digital_codes_import


def _import_digital_code_row(job: ImportJob, row: dict) -> None:
    reward_type = RewardType.objects.filter(org=job.organization, reward_type=job.target).first()
    if reward_type is None:
        raise ValueError(f"no reward type {job.target!r} in this organisation (the import target)")
    code = (row.get("code") or "").strip()
    report = digital_codes_import(reward_type=reward_type, lines=[code])
    if report.rejected:
        raise ValueError(f"code {report.rejected[0][1]}")
    if not code:
        raise ValueError("code is empty")
    if report.duplicates:
        raise ValueError("code is already in the pool")


register_row_importer(ImportJob.Kind.DIGITAL_CODES, ["code"], _import_digital_code_row)
