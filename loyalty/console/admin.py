"""Operator console pages on the Django admin: dashboard, audit trail, exports, imports.

Registered from LoyaltyConfig.ready() (after admin autodiscovery), so loyalty/admin.py stays the
home of the organisation and member admins.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from loyalty.console import dashboard as dashboard_selectors
from loyalty.console.exports import EXPORTS, export_response
from loyalty.console.forms import ImportUploadForm, OrganizationPeriodForm
from loyalty.console.scoping import OrganizationScopedAdmin, SuperuserOnlyAdmin, scope_queryset
from loyalty.models import AuditEntry, ImportJob, Organization
from loyalty.services import import_job_create

DASHBOARD_PANELS = []  # callables(organization) -> {"title", "template", ...}; apps add theirs


def register_dashboard_panel(panel):
    DASHBOARD_PANELS.append(panel)
    return panel


# Apps whose rows belong to no single organisation: only superusers run them.
PLATFORM_APPS = {"auth", "oauth2_provider", "django_celery_beat"}


def _restrict_platform_admins() -> None:
    for model, model_admin in list(admin.site._registry.items()):
        if model._meta.app_label in PLATFORM_APPS and not isinstance(
            model_admin, SuperuserOnlyAdmin
        ):
            restricted = type(
                f"SuperuserOnly{type(model_admin).__name__}",
                (SuperuserOnlyAdmin, type(model_admin)),
                {},
            )
            admin.site.unregister(model)
            admin.site.register(model, restricted)


_restrict_platform_admins()


def operator_organizations(request):
    return scope_queryset(Organization.objects.all(), request.user, "")


@admin.register(AuditEntry)
class AuditEntryAdmin(OrganizationScopedAdmin):
    list_display = [
        "created_at",
        "actor_name",
        "action",
        "object_type",
        "object_repr",
        "organization",
    ]
    list_filter = ["action", "object_type", "organization", "created_at"]
    search_fields = ["actor_name", "object_repr", "=object_id"]
    date_hierarchy = "created_at"
    readonly_fields = [field.name for field in AuditEntry._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        return [
            path(
                "dashboard/",
                self.admin_site.admin_view(self.dashboard_view),
                name="console_dashboard",
            ),
            path(
                "export/",
                self.admin_site.admin_view(self.export_view),
                name="console_export",
            ),
            *super().get_urls(),
        ]

    def dashboard_view(self, request):
        organizations = operator_organizations(request)
        organization = organizations.filter(slug=request.GET.get("org")).first() or (
            organizations.first()
        )
        days = 90 if request.GET.get("days") == "90" else 30
        context = {
            **self.admin_site.each_context(request),
            "title": "Dashboard",
            "organizations": organizations,
            "organization": organization,
            "days": days,
        }
        if organization is not None:
            daily = dashboard_selectors.daily_points(organization=organization, days=days)
            context.update(
                {
                    "daily": daily,
                    "series": dashboard_selectors.SERIES,
                    "chart": dashboard_selectors.bar_chart_svg(daily),
                    "holds": dashboard_selectors.open_holds(organization=organization),
                    "deliveries": dashboard_selectors.delivery_health(organization=organization),
                    "panels": [panel(organization) for panel in DASHBOARD_PANELS],
                }
            )
        return TemplateResponse(request, "admin/console/dashboard.html", context)

    def export_view(self, request):
        if not request.user.has_perm("loyalty.view_auditentry") and not request.user.has_perm(
            "points.view_transfer"
        ):
            raise PermissionDenied
        kind = request.GET.get("kind", "transfers")
        form = OrganizationPeriodForm(
            request.GET or None, organizations=operator_organizations(request)
        )
        if kind in EXPORTS and request.GET.get("organization") and form.is_valid():
            return export_response(
                kind=kind,
                organization=form.cleaned_data["organization"],
                since=form.cleaned_data["since"],
                until=form.cleaned_data["until"],
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "Export CSV",
            "form": form,
            "kinds": sorted(EXPORTS),
            "kind": kind,
        }
        return TemplateResponse(request, "admin/console/export.html", context)


@admin.register(ImportJob)
class ImportJobAdmin(OrganizationScopedAdmin):
    list_display = [
        "created_at",
        "kind",
        "file_name",
        "organization",
        "status",
        "progress",
        "imported_rows",
        "rejected_count",
    ]
    list_filter = ["kind", "status", "organization"]
    readonly_fields = [
        "organization",
        "kind",
        "target",
        "file_name",
        "status",
        "progress",
        "total_rows",
        "processed_rows",
        "imported_rows",
        "error",
        "created_by",
        "created_at",
        "finished_at",
    ]
    exclude = ["content", "rejected"]
    change_form_template = "admin/console/importjob_change_form.html"

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="progress")
    def progress(self, obj):
        return f"{obj.progress_percent}% ({obj.processed_rows}/{obj.total_rows})"

    @admin.display(description="rejected")
    def rejected_count(self, obj):
        return len(obj.rejected)

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ImportUploadForm(
            request.POST or None,
            request.FILES or None,
            organizations=operator_organizations(request),
        )
        if request.method == "POST" and form.is_valid():
            file_name, content = form.cleaned_data["file"]
            job = import_job_create(
                organization=form.cleaned_data["organization"],
                kind=form.cleaned_data["kind"],
                target=form.cleaned_data["target"],
                file_name=file_name,
                content=content,
                user=request.user,
            )
            messages.success(request, "The import is queued; this page shows its progress.")
            return redirect(reverse("admin:loyalty_importjob_change", args=[job.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Import a CSV file",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/console/import_upload.html", context)
