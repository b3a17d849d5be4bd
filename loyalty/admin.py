"""Operator console for organisations and members, with the "adjust points" flow.

Adjustments are routed by the program's mode (integrations.follower.routing.points_adjust): in a
master program they are ledger entries, in a follower program they go to the point master's
webhook and the balance changes at the master's next sync. A member of an organisation with
follower programs also shows the master's points log, fetched live (seed 002, part 3).
Operators see only the organisations they run (loyalty.console.scoping); superusers see all.
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from integrations.follower.routing import points_adjust
from integrations.follower.selectors import points_log_for
from loyalty.console.scoping import OrganizationScopedAdmin
from loyalty.forms import PointAdjustmentForm
from loyalty.models import Member, Organization
from loyalty.services import audit_record
from points.exceptions import PointsError
from points.models import Hold, HoldStatus, PointAccount, PointProgram, ProgramMode, Transfer

admin.site.site_header = "Loyalty platform: operator console"
admin.site.site_title = "Loyalty operator console"


@admin.register(Organization)
class OrganizationAdmin(OrganizationScopedAdmin):
    organization_path = ""

    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["operators"]


class PointAccountInline(admin.TabularInline):
    model = PointAccount
    extra = 0
    can_delete = False
    fields = ["program", "balance", "held", "pending", "available", "lifetime_earned"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Member)
class MemberAdmin(OrganizationScopedAdmin):
    list_display = ["external_id", "first_name", "last_name", "email", "organization", "status"]
    list_filter = ["organization", "status"]
    search_fields = ["=external_id", "email", "last_name", "=id"]
    list_select_related = ["organization"]
    raw_id_fields = ["user"]
    inlines = [PointAccountInline]
    readonly_fields = [
        "id",
        "created_at",
        "updated_at",
        "open_holds",
        "recent_transfers",
        "master_points_log",
    ]
    change_form_template = "admin/loyalty/member/change_form.html"

    def get_urls(self):
        return [
            path(
                "<uuid:member_id>/adjust-points/",
                self.admin_site.admin_view(self.adjust_points_view),
                name="loyalty_member_adjust_points",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="Open holds")
    def open_holds(self, obj):
        holds = Hold.objects.filter(account__member=obj, status=HoldStatus.HELD).order_by(
            "expires_at"
        )[:20]
        return _rows(
            ["transaction", "owner", "points", "expires"],
            [[h.transaction_id, h.owner, h.amount, h.expires_at] for h in holds],
        )

    @admin.display(description="Recent ledger entries")
    def recent_transfers(self, obj):
        transfers = Transfer.objects.filter(member_account__member=obj).select_related("program")[
            :20
        ]
        return _rows(
            ["#", "when", "program", "kind", "source", "points", "balance after", "reference"],
            [
                [
                    t.pk,
                    t.created_at,
                    t.program.key,
                    t.kind,
                    t.source,
                    t.signed_amount,
                    t.member_balance_after,
                    t.reference,
                ]
                for t in transfers
            ],
        )

    @admin.display(description="Points log from the point master")
    def master_points_log(self, obj):
        if obj is None or obj._state.adding:
            return "-"
        programs = PointProgram.objects.filter(organization_id=obj.organization_id).exclude(
            mode=ProgramMode.MASTER
        )
        parts = []
        for program in programs:
            log = points_log_for(program=program, member=obj)
            if not log.available:
                body = format_html('<p class="errornote">{}</p>', log.error)
            else:
                body = _rows(
                    ["date", "points", "description"],
                    [[e.transaction_date, e.amount, e.description] for e in log.entries],
                )
            parts.append(format_html("<h4>{}</h4>{}", program.name or program.key, body))
        if not parts:
            return "none (no program of this organisation follows a point master)"
        return format_html_join("", "{}", ((part,) for part in parts))

    def adjust_points_view(self, request, member_id):
        member = get_object_or_404(self.get_queryset(request), pk=member_id)
        if not request.user.has_perm("points.add_transfer"):
            raise PermissionDenied
        form = PointAdjustmentForm(request.POST or None, member=member)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                with transaction.atomic():
                    outcome = points_adjust(
                        program=data["program"],
                        member=member,
                        amount=data["amount"],
                        reason=data["reason"],
                        actor_user=request.user,
                    )
                    audit_record(
                        actor=request.user,
                        action="points sent to master" if outcome.sent_to_master else "adjusted",
                        obj=member,
                        changes={
                            "program": (None, data["program"].key),
                            "points": (None, data["amount"]),
                            "reason": (None, data["reason"]),
                            "balance": (
                                None,
                                outcome.transfer.member_balance_after if outcome.transfer else None,
                            ),
                        },
                    )
            except PointsError as exc:
                form.add_error(None, exc.message)
            else:
                if outcome.sent_to_master:
                    self.message_user(
                        request,
                        "Sent to the point master. The balance changes when the master's next "
                        "sync arrives.",
                        messages.SUCCESS,
                    )
                else:
                    self.message_user(request, "Points adjusted.", messages.SUCCESS)
                return redirect(reverse("admin:loyalty_member_change", args=[member.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Adjust points of {member}",
            "member": member,
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/loyalty/member/adjust_points.html", context)


def _rows(headers, rows):
    if not rows:
        return "none"
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows),
    )
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)
