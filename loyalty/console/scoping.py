"""Operators see only their organisations' rows, on every admin page.

Each domain ModelAdmin mixes in OrganizationScopedAdmin and names the ORM path from its model
to the Organization (`organization_path`). Querysets, related-object choices and object look-ups
by URL all go through `scope_queryset`, so a change page of another organisation's row is "not
found" for an operator who does not run that organisation. Superusers see everything.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Model, QuerySet

from loyalty.models import Organization
from loyalty.services import audit_record

# Model -> ORM path to its Organization ("" for Organization itself); filled by the admins.
ORGANIZATION_PATHS: dict[type[Model], str] = {Organization: ""}


def operator_organization_ids(user) -> list:
    if not user.is_authenticated or not user.is_active:
        return []
    return list(user.operated_organizations.values_list("pk", flat=True))


def scope_queryset(queryset: QuerySet, user, path: str) -> QuerySet:
    if user.is_superuser:
        return queryset
    organization_ids = operator_organization_ids(user)
    lookup = f"{path}__in" if path else "pk__in"
    return queryset.filter(**{lookup: organization_ids})


class OrganizationScopedAdmin(admin.ModelAdmin):
    """Scoped to the operator's organisations; every save and delete lands in the audit trail."""

    organization_path = "organization"

    def __init__(self, model, admin_site):
        super().__init__(model, admin_site)
        ORGANIZATION_PATHS[model] = self.organization_path

    def get_queryset(self, request):
        return scope_queryset(super().get_queryset(request), request.user, self.organization_path)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        _limit_choices(field, db_field, request)
        return field

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        _limit_choices(field, db_field, request)
        return field

    def save_model(self, request, obj, form, change):
        # The admin runs this inside the change view's transaction, so the row and its audit
        # entry commit together.
        changes = {
            name: (form.initial.get(name) if change else None, form.cleaned_data.get(name))
            for name in form.changed_data
            if name in form.cleaned_data
        }
        super().save_model(request, obj, form, change)
        audit_record(
            actor=request.user, action="changed" if change else "created", obj=obj, changes=changes
        )

    def delete_model(self, request, obj):
        audit_record(actor=request.user, action="deleted", obj=obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            audit_record(actor=request.user, action="deleted", obj=obj)
        super().delete_queryset(request, queryset)


class OrganizationScopedInline:
    """Inlines show related rows of an already scoped parent; choices are scoped too."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        _limit_choices(field, db_field, request)
        return field


def _limit_choices(field, db_field, request) -> None:
    if field is None or request.user.is_superuser or not hasattr(field, "queryset"):
        return
    path = ORGANIZATION_PATHS.get(db_field.related_model)
    if path is not None:
        field.queryset = scope_queryset(field.queryset, request.user, path)


class SuperuserOnlyAdmin:
    """For rows that belong to no single organisation (schedules, OAuth internals, users)."""

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_add_permission(self, request, *args):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser
