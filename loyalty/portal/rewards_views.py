"""Portal pages of the reward store and the member's rewards (seed 003 services)."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from integrations.eai.selectors import vendors_for_member
from loyalty.portal.decorators import member_required
from points.models import PointProgram, ProgramMode
from points.selectors import balance_get
from rewards import selectors as reward_selectors
from rewards import services as reward_services
from rewards.exceptions import RewardsError
from rewards.models import RewardType


def _store_program(member) -> PointProgram | None:
    """Prices are in the organisation's master program (`default` first)."""
    programs = PointProgram.objects.filter(
        organization_id=member.organization_id, mode=ProgramMode.MASTER
    ).order_by("pk")
    return programs.filter(key="default").first() or programs.first()


@member_required
def store(request):
    member = request.member
    program = _store_program(member)
    available = balance_get(program=program, member=member).available if program else 0
    offers = [
        {
            "reward_type": reward_type,
            "stock": reward_selectors.quantity_state(reward_type=reward_type)["grantable_quantity"],
            "affordable": reward_type.points_price <= available,
        }
        for reward_type in reward_selectors.store_items(org=member.organization)
    ]
    return render(
        request,
        "portal/store.html",
        {"member": member, "program": program, "available": available, "offers": offers},
    )


@member_required
@require_http_methods(["GET", "POST"])
def store_buy(request, reward_type_id):
    member = request.member
    reward_type = get_object_or_404(
        reward_selectors.store_items(org=member.organization), pk=reward_type_id
    )
    program = _store_program(member)
    if program is None:
        messages.error(request, "The store is not open: there is no points program to pay with.")
        return redirect("portal:store")
    if request.method == "POST":
        # The key is made when the confirmation page is shown, so a double submit buys once.
        key = request.POST.get("purchase_key") or ""
        try:
            uuid.UUID(key)
        except ValueError:
            messages.error(request, "This purchase form has expired; please confirm again.")
            return redirect("portal:store-buy", reward_type_id=reward_type.pk)
        try:
            result = reward_services.store_purchase(
                member=member,
                reward_type=reward_type,
                quantity=1,
                program=program,
                idempotency_key=f"portal:{member.pk}:{key}",
                claim_now=request.POST.get("claim_now") == "on",
                actor=f"member:{member.pk}",
            )
        except RewardsError as exc:
            messages.error(request, _purchase_refusal(exc))
            return redirect("portal:store")
        if not result.replayed:
            messages.success(
                request,
                f"You bought {reward_type.display_name} for {reward_type.points_price} points.",
            )
        return redirect("portal:my-rewards")
    available = balance_get(program=program, member=member).available
    return render(
        request,
        "portal/store_buy.html",
        {
            "member": member,
            "reward_type": reward_type,
            "available": available,
            "after": available - reward_type.points_price,
            "purchase_key": uuid.uuid4(),
        },
    )


def _purchase_refusal(exc: RewardsError) -> str:
    messages_by_code = {
        "insufficient_points": "You do not have enough points for this reward.",
        "inventory_depleted": "Sorry, this reward is out of stock.",
        "reward_type_inactive": "This reward is no longer offered.",
        "not_for_sale": "This reward is not for sale.",
    }
    return messages_by_code.get(exc.code, f"The purchase did not go through: {exc.message}.")


@member_required
def my_rewards(request):
    member = request.member
    claims = list(
        reward_selectors.claims_of_member(member=member).prefetch_related(
            "items__reward_type", "items__digital_codes"
        )[:50]
    )
    balances = [
        {
            **row,
            "reward_type_obj": RewardType.objects.filter(
                org=member.organization, reward_type=row["reward_type"]
            ).first(),
            "claim_key": uuid.uuid4(),
        }
        for row in reward_selectors.balances_of_member(member=member)
    ]
    return render(
        request,
        "portal/my_rewards.html",
        {"member": member, "balances": balances, "claims": claims},
    )


@member_required
@require_POST
def claim_reward(request, reward_type_id):
    member = request.member
    reward_type = get_object_or_404(RewardType, org=member.organization, pk=reward_type_id)
    try:
        reward_services.claim_create(
            member=member,
            items=[reward_services.ClaimItemRequest(reward_type=reward_type, amount=1)],
            actor=f"member:{member.pk}",
            # Made when the page was shown, so a double submit claims once.
            idempotency_key=_claim_key(member, request.POST.get("claim_key")),
        )
    except RewardsError as exc:
        messages.error(request, f"The claim did not go through: {exc.message}.")
    else:
        messages.success(request, f"You claimed {reward_type.display_name}.")
    return redirect("portal:my-rewards")


def _claim_key(member, raw: str | None) -> str | None:
    try:
        return f"portal-claim:{member.pk}:{uuid.UUID(raw or '')}"
    except ValueError:
        return None


@member_required
def partners(request):
    """One "Redeem at <vendor>" button per active vendor of the member's organisation."""
    vendors = vendors_for_member(member=request.member)
    return render(request, "portal/partners.html", {"member": request.member, "vendors": vendors})
