"""Organisations (tenants) and members (customer profiles).

Every domain row belongs to one organisation; every API call is scoped to the organisation of
the authenticated client, so a member's external id only has meaning inside its organisation.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from loyalty.validators import EXTERNAL_ID_MAX_LENGTH, validate_external_id


class Organization(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True, help_text="Also the seed 002 'tenant'.")
    created_at = models.DateTimeField(auto_now_add=True)
    operators = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="operated_organizations",
        help_text="Staff users who run this organisation in the operator console.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Member(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        BLOCKED = "blocked", "Blocked"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="members")
    external_id = models.CharField(
        max_length=EXTERNAL_ID_MAX_LENGTH,
        validators=[validate_external_id],
        help_text="The id partners use for this member (userId, contactId). Never personal data.",
    )
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    email = models.EmailField(blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="memberships",
        help_text="Portal login; one login may be a member of several organisations.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization", "external_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "external_id"], name="member_external_id_unique_per_org"
            ),
            models.UniqueConstraint(
                fields=["organization", "user"],
                condition=Q(user__isnull=False),
                name="member_one_login_per_org",
            ),
            # The last line behind validate_external_id: an e-mail address is never an id.
            models.CheckConstraint(
                condition=~Q(external_id__contains="@"), name="member_external_id_not_email"
            ),
            models.CheckConstraint(condition=~Q(external_id=""), name="member_external_id_set"),
        ]

    def __str__(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return f"{self.external_id} ({name})" if name else self.external_id

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


class AuditEntryQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("The audit trail is append-only.")

    def delete(self):
        raise TypeError("The audit trail is append-only.")


class AuditEntry(models.Model):
    """One operator action that changed state: who, when, what, old and new values.

    Written by the operator console in the same transaction as the change; never edited.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, null=True, blank=True, related_name="audit"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=64, help_text="created, changed, deleted, adjusted, ...")
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    changes = models.JSONField(default=dict, help_text="{field: [old, new]}")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AuditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object_idx")]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.action} {self.object_type} {self.object_repr}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("The audit trail is append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("The audit trail is append-only.")


class ImportJob(models.Model):
    """A CSV import run by a Celery job, with progress and a report of rejected rows."""

    class Kind(models.TextChoices):
        MEMBERS = "members", "Members"
        DIGITAL_CODES = "digital_codes", "Digital codes"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="imports")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    target = models.CharField(
        max_length=100, blank=True, help_text="For codes: the reward type they belong to."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    file_name = models.CharField(max_length=200)
    content = models.TextField(help_text="The uploaded CSV (kept for the report and retries).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    imported_rows = models.PositiveIntegerField(default=0)
    rejected = models.JSONField(default=list, help_text="[{line, reason}]")
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} import {self.file_name} ({self.status})"

    @property
    def progress_percent(self) -> int:
        if not self.total_rows:
            return 100 if self.status == self.Status.DONE else 0
        return int(100 * self.processed_rows / self.total_rows)
