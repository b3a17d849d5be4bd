"""Operator console for engagement: tiers, tags, events, campaigns, reward stores, activity.

Operators see only their organisations' rows (OrganizationScopedAdmin). Rows that services
write (tier changes, events, progress, completions, the activity log) are read-only here; tier
and tag changes go through the services, so they are validated and recorded like API changes.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from loyalty.console.scoping import OrganizationScopedAdmin, scope_queryset
from loyalty.engagement import services
from loyalty.engagement.exceptions import EngagementError
from loyalty.engagement.models import (
    ActivityEntry,
    Campaign,
    CampaignCompletion,
    CampaignProgress,
    Event,
    EventOperation,
    MemberTag,
    MemberTier,
    RewardStore,
    StoreOffer,
    Tag,
    Tier,
    TierChange,
)


class ReadOnlyScopedAdmin(OrganizationScopedAdmin):
    """Rows written only by services: operators look, never edit or delete."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _actor(request) -> str:
    return f"user:{request.user.pk}"


# --- tiers ---------------------------------------------------------------------------------------


class TierForm(forms.ModelForm):
    class Meta:
        model = Tier
        fields = ["program", "name", "threshold", "basis", "earn_multiplier", "description"]

    def clean(self):
        cleaned = super().clean()
        program, basis = cleaned.get("program"), cleaned.get("basis")
        if program is not None and basis:
            try:
                services.tier_check(program=program, basis=basis, tier_pk=self.instance.pk)
            except EngagementError as exc:
                raise ValidationError(exc.message) from None
        return cleaned


@admin.register(Tier)
class TierAdmin(OrganizationScopedAdmin):
    organization_path = "program__organization"
    form = TierForm
    list_display = ["name", "program", "threshold", "basis", "earn_multiplier"]
    list_filter = ["basis", "program"]
    list_select_related = ["program__organization"]

    def save_model(self, request, obj, form, change):
        services.tier_save(tier=obj)

    def delete_model(self, request, obj):
        services.tier_delete(tier=obj)

    def delete_queryset(self, request, queryset):
        for tier in queryset:
            services.tier_delete(tier=tier)


@admin.register(MemberTier)
class MemberTierAdmin(ReadOnlyScopedAdmin):
    organization_path = "program__organization"
    list_display = ["member", "program", "tier", "qualifying_points", "since"]
    list_filter = ["program", "tier"]
    search_fields = ["=member__external_id"]
    list_select_related = ["member", "program__organization", "tier"]


@admin.register(TierChange)
class TierChangeAdmin(ReadOnlyScopedAdmin):
    organization_path = "program__organization"
    list_display = ["created_at", "member", "program", "from_name", "to_name", "reason"]
    list_filter = ["reason", "program"]
    search_fields = ["=member__external_id"]
    list_select_related = ["member", "program__organization"]
    show_full_result_count = False


# --- tags ----------------------------------------------------------------------------------------


class TagForm(forms.ModelForm):
    class Meta:
        model = Tag
        fields = ["organization", "name", "description"]

    def clean_name(self):
        try:
            return services.tag_name_clean(self.cleaned_data["name"], field="name")
        except EngagementError as exc:
            raise ValidationError(exc.message) from None


@admin.register(Tag)
class TagAdmin(OrganizationScopedAdmin):
    form = TagForm
    list_display = ["name", "organization", "description", "created_at"]
    list_filter = ["organization"]
    search_fields = ["name"]

    def get_readonly_fields(self, request, obj=None):
        # Renaming a tag would silently retag every member who has it.
        return ["name"] if obj is not None else []


class MemberTagForm(forms.ModelForm):
    class Meta:
        model = MemberTag
        fields = ["member", "tag"]

    def clean(self):
        cleaned = super().clean()
        member, tag = cleaned.get("member"), cleaned.get("tag")
        if member is not None and tag is not None and member.organization_id != tag.organization_id:
            raise ValidationError("The tag belongs to another organisation than the member.")
        return cleaned


@admin.register(MemberTag)
class MemberTagAdmin(OrganizationScopedAdmin):
    organization_path = "tag__organization"
    form = MemberTagForm
    list_display = ["member", "tag", "created_at"]
    list_filter = ["tag"]
    search_fields = ["=member__external_id", "tag__name"]
    raw_id_fields = ["member"]
    list_select_related = ["member", "tag__organization"]

    def has_change_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        services.member_tags_add(member=obj.member, names=[obj.tag.name], actor=_actor(request))
        obj.pk = MemberTag.objects.get(member=obj.member, tag=obj.tag).pk

    def delete_model(self, request, obj):
        services.member_tag_remove(member=obj.member, name=obj.tag.name, actor=_actor(request))

    def delete_queryset(self, request, queryset):
        for member_tag in queryset.select_related("member", "tag"):
            self.delete_model(request, member_tag)


# --- events --------------------------------------------------------------------------------------


@admin.register(Event)
class EventAdmin(ReadOnlyScopedAdmin):
    list_display = ["received_at", "name", "member", "client", "occurred_at"]
    list_filter = ["organization", "name"]
    search_fields = ["=member__external_id", "=idempotency_key", "name"]
    list_select_related = ["member", "client"]
    date_hierarchy = "received_at"
    show_full_result_count = False


class EventOperationForm(forms.ModelForm):
    class Meta:
        model = EventOperation
        fields = ["organization", "event_name", "operation", "active"]

    def clean(self):
        cleaned = super().clean()
        organization, operation = cleaned.get("organization"), cleaned.get("operation")
        if organization and operation and operation.org_id != organization.pk:
            self.add_error("operation", "This operation belongs to another organisation.")
        return cleaned


@admin.register(EventOperation)
class EventOperationAdmin(OrganizationScopedAdmin):
    form = EventOperationForm
    list_display = ["event_name", "operation", "active", "organization"]
    list_filter = ["active", "organization"]
    search_fields = ["event_name"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "operation" and not request.user.is_superuser:
            field.queryset = scope_queryset(field.queryset, request.user, "org")
        return field


# --- campaigns -----------------------------------------------------------------------------------


class CampaignForm(forms.ModelForm):
    class Meta:
        model = Campaign
        fields = [
            "organization",
            "key",
            "name",
            "description",
            "active",
            "starts_at",
            "ends_at",
            "opt_in_required",
            "goal_type",
            "goal_event_name",
            "goal_program",
            "goal_target",
            "reward_points",
            "reward_program",
            "reward_type",
            "reward_quantity",
        ]

    def clean(self):
        cleaned = super().clean()
        organization = cleaned.get("organization")
        if organization is None:
            return cleaned
        for name in ("goal_program", "reward_program"):
            program = cleaned.get(name)
            if program is not None and program.organization_id != organization.pk:
                self.add_error(name, "This program belongs to another organisation.")
        reward_type = cleaned.get("reward_type")
        if reward_type is not None and reward_type.org_id != organization.pk:
            self.add_error("reward_type", "This reward type belongs to another organisation.")
        return cleaned


@admin.register(Campaign)
class CampaignAdmin(OrganizationScopedAdmin):
    form = CampaignForm
    list_display = ["name", "key", "organization", "starts_at", "ends_at", "goal_type", "active"]
    list_filter = ["active", "goal_type", "opt_in_required", "organization"]
    search_fields = ["name", "key"]
    prepopulated_fields = {"key": ["name"]}
    fieldsets = [
        (None, {"fields": ["organization", "key", "name", "description", "active"]}),
        ("When and who", {"fields": ["starts_at", "ends_at", "opt_in_required"]}),
        ("Goal", {"fields": ["goal_type", "goal_event_name", "goal_program", "goal_target"]}),
        (
            "Completion reward: points, or a reward type",
            {"fields": ["reward_points", "reward_program", "reward_type", "reward_quantity"]},
        ),
    ]


@admin.register(CampaignProgress)
class CampaignProgressAdmin(ReadOnlyScopedAdmin):
    organization_path = "campaign__organization"
    list_display = ["campaign", "member", "opted_in_at", "progress", "completed_at"]
    list_filter = ["campaign"]
    search_fields = ["=member__external_id"]
    list_select_related = ["campaign", "member"]
    show_full_result_count = False


@admin.register(CampaignCompletion)
class CampaignCompletionAdmin(ReadOnlyScopedAdmin):
    organization_path = "campaign__organization"
    list_display = ["completed_at", "campaign", "member", "rewarded_at", "reward_error"]
    list_filter = ["campaign"]
    search_fields = ["=member__external_id"]
    list_select_related = ["campaign", "member"]
    actions = ["retry_reward"]

    @admin.action(description="Give the reward again where it was refused")
    def retry_reward(self, request, queryset):
        given = 0
        for completion in queryset.filter(rewarded_at__isnull=True):
            completion = services.campaign_reward_retry(
                completion=completion, actor=_actor(request)
            )
            given += completion.rewarded_at is not None
        self.message_user(request, f"{given} reward(s) given.", messages.SUCCESS)


# --- reward stores -------------------------------------------------------------------------------


class StoreOfferFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        organization_id = self.instance.organization_id
        for form in self.forms:
            reward_type = getattr(form, "cleaned_data", {}).get("reward_type")
            if reward_type is not None and reward_type.org_id != organization_id:
                raise ValidationError(
                    f"{reward_type} belongs to another organisation than the store."
                )


class StoreOfferInline(admin.TabularInline):
    model = StoreOffer
    formset = StoreOfferFormSet
    extra = 0
    fields = ["reward_type", "headline", "position", "active", "starts_at", "ends_at"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "reward_type" and not request.user.is_superuser:
            field.queryset = scope_queryset(field.queryset, request.user, "org")
        return field


class RewardStoreForm(forms.ModelForm):
    class Meta:
        model = RewardStore
        fields = ["organization", "key", "name", "description", "program", "active"]

    def clean(self):
        cleaned = super().clean()
        organization, program = cleaned.get("organization"), cleaned.get("program")
        if organization and program and program.organization_id != organization.pk:
            self.add_error("program", "This program belongs to another organisation.")
        return cleaned


@admin.register(RewardStore)
class RewardStoreAdmin(OrganizationScopedAdmin):
    form = RewardStoreForm
    list_display = ["name", "key", "organization", "program", "active"]
    list_filter = ["active", "organization"]
    search_fields = ["name", "key"]
    prepopulated_fields = {"key": ["name"]}
    inlines = [StoreOfferInline]


# --- activity ------------------------------------------------------------------------------------


@admin.register(ActivityEntry)
class ActivityEntryAdmin(ReadOnlyScopedAdmin):
    list_display = ["created_at", "member", "kind", "summary", "actor"]
    list_filter = ["kind", "organization"]
    search_fields = ["=member__external_id"]
    list_select_related = ["member"]
    show_full_result_count = False
