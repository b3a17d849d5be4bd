"""Operator console for rewards: catalogue, inventory levels, claims, codes, services.

Counters and claim statuses are never edited here: inventories are saved through
`inventory_create` / `inventory_update` (settings only, one conditional UPDATE), claims move
through `claim_set_status` (admin actions), digital codes arrive by CSV import, and a service's
API key is created by a button and shown once. Operators who are not superusers see the rows of
the organisations they operate.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from integrations.webhook_signing import new_webhook_secret
from loyalty.console.scoping import OrganizationScopedAdmin
from loyalty.services import audit_record
from rewards import selectors, services
from rewards.exceptions import RewardsError
from rewards.models import (
    Claim,
    ClaimItem,
    ClaimStatus,
    ClaimStatusChange,
    DigitalCode,
    Inventory,
    Operation,
    RewardBalance,
    RewardGrant,
    RewardsService,
    RewardType,
    StorePurchase,
)

MAX_IMPORT_BYTES = 5 * 1024 * 1024


class OrgScopedAdmin(OrganizationScopedAdmin):
    """Non-superusers see and pick only the organisations they operate (loyalty.console)."""

    organization_path = "org"


class ReadOnlyAdmin(OrgScopedAdmin):
    """Rows written only by services: operators look, never edit or delete."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _org_allowed(request, org_id) -> bool:
    return (
        request.user.is_superuser or request.user.operated_organizations.filter(pk=org_id).exists()
    )


# --- reward types -------------------------------------------------------------------------------


class RewardTypeForm(forms.ModelForm):
    class Meta:
        model = RewardType
        fields = [
            "org",
            "reward_type",
            "display_name",
            "description",
            "active",
            "points_price",
            "fulfilment",
            "webhook_url",
        ]

    def clean_webhook_url(self):
        try:
            return services.check_webhook_url(self.cleaned_data.get("webhook_url") or "")
        except RewardsError as exc:
            raise forms.ValidationError(exc.message) from None


@admin.register(RewardType)
class RewardTypeAdmin(OrgScopedAdmin):
    form = RewardTypeForm
    list_display = [
        "reward_type",
        "display_name",
        "org",
        "active",
        "points_price",
        "fulfilment",
        "free_codes",
    ]
    list_filter = ["active", "fulfilment", "org"]
    search_fields = ["reward_type", "display_name"]
    readonly_fields = ["id", "webhook_secret", "date_created", "date_updated"]
    fields = [
        "id",
        "org",
        "reward_type",
        "display_name",
        "description",
        "active",
        "points_price",
        "fulfilment",
        "webhook_url",
        "webhook_secret",
        "date_created",
        "date_updated",
    ]

    @admin.display(description="free codes")
    def free_codes(self, obj):
        if obj.fulfilment != "code_pool":
            return "-"
        return obj.digital_codes.filter(claim_item__isnull=True).count()

    def get_readonly_fields(self, request, obj=None):
        # The organisation of a reward type is fixed once it has one.
        return [*self.readonly_fields, "org"] if obj is not None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if not obj.webhook_secret:
            obj.webhook_secret = new_webhook_secret()
        super().save_model(request, obj, form, change)

    def delete_model(self, request, obj):
        try:
            services.reward_type_delete(reward_type=obj)
        except RewardsError as exc:
            self.message_user(request, exc.message, messages.ERROR)


# --- inventories ---------------------------------------------------------------------------


class StockLevelFilter(admin.SimpleListFilter):
    title = "stock level"
    parameter_name = "stock"

    def lookups(self, request, model_admin):
        return [
            ("low", "Low (10% or less left to grant)"),
            ("depleted", "Depleted (all of the total granted)"),
            ("ok", "More than 10% left"),
        ]

    def queryset(self, request, queryset):
        if self.value() == "low":
            return selectors.low_stock_inventories(queryset)
        if self.value() == "depleted":
            return selectors.depleted_inventories(queryset)
        if self.value() == "ok":
            low = selectors.low_stock_inventories(queryset).values("pk")
            depleted = selectors.depleted_inventories(queryset).values("pk")
            return queryset.exclude(pk__in=low).exclude(pk__in=depleted)
        return queryset


class InventoryForm(forms.ModelForm):
    class Meta:
        model = Inventory
        fields = [
            "reward_type",
            "in_stock",
            "amount_total",
            "grant_depleted",
            "claim_depleted",
            "description",
        ]

    def clean(self):
        cleaned = super().clean()
        total = cleaned.get("amount_total")
        if self.instance.pk is not None and total is not None:
            if total < self.instance.amount_granted and not cleaned.get("grant_depleted"):
                self.add_error(
                    "amount_total",
                    f"{self.instance.amount_granted} are already granted; allow grants past "
                    "the total (grant_depleted) or raise the total.",
                )
            if total < self.instance.amount_claimed and not cleaned.get("claim_depleted"):
                self.add_error(
                    "amount_total",
                    f"{self.instance.amount_claimed} are already claimed; allow claims past "
                    "the total (claim_depleted) or raise the total.",
                )
        return cleaned


@admin.register(Inventory)
class InventoryAdmin(OrgScopedAdmin):
    form = InventoryForm
    list_display = [
        "reward_type",
        "description",
        "org",
        "in_stock",
        "level",
        "amount_total",
        "amount_granted",
        "amount_claimed",
        "depleted_state",
        "grant_depleted",
        "claim_depleted",
        "date_created",
    ]
    list_filter = [StockLevelFilter, "in_stock", "grant_depleted", "claim_depleted", "org"]
    list_select_related = ["reward_type", "org"]
    search_fields = ["reward_type__reward_type", "description", "=id"]
    readonly_fields = [
        "id",
        "level",
        "amount_granted",
        "amount_claimed",
        "depleted_state",
        "date_created",
        "date_updated",
    ]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return [*self.readonly_fields, "org", "reward_type"]
        return self.readonly_fields

    def get_fields(self, request, obj=None):
        editable = ["in_stock", "amount_total", "grant_depleted", "claim_depleted", "description"]
        if obj is None:
            return ["reward_type", *editable]
        return ["id", "org", "reward_type", *editable, *self.readonly_fields[1:]]

    @admin.display(description="level (granted / claimed of total)")
    def level(self, obj):
        total = max(obj.amount_total, 1)
        granted = min(100, round(100 * obj.amount_granted / total))
        claimed = min(100, round(100 * obj.amount_claimed / total))
        return format_html(
            '<div title="granted {} / claimed {} of {}" style="width:140px">'
            '<div style="background:#eee;height:7px;margin-bottom:2px">'
            '<div style="background:#417690;height:7px;width:{}%"></div></div>'
            '<div style="background:#eee;height:7px">'
            '<div style="background:#79aec8;height:7px;width:{}%"></div></div>'
            "</div>{} / {} of {}",
            obj.amount_granted,
            obj.amount_claimed,
            obj.amount_total,
            granted,
            claimed,
            obj.amount_granted,
            obj.amount_claimed,
            obj.amount_total,
        )

    @admin.display(boolean=True, description="depleted")
    def depleted_state(self, obj):
        return obj.depleted

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data[name] for name in services._INVENTORY_FIELDS}
        try:
            if change:
                changed = {name: fields[name] for name in form.changed_data if name in fields}
                saved = services.inventory_update(inventory=obj, **changed)
            else:
                saved = services.inventory_create(
                    reward_type=form.cleaned_data["reward_type"], **fields
                )
        except RewardsError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        obj.pk = saved.pk
        obj._state.adding = False

    def delete_model(self, request, obj):
        try:
            services.inventory_delete(inventory=obj)
        except RewardsError as exc:
            self.message_user(request, exc.message, messages.ERROR)

    def delete_queryset(self, request, queryset):
        for inventory in queryset:
            self.delete_model(request, inventory)


# --- operations and services ---------------------------------------------------------------------


@admin.register(Operation)
class OperationAdmin(OrgScopedAdmin):
    list_display = ["code", "building_block", "reward_type", "amount", "org", "date_updated"]
    list_filter = ["building_block", "org"]
    list_select_related = ["reward_type", "org"]
    search_fields = ["code", "building_block", "description"]
    readonly_fields = ["id", "date_created", "date_updated"]

    def delete_model(self, request, obj):
        try:
            services.operation_delete(operation=obj)
        except RewardsError as exc:
            self.message_user(request, exc.message, messages.ERROR)


@admin.register(RewardsService)
class RewardsServiceAdmin(OrgScopedAdmin):
    list_display = ["name", "building_block", "org", "active", "key_prefix", "key_created_at"]
    list_filter = ["active", "org"]
    search_fields = ["name", "building_block"]
    readonly_fields = ["id", "key_prefix", "key_created_at", "date_created", "date_updated"]
    change_form_template = "rewards/admin/rewardsservice_change_form.html"

    def get_urls(self):
        return [
            path(
                "<uuid:service_id>/api-key/",
                self.admin_site.admin_view(self.create_api_key_view),
                name="rewards_rewardsservice_api_key",
            ),
            *super().get_urls(),
        ]

    def response_add(self, request, obj, post_url_continue=None):
        self.message_user(
            request, "Service created. Create its API key with the button below.", messages.INFO
        )
        return redirect(reverse("admin:rewards_rewardsservice_change", args=[obj.pk]))

    def create_api_key_view(self, request, service_id):
        service = get_object_or_404(self.get_queryset(request), pk=service_id)
        if not self.has_change_permission(request, service):
            raise PermissionDenied
        if request.method != "POST":
            return redirect(reverse("admin:rewards_rewardsservice_change", args=[service.pk]))
        raw_key = services.rewards_service_key_reset(service=service)
        context = {
            **self.admin_site.each_context(request),
            "title": f"API key of {service}",
            "service": service,
            "api_key": raw_key,
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "rewards/admin/api_key.html", context)
        response["Cache-Control"] = "no-store"
        return response


# --- claims ---------------------------------------------------------------------------------------


class ClaimItemInline(admin.TabularInline):
    model = ClaimItem
    extra = 0
    can_delete = False
    fields = ["reward_type", "inventory", "amount", "overdrawn", "codes_issued"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="codes issued")
    def codes_issued(self, obj):
        return obj.digital_codes.count()


class ClaimStatusChangeInline(admin.TabularInline):
    model = ClaimStatusChange
    extra = 0
    can_delete = False
    fields = ["date_created", "from_status", "to_status", "actor", "note"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Claim)
class ClaimAdmin(OrgScopedAdmin):
    list_display = ["id", "member", "org", "status", "items_summary", "date_created"]
    list_filter = ["status", "org"]
    list_select_related = ["member", "org"]
    search_fields = ["=id", "member__external_id", "member__email"]
    readonly_fields = ["id", "org", "member", "status", "description", "date_created"]
    fields = readonly_fields
    inlines = [ClaimItemInline, ClaimStatusChangeInline]
    actions = ["fulfil_claims", "reject_claims", "cancel_claims"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="items")
    def items_summary(self, obj):
        return ", ".join(f"{item.amount} {item.reward_type}" for item in obj.items.all())

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("items__reward_type")

    def _move(self, request, queryset, status: str, verb: str):
        moved, refused = 0, []
        for claim in queryset:
            try:
                with transaction.atomic():
                    before = claim.status
                    services.claim_set_status(
                        claim=claim, status=status, actor=f"user:{request.user.pk}", note="admin"
                    )
                    audit_record(
                        actor=request.user,
                        action=f"claim {status}",
                        obj=claim,
                        changes={"status": (before, status)},
                    )
                moved += 1
            except RewardsError as exc:
                refused.append(f"{claim.pk}: {exc.message}")
        if moved:
            self.message_user(request, f"{verb} {moved} claims.", messages.SUCCESS)
        for line in refused:
            self.message_user(request, line, messages.ERROR)

    @admin.action(description="Mark the selected claims fulfilled", permissions=["change"])
    def fulfil_claims(self, request, queryset):
        self._move(request, queryset, ClaimStatus.FULFILLED, "Fulfilled")

    @admin.action(
        description="Reject the selected claims (returns the rewards)", permissions=["change"]
    )
    def reject_claims(self, request, queryset):
        self._move(request, queryset, ClaimStatus.REJECTED, "Rejected")

    @admin.action(
        description="Cancel the selected claims (returns the rewards)", permissions=["change"]
    )
    def cancel_claims(self, request, queryset):
        self._move(request, queryset, ClaimStatus.CANCELLED, "Cancelled")


# --- digital codes ------------------------------------------------------------------------------


class CodeImportForm(forms.Form):
    reward_type = forms.ModelChoiceField(queryset=RewardType.objects.none())
    file = forms.FileField(help_text="CSV or text: one code per line (first column); UTF-8.")

    def __init__(self, *args, reward_types, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reward_type"].queryset = reward_types

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_IMPORT_BYTES:
            raise forms.ValidationError(f"The file is larger than {MAX_IMPORT_BYTES} bytes.")
        try:
            return upload.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise forms.ValidationError("The file is not UTF-8 text.") from None


@admin.register(DigitalCode)
class DigitalCodeAdmin(OrgScopedAdmin):
    list_display = ["masked_code", "reward_type", "org", "issued", "date_issued", "date_created"]
    list_filter = ["reward_type", "org"]
    list_select_related = ["reward_type", "org"]
    change_list_template = "rewards/admin/digitalcode_change_list.html"
    readonly_fields = ["masked_code", "reward_type", "org", "claim_item", "date_issued"]
    fields = readonly_fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # An issued code belongs to its holder's claim; only free codes may be withdrawn.
        return obj is None or obj.claim_item_id is None

    def delete_queryset(self, request, queryset):
        queryset.filter(claim_item__isnull=True).delete()

    @admin.display(description="code")
    def masked_code(self, obj):
        return f"…{obj.code[-4:]}" if len(obj.code) > 4 else "…"

    @admin.display(boolean=True)
    def issued(self, obj):
        return obj.claim_item_id is not None

    def get_urls(self):
        return [
            path(
                "import/",
                self.admin_site.admin_view(self.import_view),
                name="rewards_digitalcode_import",
            ),
            *super().get_urls(),
        ]

    def import_view(self, request):
        if not request.user.has_perm("rewards.add_digitalcode"):
            raise PermissionDenied
        reward_types = RewardType.objects.filter(fulfilment="code_pool")
        if not request.user.is_superuser:
            reward_types = reward_types.filter(org__in=request.user.operated_organizations.all())
        form = CodeImportForm(
            request.POST or None, request.FILES or None, reward_types=reward_types
        )
        report = None
        if request.method == "POST" and form.is_valid():
            reward_type = form.cleaned_data["reward_type"]
            if not _org_allowed(request, reward_type.org_id):
                raise PermissionDenied
            report = services.digital_codes_import(
                reward_type=reward_type, lines=form.cleaned_data["file"].splitlines()
            )
            level = messages.SUCCESS if not report.rejected else messages.WARNING
            self.message_user(
                request,
                f"{report.created} codes added, {report.duplicates} duplicates skipped, "
                f"{len(report.rejected)} lines rejected.",
                level,
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "Import digital codes",
            "form": form,
            "report": report,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "rewards/admin/import_codes.html", context)


# --- read-only records ----------------------------------------------------------------------------


@admin.register(RewardGrant)
class RewardGrantAdmin(ReadOnlyAdmin):
    list_display = [
        "date_created",
        "member",
        "reward_type",
        "amount",
        "overdrawn",
        "source",
        "building_block",
        "code",
    ]
    list_filter = ["source", "building_block", "org"]
    list_select_related = ["member", "reward_type"]
    search_fields = ["member__external_id", "code", "=id"]


@admin.register(RewardBalance)
class RewardBalanceAdmin(ReadOnlyAdmin):
    list_display = ["member", "reward_type", "granted", "claimed", "amount", "date_updated"]
    list_filter = ["org", "reward_type"]
    list_select_related = ["member", "reward_type"]
    search_fields = ["member__external_id"]


@admin.register(StorePurchase)
class StorePurchaseAdmin(ReadOnlyAdmin):
    list_display = ["date_created", "member", "reward_type", "quantity", "points", "program"]
    list_filter = ["org", "reward_type"]
    list_select_related = ["member", "reward_type", "program"]
    search_fields = ["member__external_id", "=id"]
