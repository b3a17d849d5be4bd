"""Operator console for the ledger: programs, accounts, lots, read-only transfers, holds, rules."""

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet

from loyalty.console.scoping import OrganizationScopedAdmin
from loyalty.services import audit_record
from points import services
from points.exceptions import PointsError
from points.models import (
    Hold,
    HoldStatus,
    PointAccount,
    PointLot,
    PointProgram,
    PointRule,
    Transfer,
)


class ReadOnlyAdmin(OrganizationScopedAdmin):
    """Rows written only by services: operators look, never edit or delete."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PointProgram)
class PointProgramAdmin(OrganizationScopedAdmin):
    list_display = ["key", "name", "organization", "definition_id", "mode", "hold_ttl_seconds"]
    list_filter = ["mode", "organization"]
    search_fields = ["key", "name"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        services.program_system_accounts_ensure(program=obj)


@admin.register(PointAccount)
class PointAccountAdmin(ReadOnlyAdmin):
    organization_path = "program__organization"
    list_display = ["id", "program", "member", "kind", "balance", "held", "pending", "available"]
    list_filter = ["kind", "program"]
    search_fields = ["member__external_id", "member__email"]
    list_select_related = ["program__organization", "member"]
    raw_id_fields = ["member"]


@admin.register(PointLot)
class PointLotAdmin(ReadOnlyAdmin):
    organization_path = "account__program__organization"
    list_display = ["id", "account", "amount", "remaining", "status", "valid_from", "valid_to"]
    list_filter = ["status"]
    search_fields = ["account__member__external_id", "reference"]
    list_select_related = ["account__program__organization", "account__member"]


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    organization_path = "program__organization"
    list_display = [
        "id",
        "created_at",
        "program",
        "kind",
        "source",
        "member_account",
        "signed_amount",
        "member_balance_after",
        "reference",
        "actor",
    ]
    list_filter = ["kind", "source", "program", "created_at"]
    search_fields = ["=reference", "=actor", "member_account__member__external_id", "description"]
    list_select_related = ["program__organization", "member_account__member"]
    date_hierarchy = "created_at"
    show_full_result_count = False  # a count(*) over millions of rows on every page is wasted


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    organization_path = "program__organization"
    list_display = [
        "transaction_id",
        "owner",
        "account",
        "amount",
        "status",
        "expires_at",
        "created_at",
        "resolved_at",
    ]
    list_filter = ["status", "owner", "program"]
    search_fields = ["=transaction_id", "account__member__external_id"]
    list_select_related = ["account__program__organization", "account__member"]
    actions = ["roll_back"]

    def has_change_permission(self, request, obj=None):
        # Needed for the action; every field stays read-only.
        return request.user.has_perm("points.change_hold")

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Hold._meta.fields]

    @admin.action(description="Roll back the selected open holds", permissions=["change"])
    def roll_back(self, request, queryset: QuerySet):
        rolled_back, refused = 0, []
        for hold in queryset.filter(status=HoldStatus.HELD):
            try:
                with transaction.atomic():
                    services.hold_rollback(
                        owner=hold.owner,
                        transaction_id=hold.transaction_id,
                        actor=f"user:{request.user.pk}",
                    )
                    audit_record(
                        actor=request.user,
                        action="hold rolled back",
                        obj=hold,
                        changes={"status": (HoldStatus.HELD, HoldStatus.ROLLED_BACK)},
                    )
                rolled_back += 1
            except PointsError as exc:
                refused.append(f"{hold.transaction_id}: {exc.message}")
        self.message_user(request, f"Rolled back {rolled_back} holds.", messages.SUCCESS)
        for line in refused:
            self.message_user(request, line, messages.WARNING)


@admin.register(PointRule)
class PointRuleAdmin(OrganizationScopedAdmin):
    organization_path = "program__organization"
    list_display = [
        "name",
        "id",
        "program",
        "kind",
        "active",
        "starts_at",
        "ends_at",
        "max_points_per_request",
        "member_limit",
        "member_limit_period",
        "total_budget",
        "total_used",
    ]
    list_filter = ["kind", "active", "program"]
    search_fields = ["name", "=id"]
    readonly_fields = ["total_used"]
