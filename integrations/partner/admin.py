"""Operator console for partner point requests: what each partner asked, what it was told, and
what processing did. Read-only: requests change only through the API and its worker."""

from django.contrib import admin

from integrations.partner.models import PartnerRequest
from loyalty.console.scoping import OrganizationScopedAdmin


@admin.register(PartnerRequest)
class PartnerRequestAdmin(OrganizationScopedAdmin):
    list_display = [
        "request_id",
        "client",
        "user_id",
        "action",
        "amount",
        "point",
        "status",
        "failure_code",
        "created_at",
        "processed_at",
    ]
    list_filter = ["status", "action", "organization", "client"]
    search_fields = ["=request_id", "=user_id", "=rule_ref"]
    list_select_related = ["client__organization"]
    date_hierarchy = "created_at"
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in PartnerRequest._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
