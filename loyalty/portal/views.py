"""Portal pages. Thin: resolve the member, read through selectors, write through services.

Every page is for the signed-in member only: queries start from `request.member`, so one member
can never reach another's data.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import F
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from loyalty.engagement.selectors import MemberTierStatus, member_tiers_get
from loyalty.portal.decorators import member_required
from loyalty.portal.forms import HistoryFilterForm, ProfileForm
from loyalty.selectors import SESSION_MEMBER_KEY, memberships_for_user
from points.models import PointProgram
from points.selectors import (
    Balance,
    balance_get,
    points_expiring_soon,
    transfers_for_member,
)

HISTORY_PAGE_SIZE = 25


@dataclass(frozen=True)
class ProgramSummary:
    program: PointProgram
    balance: Balance
    expiring_soon: int
    tier: MemberTierStatus | None = None


def _programs(member) -> list[PointProgram]:
    return list(PointProgram.objects.filter(organization_id=member.organization_id))


@member_required
def dashboard(request):
    member = request.member
    tiers = {status.program_key: status for status in member_tiers_get(member=member)}
    summaries = [
        ProgramSummary(
            program=program,
            balance=balance_get(program=program, member=member),
            expiring_soon=points_expiring_soon(program=program, member=member),
            tier=tiers.get(program.key),
        )
        for program in _programs(member)
    ]
    recent = transfers_for_member(member=member).select_related("program")[:8]
    return render(
        request,
        "portal/dashboard.html",
        {"member": member, "summaries": summaries, "recent": recent},
    )


@member_required
def history(request):
    member = request.member
    programs = _programs(member)
    form = HistoryFilterForm(request.GET or None, programs=programs)
    transfers = transfers_for_member(member=member).select_related("program")
    if form.is_valid():
        data = form.cleaned_data
        if data["program"]:
            transfers = transfers.filter(program__key=data["program"])
        if data["direction"] == "credit":
            transfers = transfers.filter(credit_account=F("member_account"))
        elif data["direction"] == "debit":
            transfers = transfers.filter(debit_account=F("member_account"))
        if data["since"]:
            transfers = transfers.filter(created_at__date__gte=data["since"])
        if data["until"]:
            transfers = transfers.filter(created_at__date__lte=data["until"])
    page = Paginator(transfers, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "portal/history.html",
        {"member": member, "form": form, "page": page, "query": query.urlencode()},
    )


@member_required
@require_http_methods(["GET", "POST"])
def profile(request):
    member = request.member
    form = ProfileForm(request.POST or None, instance=member)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Your profile was saved.")
        return redirect("portal:profile")
    return render(request, "portal/profile.html", {"member": member, "form": form})


@login_required
@require_http_methods(["GET", "POST"])
def choose_organization(request):
    memberships = memberships_for_user(request.user)
    if request.method == "POST":
        chosen = request.POST.get("member")
        if any(str(m.pk) == chosen for m in memberships):
            request.session[SESSION_MEMBER_KEY] = chosen
            return redirect("portal:dashboard")
        messages.error(request, "Choose one of your programs.")
    return render(request, "portal/choose_organization.html", {"memberships": memberships})


@login_required
def no_membership(request):
    return render(request, "portal/no_membership.html", status=403)


def csrf_failure(request, reason=""):
    """A form sent without a valid CSRF token (an old page, an expired session): say so."""
    return render(request, "portal/csrf_failure.html", {"reason": reason}, status=403)
