"""Operator console for integrations: API clients (create, reset credentials, scopes, rules,
signing key) and deliveries (the outbox with its attempts and a "retry now" action).

Client secrets are stored hashed and webhook secrets are never shown on the change form: both
appear once, on the page that follows creating a client or resetting its credentials.
"""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from integrations.models import ApiClient, DeliveryAttempt, OutboxMessage
from integrations.outbox import outbox_retry_now
from integrations.partner.credentials import (
    partner_client_create,
    partner_client_credentials_reset,
    public_key_problem,
)
from loyalty.console.scoping import OrganizationScopedAdmin, scope_queryset
from loyalty.models import Organization
from loyalty.services import audit_record
from points.models import PointRule

# "member" is the scope of members' own apps (authorization code + PKCE), never of a client.
CLIENT_SCOPE_EXCLUDED = {"member"}


def _scope_choices() -> list[tuple[str, str]]:
    return [
        (scope, f"{scope}: {description}")
        for scope, description in settings.OAUTH2_PROVIDER.get("SCOPES", {}).items()
        if scope not in CLIENT_SCOPE_EXCLUDED
    ]


def _check_signing(form: forms.BaseForm, cleaned: dict) -> None:
    """Checks of the signing key fields, shared by the create and change forms."""
    pem = (cleaned.get("signing_public_key_pem") or "").strip()
    key_id = (cleaned.get("signing_key_id") or "").strip()
    if pem and (problem := public_key_problem(pem)):
        form.add_error("signing_public_key_pem", problem)
    if pem and not key_id:
        form.add_error("signing_key_id", "A registered key needs the keyId partners send.")
    if '"' in key_id:
        form.add_error("signing_key_id", "The key id may not contain quotes.")
    if cleaned.get("require_signature") and not pem:
        form.add_error("require_signature", "Register the partner's public key first.")


def _check_rules(form: forms.BaseForm, cleaned: dict, organization) -> None:
    """A client may only be allowed rules of its own organisation."""
    if organization is None:
        return
    foreign = [
        rule
        for rule in cleaned.get("rules") or []
        if rule.program.organization_id != organization.pk
    ]
    if foreign:
        form.add_error("rules", f"{foreign[0]} belongs to another organisation.")


class ApiClientCreateForm(forms.Form):
    organization = forms.ModelChoiceField(queryset=Organization.objects.all())
    name = forms.CharField(max_length=200)
    scopes = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, choices=_scope_choices)
    rules = forms.ModelMultipleChoiceField(
        queryset=PointRule.objects.select_related("program__organization"),
        required=False,
        help_text="Seed 001 rules (ruleId) the partner may use.",
    )
    signing_key_id = forms.CharField(max_length=200, required=False, label="Signing key id")
    signing_public_key_pem = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8, "cols": 70}),
        required=False,
        label="Signing public key (PEM)",
        help_text="The partner's RSA public key for signed requests (optional).",
    )
    require_signature = forms.BooleanField(
        required=False, help_text="Refuse unsigned requests from this client."
    )

    def clean(self):
        cleaned = super().clean()
        _check_signing(self, cleaned)
        _check_rules(self, cleaned, cleaned.get("organization"))
        return cleaned


class ApiClientChangeForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, choices=_scope_choices)

    class Meta:
        model = ApiClient
        fields = [
            "name",
            "scopes",
            "active",
            "rules",
            "signing_key_id",
            "signing_public_key_pem",
            "require_signature",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["scopes"] = self.instance.scopes.split()
            self.fields["rules"].queryset = PointRule.objects.filter(
                program__organization_id=self.instance.organization_id
            ).select_related("program__organization")

    def clean_scopes(self):
        return " ".join(sorted(set(self.cleaned_data["scopes"])))

    def clean_signing_public_key_pem(self):
        return self.cleaned_data["signing_public_key_pem"].strip()

    def clean(self):
        cleaned = super().clean()
        _check_signing(self, cleaned)
        _check_rules(self, cleaned, self.instance.organization)
        return cleaned


class ResetCredentialsForm(forms.Form):
    rotate_webhook_secret = forms.BooleanField(
        required=False,
        label="Also make a new webhook secret",
        help_text="Callbacks already queued are still signed with the old one.",
    )


@admin.register(ApiClient)
class ApiClientAdmin(OrganizationScopedAdmin):
    form = ApiClientChangeForm
    list_display = [
        "name",
        "organization",
        "client_id",
        "scopes",
        "active",
        "require_signature",
        "created_at",
    ]
    list_filter = ["active", "organization"]
    search_fields = ["name", "=application__client_id"]
    list_select_related = ["organization", "application"]
    readonly_fields = ["organization", "client_id", "credentials", "created_at"]
    filter_horizontal = ["rules"]
    change_form_template = "admin/integrations/apiclient/change_form.html"

    def get_urls(self):
        return [
            path(
                "<int:client_pk>/reset-credentials/",
                self.admin_site.admin_view(self.reset_credentials_view),
                name="integrations_apiclient_reset_credentials",
            ),
            *super().get_urls(),
        ]

    def has_delete_permission(self, request, obj=None):
        # Requests, callbacks and audit rows point at the client: deactivate it instead.
        return False

    @admin.display(description="client id")
    def client_id(self, obj):
        return obj.application.client_id

    @admin.display(description="credentials")
    def credentials(self, obj):
        url = reverse("admin:integrations_apiclient_reset_credentials", args=[obj.pk])
        return format_html(
            "The client secret is stored hashed and the webhook secret is not shown here. "
            '<a href="{}">Reset credentials</a> to issue new ones.',
            url,
        )

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ApiClientCreateForm(request.POST or None)
        organizations = scope_queryset(Organization.objects.all(), request.user, "")
        form.fields["organization"].queryset = organizations
        form.fields["rules"].queryset = form.fields["rules"].queryset.filter(
            program__organization__in=organizations
        )
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            created = partner_client_create(
                organization=data["organization"],
                name=data["name"],
                scopes=data["scopes"],
                rules=data["rules"],
                signing_key_id=data["signing_key_id"].strip(),
                signing_public_key_pem=data["signing_public_key_pem"],
                require_signature=data["require_signature"],
            )
            self.log_addition(request, created.client, [{"added": {}}])
            audit_record(
                actor=request.user,
                action="credentials created",
                obj=created.client,
                changes={"scopes": (None, " ".join(sorted(data["scopes"])))},
            )
            return self._credentials_page(
                request,
                created.client,
                title=f"API client {created.client.name} created",
                client_secret=created.client_secret,
                webhook_secret=created.client.webhook_secret,
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "Add API client",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/integrations/apiclient/create.html", context)

    def reset_credentials_view(self, request, client_pk):
        client = get_object_or_404(
            self.get_queryset(request).select_related("application"), pk=client_pk
        )
        if not self.has_change_permission(request, client):
            raise PermissionDenied
        form = ResetCredentialsForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            reset = partner_client_credentials_reset(
                client=client, rotate_webhook_secret=form.cleaned_data["rotate_webhook_secret"]
            )
            self.log_change(request, client, [{"changed": {"fields": ["credentials"]}}])
            audit_record(actor=request.user, action="credentials reset", obj=client)
            return self._credentials_page(
                request,
                client,
                title=f"New credentials of {client.name}",
                client_secret=reset.client_secret,
                webhook_secret=reset.webhook_secret,
            )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Reset the credentials of {client.name}",
            "form": form,
            "client": client,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/integrations/apiclient/reset.html", context)

    def _credentials_page(self, request, client, *, title, client_secret, webhook_secret):
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "client": client,
            "client_secret": client_secret,
            "webhook_secret": webhook_secret,
            "token_urls": ["/o/token/", "/realms/partner/protocol/openid-connect/token"],
            "opts": self.model._meta,
        }
        response = TemplateResponse(
            request, "admin/integrations/apiclient/credentials.html", context
        )
        # Secrets must not stay in a browser's or proxy's cache.
        response["Cache-Control"] = "no-store"
        return response


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["number", "started_at", "duration_ms", "status_code", "error", "response_excerpt"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(OutboxMessage)
class OutboxMessageAdmin(OrganizationScopedAdmin):
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
    list_select_related = ["organization"]
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
            audit_record(actor=request.user, action="retry requested", obj=message)
        self.message_user(request, f"Queued {queryset.count()} messages.", messages.SUCCESS)
