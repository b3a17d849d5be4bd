"""Operator console for rewards vendors: settings, "create credentials" (secrets shown once),
their holds, and the platform's SSO signing keys with rotation."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError
from django.db.models import Count, Q, Sum
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from integrations.eai import services
from integrations.eai.models import SigningKey, SsoAlgorithm, Vendor
from integrations.eai.selectors import signing_key_current
from loyalty.console.scoping import OrganizationScopedAdmin, SuperuserOnlyAdmin
from loyalty.services import audit_record
from points.models import Hold, HoldStatus

CREDENTIALS_TEMPLATE = "eai/admin/vendor_credentials.html"


def _holds_url(vendor: Vendor, **filters) -> str:
    query = urlencode({"owner": vendor.hold_owner, **filters})
    return f"{reverse('admin:points_hold_changelist')}?{query}"


@admin.register(Vendor)
class VendorAdmin(OrganizationScopedAdmin):
    list_display = [
        "name",
        "organization",
        "program",
        "active",
        "eai_username",
        "sso_algorithm",
        "sso_method",
        "holds_link",
    ]
    list_filter = ["active", "organization", "sso_algorithm"]
    search_fields = ["name", "=eai_username"]
    list_select_related = ["organization", "program"]
    fieldsets = [
        (None, {"fields": ["organization", "program", "name", "active"]}),
        (
            "EAI API",
            {
                "fields": [
                    "eai_username",
                    "eai_credentials_created_at",
                    "credentials",
                    "ip_allowlist",
                ]
            },
        ),
        (
            "Single sign-on",
            {
                "fields": [
                    "sso_redirect_url",
                    "sso_method",
                    "sso_algorithm",
                    "sso_audience",
                    "sso_token_lifetime_seconds",
                ]
            },
        ),
        ("Holds", {"fields": ["holds_summary"]}),
    ]
    readonly_fields = ["eai_username", "eai_credentials_created_at", "credentials", "holds_summary"]

    def get_urls(self):
        return [
            path(
                "<uuid:object_id>/credentials/",
                self.admin_site.admin_view(self.credentials_view),
                name="eai_vendor_credentials",
            ),
            *super().get_urls(),
        ]

    # --- read-only parts ---

    @admin.display(description="Holds")
    def holds_link(self, obj: Vendor):
        return format_html('<a href="{}">holds</a>', _holds_url(obj))

    @admin.display(description="Credentials")
    def credentials(self, obj: Vendor):
        if obj.pk is None:
            return "A username and secret are created when you save; the secret is shown once."
        return format_html(
            '<a class="button" href="{}">Create new credentials</a>',
            reverse("admin:eai_vendor_credentials", args=[obj.pk]),
        )

    @admin.display(description="Holds of this vendor")
    def holds_summary(self, obj: Vendor):
        if obj.pk is None:
            return "-"
        summary = Hold.objects.filter(owner=obj.hold_owner).aggregate(
            total=Count("pk"),
            open=Count("pk", filter=Q(status=HoldStatus.HELD)),
            open_points=Sum("amount", filter=Q(status=HoldStatus.HELD), default=0),
        )
        return format_html(
            '{} holds, {} open ({} points). <a href="{}">All holds</a> · <a href="{}">Open</a>',
            summary["total"],
            summary["open"],
            summary["open_points"],
            _holds_url(obj),
            _holds_url(obj, status=HoldStatus.HELD),
        )

    # --- saving: secrets made by a save are shown once, right away ---

    def save_model(self, request, obj, form, change):
        obj._secrets_shown_once = services.vendor_save(vendor=obj)
        audit_record(
            actor=request.user,
            action="changed" if change else "created",
            obj=obj,
            changes={
                name: (form.initial.get(name) if change else None, form.cleaned_data.get(name))
                for name in form.changed_data
            },
        )

    def _secrets_page(self, request, secrets: services.VendorSecrets):
        context = {
            **self.admin_site.each_context(request),
            "title": f"Credentials of {secrets.vendor}",
            "opts": self.model._meta,
            "vendor": secrets.vendor,
            "secrets": secrets,
            "change_url": reverse("admin:eai_vendor_change", args=[secrets.vendor.pk]),
        }
        response = TemplateResponse(request, CREDENTIALS_TEMPLATE, context)
        response["Cache-Control"] = "no-store"
        return response

    def _shown_once(self, request, obj, fallback):
        secrets = getattr(obj, "_secrets_shown_once", None)
        if secrets is not None and (secrets.eai_secret or secrets.sso_secret):
            return self._secrets_page(request, secrets)
        return fallback

    def response_add(self, request, obj, post_url_continue=None):
        return self._shown_once(request, obj, super().response_add(request, obj, post_url_continue))

    def response_change(self, request, obj):
        return self._shown_once(request, obj, super().response_change(request, obj))

    def credentials_view(self, request, object_id):
        vendor = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_change_permission(request, vendor):
            raise PermissionDenied
        if request.method == "POST":
            if request.POST.get("which") == "sso":
                if vendor.sso_algorithm != SsoAlgorithm.HS256:
                    messages.error(request, "Only an HS256 vendor has a shared SSO secret.")
                    return redirect(request.path)
                secrets = services.vendor_sso_secret_reset(vendor=vendor)
                audit_record(actor=request.user, action="SSO secret created", obj=vendor)
                return self._secrets_page(request, secrets)
            secrets = services.vendor_credentials_reset(vendor=vendor)
            audit_record(actor=request.user, action="credentials created", obj=vendor)
            return self._secrets_page(request, secrets)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Create new credentials for {vendor}",
            "opts": self.model._meta,
            "vendor": vendor,
            "confirm": True,
            "hs256": vendor.sso_algorithm == SsoAlgorithm.HS256,
            "change_url": reverse("admin:eai_vendor_change", args=[vendor.pk]),
        }
        return TemplateResponse(request, CREDENTIALS_TEMPLATE, context)


@admin.register(SigningKey)
class SigningKeyAdmin(SuperuserOnlyAdmin, admin.ModelAdmin):
    """Platform-wide SSO keys: superusers only."""

    list_display = ["kid", "generation", "state", "created_at", "activates_at", "publish_until"]
    fields = ["kid", "generation", "state", "created_at", "activates_at", "publish_until", "jwk"]
    readonly_fields = fields
    change_list_template = "eai/admin/signingkey_change_list.html"
    actions = ["withdraw"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        return [
            path(
                "rotate/",
                self.admin_site.admin_view(require_POST(self.rotate_view)),
                name="eai_signingkey_rotate",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="State")
    def state(self, obj: SigningKey) -> str:
        now = timezone.now()
        if obj.publish_until is not None and obj.publish_until <= now:
            return "withdrawn or expired: not published"
        if obj.activates_at > now:
            return "published, signs from its activation"
        signer = signing_key_current(now=now)
        if signer is not None and signer.pk == obj.pk:
            return "signing"
        return "superseded: published until its tokens have expired"

    @admin.display(description="Public key (JWK)")
    def jwk(self, obj: SigningKey):
        return format_html("<pre>{}</pre>", obj.public_jwk)

    def rotate_view(self, request):
        if not self.has_change_permission(request):
            raise PermissionDenied
        try:
            key = services.signing_key_rotate()
        except IntegrityError:
            messages.error(request, "Another rotation ran at the same moment; look at the keys.")
        else:
            messages.success(
                request,
                f"New key {key.kid} is published now and signs from "
                f"{key.activates_at:%Y-%m-%d %H:%M:%S %Z}. Older keys stay published until "
                "their tokens have expired.",
            )
        return redirect("admin:eai_signingkey_changelist")

    @admin.action(
        description="Withdraw now (compromised key: its tokens stop verifying)",
        permissions=["change"],
    )
    def withdraw(self, request, queryset):
        for key in queryset:
            services.signing_key_withdraw(key=key)
        self.message_user(request, f"Withdrew {queryset.count()} keys.", messages.WARNING)
