"""Operator console for deliveries: the outbox with its attempts and a "retry now" action."""

from django.contrib import admin, messages

from integrations.models import DeliveryAttempt, OutboxMessage
from integrations.outbox import outbox_retry_now


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["number", "started_at", "duration_ms", "status_code", "error", "response_excerpt"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "topic",
        "organization",
        "url",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
        "delivered_at",
        "last_error",
    ]
    list_filter = ["status", "topic", "organization"]
    search_fields = ["=id", "url"]
    inlines = [DeliveryAttemptInline]
    actions = ["retry_now"]
    exclude = ["signing_secret", "body"]
    readonly_fields = [
        "organization",
        "topic",
        "url",
        "body_text",
        "headers",
        "status",
        "attempts",
        "next_attempt_at",
        "give_up_at",
        "last_error",
        "created_at",
        "delivered_at",
    ]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="body")
    def body_text(self, obj):
        return bytes(obj.body).decode(errors="replace")

    @admin.action(description="Retry the selected messages now", permissions=["change"])
    def retry_now(self, request, queryset):
        for message in queryset:
            outbox_retry_now(message=message)
        self.message_user(request, f"Queued {queryset.count()} messages.", messages.SUCCESS)
