"""Operator console of the follower mode: the master connection, balance jobs, batches, adjustments.

"Point master connections" (a proxy of PointProgram) is where a program's mode and the master's
URLs are set and its webhook key is generated; a program cannot switch to a follower mode
before its webhook URL and key are set (seed 002's caution). Webhook deliveries themselves are
in the outbox's admin (topic follower.adjustment). Operators see only their organisations' rows
(loyalty.console.scoping).
"""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from integrations.follower.models import (
    BalanceJob,
    FollowerProgram,
    MasterAdjustment,
    TransactionBatch,
)
from integrations.follower.services import program_webhook_key_generate
from integrations.follower_crypto import new_follower_key
from integrations.url_safety import UnsafeURLError, validate_callback_url
from loyalty.console.scoping import OrganizationScopedAdmin
from points import services as point_services
from points.models import ProgramMode


class ReadOnlyAdmin(OrganizationScopedAdmin):
    """Rows written only by services: operators of their organisation look, never edit."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(BalanceJob)
class BalanceJobAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "organization",
        "client",
        "status",
        "item_count",
        "attempts",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "organization"]
    search_fields = ["=id"]
    list_select_related = ["organization", "client"]
    exclude = ["items", "messages"]
    readonly_fields = [
        "id",
        "organization",
        "client",
        "status",
        "attempts",
        "created_at",
        "updated_at",
        "dispatched_at",
        "started_at",
        "finished_at",
        "message_log",
        "item_table",
    ]

    @admin.display(description="items")
    def item_count(self, obj):
        return len(obj.items)

    @admin.display(description="Messages")
    def message_log(self, obj):
        return _table(
            ["time", "message"], [[m.get("timeStamp"), m.get("message")] for m in obj.messages]
        )

    @admin.display(description="Items as received")
    def item_table(self, obj):
        return _table(
            ["#", "contactId", "amount", "definitionId", "timeStamp"],
            [
                [i, it["contactId"], it["amount"], it["definitionId"], it["timeStamp"]]
                for i, it in enumerate(obj.items)
            ],
        )


@admin.register(TransactionBatch)
class TransactionBatchAdmin(ReadOnlyAdmin):
    list_display = ["id", "organization", "client", "item_count", "idempotency_key", "created_at"]
    list_filter = ["organization"]
    search_fields = ["=id", "=idempotency_key"]
    list_select_related = ["organization", "client"]
    readonly_fields = [
        "id",
        "organization",
        "client",
        "idempotency_key",
        "request_hash",
        "item_count",
        "reply",
        "created_at",
    ]


@admin.register(MasterAdjustment)
class MasterAdjustmentAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "member",
        "program",
        "amount",
        "source",
        "actor",
        "delivery",
    ]
    list_filter = ["source", "program"]
    search_fields = ["=id", "member__external_id"]
    list_select_related = ["member", "program__organization", "message"]
    readonly_fields = [
        "id",
        "organization",
        "program",
        "member",
        "amount",
        "description",
        "source",
        "actor",
        "payload",
        "delivery",
        "created_at",
    ]
    exclude = ["message"]

    @admin.display(description="Webhook delivery")
    def delivery(self, obj):
        url = reverse("admin:integrations_outboxmessage_change", args=[obj.message_id])
        return format_html('<a href="{}">{}</a>', url, obj.message.get_status_display())


class FollowerProgramForm(forms.ModelForm):
    generate_key = forms.BooleanField(
        required=False,
        label="Generate a new webhook key",
        help_text=(
            "Makes a new AES-256 key for the adjustment webhook. Give it to the point master "
            "before switching a live program: adjustments are encrypted with it from then on."
        ),
    )

    class Meta:
        model = FollowerProgram
        fields = ["mode", "master_webhook_url", "master_points_log_url"]

    def clean_master_webhook_url(self):
        return self._safe_url("master_webhook_url")

    def clean_master_points_log_url(self):
        return self._safe_url("master_points_log_url")

    def _safe_url(self, name):
        url = self.cleaned_data.get(name, "")
        if url:
            try:
                validate_callback_url(
                    url, allow_insecure=getattr(settings, "LOYALTY_ALLOW_INSECURE_CALLBACKS", False)
                )
            except UnsafeURLError as exc:
                raise forms.ValidationError(f"This URL may not be called: {exc.reason}") from exc
        return url

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("generate_key"):
            self.instance.master_webhook_key = new_follower_key()
        mode = cleaned.get("mode")
        if mode and mode != ProgramMode.MASTER:
            if not cleaned.get("master_webhook_url"):
                self.add_error(
                    "master_webhook_url",
                    "Set the master's webhook URL before switching to a follower mode: "
                    "adjustments made without it would be lost.",
                )
            if not self.instance.master_webhook_key:
                self.add_error(
                    "generate_key",
                    "Generate a webhook key before switching to a follower mode.",
                )
        return cleaned


@admin.register(FollowerProgram)
class FollowerProgramAdmin(OrganizationScopedAdmin):
    form = FollowerProgramForm
    list_display = [
        "key",
        "name",
        "organization",
        "definition_id",
        "mode",
        "master_webhook_url",
        "has_key",
    ]
    list_filter = ["mode", "organization"]
    search_fields = ["key", "name"]
    list_select_related = ["organization"]
    readonly_fields = ["organization", "key", "name", "definition_id", "webhook_key"]
    fields = [
        "organization",
        "key",
        "name",
        "definition_id",
        "mode",
        "master_webhook_url",
        "master_points_log_url",
        "webhook_key",
        "generate_key",
    ]
    actions = ["generate_webhook_key"]

    def has_add_permission(self, request):
        return False  # programs are created under Points; here they get their master connection

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(boolean=True, description="webhook key")
    def has_key(self, obj):
        return bool(obj.master_webhook_key)

    @admin.display(description="Webhook key (give it to the point master)")
    def webhook_key(self, obj):
        return obj.master_webhook_key or "none yet"

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        point_services.program_system_accounts_ensure(program=obj)
        if form.cleaned_data.get("generate_key"):
            self.message_user(
                request,
                f"New webhook key of {obj}: {obj.master_webhook_key} (give it to the point "
                "master).",
                messages.WARNING,
            )

    @admin.action(description="Generate a new webhook key", permissions=["change"])
    def generate_webhook_key(self, request, queryset):
        for program in queryset:
            key = program_webhook_key_generate(program=program)
            self.message_user(
                request,
                f"New webhook key of {program}: {key} (give it to the point master).",
                messages.WARNING,
            )


def _table(headers, rows):
    if not rows:
        return "none"
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows),
    )
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)
