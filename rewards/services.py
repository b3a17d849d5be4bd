"""Every write of rewards: catalogue, grants, claims and their status, digital codes, the store.

Concurrency. Counters are never written from values read earlier: a grant moves an inventory
with a conditional UPDATE (`amount_granted = amount_granted + n WHERE amount_granted + n <=
amount_total`), and everything else that needs to read before it writes holds row locks. The
lock order is fixed, so two writers never wait on each other in a circle:

    store purchase: the member's point account (points.services)
    claim:          the claim row (status changes only)
    balance:        the member's RewardBalance rows, by reward type id
    inventory:      the reward type's Inventory rows, by id
    digital codes:  free codes, SKIP LOCKED

A member's balance (granted - claimed) is checked with its RewardBalance row locked, in the
transaction that changes it; a CHECK constraint (claimed <= granted) is the last line behind it.
Every refusal raises a domain exception (rewards/exceptions.py) inside the transaction, so
nothing of a refused request is kept.

Callers pass an actor string (`client:<id>`, `service:<id>`, `member:<id>`, `user:<id>`,
`system`), recorded in the claim audit rows.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import secrets
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, ProtectedError
from django.utils import timezone

from integrations.outbox import outbox_enqueue
from integrations.url_safety import UnsafeURLError, validate_callback_url
from integrations.webhook_signing import new_webhook_secret
from loyalty.models import Member, Organization
from loyalty.validators import external_id_problem
from points import exceptions as point_exceptions
from points import services as point_services
from points.models import PointAccount, PointProgram
from rewards.exceptions import (
    CodePoolExhausted,
    Conflict,
    DuplicateKey,
    IdempotencyConflict,
    InsufficientPointsForPurchase,
    InsufficientRewardBalance,
    InvalidInput,
    InvalidStatusTransition,
    InventoryDepleted,
    NotForSale,
    NotFound,
    OperationOfAnotherBuildingBlock,
    RewardTypeInactive,
    RowReferenced,
)
from rewards.models import (
    RETURNED_STATUSES,
    Claim,
    ClaimItem,
    ClaimStatus,
    ClaimStatusChange,
    DigitalCode,
    Fulfilment,
    GrantSource,
    Inventory,
    Operation,
    RewardBalance,
    RewardGrant,
    RewardsService,
    RewardType,
    StorePurchase,
)

# No single request may move more than this: it keeps sums far inside 64 bits and catches unit
# mistakes before they reach a counter.
MAX_AMOUNT = 1_000_000_000
MAX_CLAIM_ITEMS = 50
MAX_CODE_LENGTH = 200

# The seed's history names the operation behind each grant; store purchases name the store.
STORE_CODE = "store_purchase"
STORE_BUILDING_BLOCK = "rewards_store"

CLAIM_TRANSITIONS: dict[str, frozenset[str]] = {
    ClaimStatus.PENDING: frozenset(
        {ClaimStatus.FULFILLED, ClaimStatus.REJECTED, ClaimStatus.CANCELLED}
    ),
    ClaimStatus.FULFILLED: frozenset(),
    ClaimStatus.REJECTED: frozenset(),
    ClaimStatus.CANCELLED: frozenset(),
}


def _check_amount(value: object, field_name: str, *, allow_zero: bool = False) -> int:
    # bool is an int in Python; True rewards are a bug, not one reward.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(f"{field_name} must be a whole number", field=field_name)
    if value < 0 or (value == 0 and not allow_zero):
        qualifier = "zero or more" if allow_zero else "positive"
        raise InvalidInput(f"{field_name} must be {qualifier}", field=field_name)
    if value > MAX_AMOUNT:
        raise InvalidInput(f"{field_name} must be at most {MAX_AMOUNT}", field=field_name)
    return value


def _check_text(value: object, field_name: str, *, max_length: int, required: bool) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field_name} must be a string", field=field_name)
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"{field_name} is required", field=field_name)
    if len(value) > max_length:
        raise InvalidInput(
            f"{field_name} must be at most {max_length} characters", field=field_name
        )
    return value


def _check_key(value: object, field_name: str) -> str:
    """Identifiers on the wire (reward_type, code, building_block): no spaces, no surprises."""
    value = _check_text(value, field_name, max_length=100, required=True)
    if not all(ch.isalnum() or ch in "._-:" for ch in value):
        raise InvalidInput(
            f"{field_name} may contain only letters, digits and . _ - :", field=field_name
        )
    return value


def _check_bool(value: object, field_name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{field_name} must be true or false", field=field_name)
    return value


# --- reward types --------------------------------------------------------------------------


def check_webhook_url(url: object) -> str:
    url = _check_text(url, "webhook_url", max_length=2000, required=False)
    if url:
        try:
            validate_callback_url(url, allow_insecure=settings.LOYALTY_ALLOW_INSECURE_CALLBACKS)
        except UnsafeURLError as exc:
            raise InvalidInput(f"webhook_url: {exc}", field="webhook_url") from None
    return url


def _reward_type_fields(changes: dict) -> dict:
    cleaned = {}
    for name, value in changes.items():
        if name == "reward_type":
            cleaned[name] = _check_key(value, "reward_type")
        elif name == "display_name":
            cleaned[name] = _check_text(value, "display_name", max_length=200, required=True)
        elif name == "description":
            cleaned[name] = _check_text(value, "description", max_length=2000, required=False)
        elif name == "active":
            cleaned[name] = _check_bool(value, "active")
        elif name == "points_price":
            cleaned[name] = None if value is None else _check_amount(value, "points_price")
        elif name == "fulfilment":
            if value not in Fulfilment.values:
                raise InvalidInput(
                    f"fulfilment must be one of {', '.join(Fulfilment.values)}", field="fulfilment"
                )
            cleaned[name] = value
        elif name == "webhook_url":
            cleaned[name] = check_webhook_url(value)
        else:
            raise InvalidInput(f"{name} cannot be set on a reward type", field=name)
    return cleaned


def _check_fulfilment(fulfilment: str, webhook_url: str) -> None:
    if fulfilment == Fulfilment.WEBHOOK and not webhook_url:
        raise InvalidInput("a webhook fulfilment needs webhook_url", field="webhook_url")


def reward_type_create(
    *,
    org: Organization,
    reward_type: str,
    display_name: str,
    active: bool = True,
    description: str = "",
    points_price: int | None = None,
    fulfilment: str = Fulfilment.MANUAL,
    webhook_url: str = "",
) -> RewardType:
    """Create a reward type. Raises InvalidInput (naming the field), DuplicateKey."""
    fields = _reward_type_fields(
        {
            "reward_type": reward_type,
            "display_name": display_name,
            "active": active,
            "description": description,
            "points_price": points_price,
            "fulfilment": fulfilment,
            "webhook_url": webhook_url,
        }
    )
    _check_fulfilment(fields["fulfilment"], fields["webhook_url"])
    try:
        with transaction.atomic():
            return RewardType.objects.create(org=org, webhook_secret=new_webhook_secret(), **fields)
    except IntegrityError:
        raise DuplicateKey(
            f"reward type {fields['reward_type']!r} already exists", field="reward_type"
        ) from None


def reward_type_update(*, reward_type: RewardType, **changes) -> RewardType:
    """Change the given fields only. Raises InvalidInput, DuplicateKey."""
    fields = _reward_type_fields(changes)
    merged = {
        "fulfilment": fields.get("fulfilment", reward_type.fulfilment),
        "webhook_url": fields.get("webhook_url", reward_type.webhook_url),
    }
    _check_fulfilment(merged["fulfilment"], merged["webhook_url"])
    for name, value in fields.items():
        setattr(reward_type, name, value)
    try:
        with transaction.atomic():
            reward_type.save(update_fields=[*fields, "date_updated"])
    except IntegrityError:
        raise DuplicateKey(
            f"reward type {reward_type.reward_type!r} already exists", field="reward_type"
        ) from None
    return reward_type


def _delete_unreferenced(instance, label: str) -> None:
    try:
        with transaction.atomic():
            instance.delete()
    except (ProtectedError, IntegrityError):
        raise RowReferenced(
            f"this {label} is referenced by other records and cannot be deleted"
        ) from None


def reward_type_delete(*, reward_type: RewardType) -> None:
    """Delete a reward type nothing refers to. Raises RowReferenced."""
    _delete_unreferenced(reward_type, "reward type")


# --- inventories ---------------------------------------------------------------------------


_INVENTORY_FIELDS = ("in_stock", "amount_total", "grant_depleted", "claim_depleted", "description")


def _inventory_fields(changes: dict) -> dict:
    cleaned = {}
    for name, value in changes.items():
        if name in ("in_stock", "grant_depleted", "claim_depleted"):
            cleaned[name] = _check_bool(value, name)
        elif name == "amount_total":
            cleaned[name] = _check_amount(value, "amount_total", allow_zero=True)
        elif name == "description":
            cleaned[name] = _check_text(value, "description", max_length=2000, required=False)
        else:
            raise InvalidInput(f"{name} cannot be set on an inventory", field=name)
    return cleaned


def inventory_create(
    *,
    reward_type: RewardType,
    amount_total: int,
    in_stock: bool = True,
    grant_depleted: bool = False,
    claim_depleted: bool = False,
    description: str = "",
) -> Inventory:
    """A new supply of a reward type; its counters start at zero. Raises InvalidInput."""
    fields = _inventory_fields(
        {
            "amount_total": amount_total,
            "in_stock": in_stock,
            "grant_depleted": grant_depleted,
            "claim_depleted": claim_depleted,
            "description": description,
        }
    )
    return Inventory.objects.create(org_id=reward_type.org_id, reward_type=reward_type, **fields)


def inventory_update(*, inventory: Inventory, **changes) -> Inventory:
    """Change settings, never counters; one conditional UPDATE, so concurrent grants are kept.

    Refuses (Conflict) an amount_total below what was already granted or claimed unless the
    matching depletion permission allows it, and withdrawing a permission an overdraw needs.
    """
    fields = _inventory_fields(changes)
    if not fields:
        return inventory
    with transaction.atomic():
        current = Inventory.objects.filter(pk=inventory.pk)
        row = current.values("amount_total", "grant_depleted", "claim_depleted").get()
        total = fields.get("amount_total", row["amount_total"])
        grant_depleted = fields.get("grant_depleted", row["grant_depleted"])
        claim_depleted = fields.get("claim_depleted", row["claim_depleted"])
        guarded = current
        if not grant_depleted:
            guarded = guarded.filter(amount_granted__lte=total)
        if not claim_depleted:
            guarded = guarded.filter(amount_claimed__lte=total)
        updated = guarded.update(**fields, date_updated=timezone.now())
        if not updated:
            counters = current.values("amount_granted", "amount_claimed").get()
            raise Conflict(
                "amount_total would be below what was already granted or claimed "
                f"({counters['amount_granted']} granted, {counters['amount_claimed']} claimed) "
                "without the grant_depleted / claim_depleted permission",
                field=next(
                    (
                        n
                        for n in ("amount_total", "grant_depleted", "claim_depleted")
                        if n in fields
                    ),
                    "amount_total",
                ),
                **counters,
            )
    return Inventory.objects.get(pk=inventory.pk)


def inventory_delete(*, inventory: Inventory) -> None:
    """Delete an inventory no grant, claim or code refers to. Raises RowReferenced."""
    with transaction.atomic():
        locked = Inventory.objects.select_for_update().get(pk=inventory.pk)
        if locked.amount_granted or locked.amount_claimed:
            raise RowReferenced("this inventory has grants or claims and cannot be deleted")
        _delete_unreferenced(locked, "inventory")


# --- operations ----------------------------------------------------------------------------


def _operation_fields(changes: dict) -> dict:
    cleaned = {}
    for name, value in changes.items():
        if name in ("code", "building_block"):
            cleaned[name] = _check_key(value, name)
        elif name == "amount":
            cleaned[name] = _check_amount(value, "amount")
        elif name == "description":
            cleaned[name] = _check_text(value, "description", max_length=2000, required=False)
        elif name == "reward_type":
            if not isinstance(value, RewardType):
                raise InvalidInput("reward_type is unknown", field="reward_type")
            cleaned[name] = value
        else:
            raise InvalidInput(f"{name} cannot be set on an operation", field=name)
    return cleaned


def operation_create(
    *,
    reward_type: RewardType,
    code: str,
    building_block: str,
    amount: int,
    description: str = "",
) -> Operation:
    """Raises InvalidInput, DuplicateKey (code already used by this building block)."""
    fields = _operation_fields(
        {
            "code": code,
            "building_block": building_block,
            "amount": amount,
            "description": description,
        }
    )
    try:
        with transaction.atomic():
            return Operation.objects.create(
                org_id=reward_type.org_id, reward_type=reward_type, **fields
            )
    except IntegrityError:
        raise DuplicateKey(
            f"operation {fields['code']!r} already exists for {fields['building_block']!r}",
            field="code",
        ) from None


def operation_update(*, operation: Operation, **changes) -> Operation:
    fields = _operation_fields(changes)
    reward_type = fields.get("reward_type")
    if reward_type is not None and reward_type.org_id != operation.org_id:
        raise InvalidInput("reward_type is unknown", field="reward_type")
    for name, value in fields.items():
        setattr(operation, name, value)
    try:
        with transaction.atomic():
            operation.save(update_fields=[*fields, "date_updated"])
    except IntegrityError:
        raise DuplicateKey(
            f"operation {operation.code!r} already exists for {operation.building_block!r}",
            field="code",
        ) from None
    return operation


def operation_delete(*, operation: Operation) -> None:
    """Delete an operation no grant refers to. Raises RowReferenced."""
    _delete_unreferenced(operation, "operation")


# --- rewards services (API keys) -------------------------------------------------------------

API_KEY_PREFIX = "rwk_"


def api_key_hash(raw_key: str) -> str:
    """SHA-256 of the key: enough for 256 random bits, and fast enough for every request."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_matches(*, service: RewardsService, raw_key: str) -> bool:
    return bool(service.key_hash) and hmac.compare_digest(service.key_hash, api_key_hash(raw_key))


def rewards_service_create(
    *, org: Organization, name: str, building_block: str
) -> tuple[RewardsService, str]:
    """Register a building block and give it its first API key; returns (service, raw key).

    The raw key is returned once; only its hash is stored. Raises InvalidInput, DuplicateKey.
    """
    name = _check_text(name, "name", max_length=200, required=True)
    building_block = _check_key(building_block, "building_block")
    try:
        with transaction.atomic():
            service = RewardsService.objects.create(
                org=org, name=name, building_block=building_block
            )
            raw_key = rewards_service_key_reset(service=service)
    except IntegrityError:
        raise DuplicateKey(
            f"a service for {building_block!r} already exists", field="building_block"
        ) from None
    return service, raw_key


def rewards_service_key_reset(*, service: RewardsService) -> str:
    """Give the service a new API key (the old one stops working at once); return it once."""
    prefix = secrets.token_hex(6)
    raw_key = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    RewardsService.objects.filter(pk=service.pk).update(
        key_prefix=prefix,
        key_hash=api_key_hash(raw_key),
        key_created_at=timezone.now(),
        date_updated=timezone.now(),
    )
    service.key_prefix, service.key_hash = prefix, api_key_hash(raw_key)
    return raw_key


# --- members --------------------------------------------------------------------------------


def member_get_or_create_for_service(*, org: Organization, user_id: object) -> Member:
    """The member a building block names by user_id; an unknown user becomes a member (race-safe).

    Looks up the external id, then the platform id. Raises InvalidInput (field user_id) when the
    id is not acceptable as an external id (personal data, bad characters).
    """
    if not isinstance(user_id, str) or not user_id.strip():
        raise InvalidInput("user_id is required", field="user_id")
    member = Member.objects.filter(organization=org, external_id=user_id).first()
    if member is not None:
        return member
    try:
        member = Member.objects.filter(organization=org, pk=uuid.UUID(user_id)).first()
        if member is not None:
            return member
    except ValueError:
        pass
    problem = external_id_problem(user_id)
    if problem:
        raise InvalidInput(f"user_id {problem}", field="user_id")
    try:
        # A savepoint: losing the race to a concurrent creator must not break the caller.
        with transaction.atomic():
            return Member.objects.create(organization=org, external_id=user_id)
    except IntegrityError:
        return Member.objects.get(organization=org, external_id=user_id)


# --- balances (caller is inside a transaction) ---------------------------------------------


def _lock_balances(*, member: Member, reward_type_ids: Sequence) -> dict:
    """Lock (creating if needed) the member's balance rows of these types, by type id."""
    ids = sorted(set(reward_type_ids), key=str)
    for reward_type_id in ids:
        if not RewardBalance.objects.filter(member=member, reward_type_id=reward_type_id).exists():
            try:
                with transaction.atomic():
                    RewardBalance.objects.create(
                        org_id=member.organization_id, member=member, reward_type_id=reward_type_id
                    )
            except IntegrityError:
                pass  # a concurrent transaction created it; the lock below waits for it
    locked = {}
    for reward_type_id in ids:
        locked[reward_type_id] = RewardBalance.objects.select_for_update().get(
            member=member, reward_type_id=reward_type_id
        )
    return locked


# --- grants ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GrantResult:
    grant: RewardGrant
    replayed: bool = False


def _take_for_grant(*, reward_type: RewardType, amount: int) -> tuple[Inventory, int]:
    """Draw `amount` from one in-stock inventory, oldest first; return it and the overdraw.

    First the oldest inventory that still covers the whole amount (a conditional UPDATE, so two
    grants can never both take the last unit); failing that, the oldest inventory that permits
    granting past its total (grant_depleted), locked to record how far past it went.
    """
    now = timezone.now()
    candidates = list(
        Inventory.objects.filter(reward_type=reward_type, in_stock=True)
        .order_by("date_created", "id")
        .values_list("id", "grant_depleted")
    )
    for inventory_id, _permission in candidates:
        taken = Inventory.objects.filter(
            pk=inventory_id,
            in_stock=True,
            amount_granted__lte=F("amount_total") - amount,
        ).update(amount_granted=F("amount_granted") + amount, date_updated=now)
        if taken:
            return Inventory.objects.get(pk=inventory_id), 0
    for inventory_id, permission in candidates:
        if not permission:
            continue
        inventory = Inventory.objects.select_for_update().get(pk=inventory_id)
        if not (inventory.in_stock and inventory.grant_depleted):
            continue  # changed since the list was read
        overdrawn = amount - min(amount, inventory.grantable)
        Inventory.objects.filter(pk=inventory_id).update(
            amount_granted=F("amount_granted") + amount, date_updated=now
        )
        return inventory, overdrawn
    raise InventoryDepleted(
        f"no inventory of {reward_type.reward_type!r} can grant {amount}",
        field="reward_type",
        reward_type=reward_type.reward_type,
    )


def reward_grant(
    *,
    member: Member,
    reward_type: RewardType,
    amount: int,
    source: str,
    code: str,
    building_block: str,
    description: str = "",
    operation: Operation | None = None,
    service: RewardsService | None = None,
    idempotency_key: str | None = None,
    actor: str = "",
    activity_data: dict | None = None,
) -> GrantResult:
    """Grant `amount` of a reward type to a member, drawn from one inventory (oldest first).

    With a service and an idempotency_key, a repeat for the same member and operation returns
    the first grant (replayed=True); another member or operation raises IdempotencyConflict.
    Raises RewardTypeInactive, InventoryDepleted (nothing changes), InvalidInput.
    The grant goes into the member's activity log (with `activity_data` beside its figures).
    """
    amount = _check_amount(amount, "amount")
    if member.organization_id != reward_type.org_id:
        raise ValueError("member and reward type belong to different organisations")
    if idempotency_key is not None and service is None:
        raise ValueError("idempotency keys are scoped to a service")
    with transaction.atomic():
        balance = _lock_balances(member=member, reward_type_ids=[reward_type.pk])[reward_type.pk]
        if idempotency_key is not None:
            existing = RewardGrant.objects.filter(
                service=service, idempotency_key=idempotency_key
            ).first()
            if existing is not None:
                same_operation = existing.operation_id == (operation.pk if operation else None)
                if existing.member_id != member.pk or not same_operation:
                    raise IdempotencyConflict(field="Idempotency-Key")
                return GrantResult(grant=existing, replayed=True)
        if not RewardType.objects.filter(pk=reward_type.pk, active=True).exists():
            raise RewardTypeInactive(
                f"reward type {reward_type.reward_type!r} is not active", field="reward_type"
            )
        inventory, overdrawn = _take_for_grant(reward_type=reward_type, amount=amount)
        RewardBalance.objects.filter(pk=balance.pk).update(granted=F("granted") + amount)
        try:
            with transaction.atomic():
                grant = RewardGrant.objects.create(
                    org_id=member.organization_id,
                    member=member,
                    reward_type=reward_type,
                    inventory=inventory,
                    operation=operation,
                    service=service,
                    source=source,
                    code=code,
                    building_block=building_block,
                    amount=amount,
                    overdrawn=overdrawn,
                    description=description[:2000],
                    idempotency_key=idempotency_key,
                )
        except IntegrityError:
            # The same key was just used for another member (whose balance row we do not lock).
            raise IdempotencyConflict(field="Idempotency-Key") from None
        _activity_record(
            member=member,
            kind="reward_granted",
            summary=f"Granted {amount} x {reward_type.display_name}",
            data={
                "grantId": str(grant.pk),
                "rewardType": reward_type.reward_type,
                "amount": amount,
                **(activity_data or {}),
            },
            actor=actor or (f"service:{service.name}" if service is not None else ""),
        )
        return GrantResult(grant=grant)


def _activity_record(**entry) -> None:
    # The member's activity log belongs to loyalty.engagement, which builds on this app.
    from loyalty.engagement.services import activity_record

    activity_record(**entry)


def reward_grant_for_operation(
    *,
    service: RewardsService,
    user_id: object,
    code: object,
    building_block: object = None,
    description: object = "",
    idempotency_key: str | None = None,
) -> GrantResult:
    """/int/reward: a building block grants the reward of one of its operations to a user.

    The caller has authenticated `service`. Raises OperationOfAnotherBuildingBlock (the
    operation, or the building_block named, is not the service's), NotFound (unknown code),
    InvalidInput, RewardTypeInactive, InventoryDepleted, IdempotencyConflict.
    """
    code = _check_key(code, "code")
    if building_block not in (None, ""):
        building_block = _check_key(building_block, "building_block")
        if building_block != service.building_block:
            raise OperationOfAnotherBuildingBlock(
                f"this service is {service.building_block!r}, not {building_block!r}",
                field="building_block",
            )
    description = _check_text(description or "", "description", max_length=2000, required=False)
    operation = (
        Operation.objects.select_related("reward_type")
        .filter(org_id=service.org_id, building_block=service.building_block, code=code)
        .first()
    )
    if operation is None:
        if Operation.objects.filter(org_id=service.org_id, code=code).exists():
            raise OperationOfAnotherBuildingBlock(
                f"operation {code!r} belongs to another building block", field="code"
            )
        raise NotFound(f"operation {code!r} does not exist", field="code")
    with transaction.atomic():
        member = member_get_or_create_for_service(org=service.org, user_id=user_id)
        return reward_grant(
            member=member,
            reward_type=operation.reward_type,
            amount=operation.amount,
            source=GrantSource.OPERATION,
            code=operation.code,
            building_block=operation.building_block,
            description=description or operation.description,
            operation=operation,
            service=service,
            idempotency_key=idempotency_key,
        )


# --- claims ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimItemRequest:
    reward_type: RewardType
    amount: int
    inventory: Inventory | None = None


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    replayed: bool = False


@dataclass
class _Allocation:
    amount: int = 0
    overdrawn: int = 0


@dataclass
class _LockedInventory:
    row: Inventory
    claimed: int  # amount_claimed, plus what this claim has taken so far
    taken: dict = field(default_factory=dict)


def _claim_fingerprint(items: Sequence[ClaimItemRequest]) -> str:
    parts = sorted(
        f"{item.reward_type.pk}:{item.amount}:{item.inventory.pk if item.inventory else ''}"
        for item in items
    )
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _check_claim_items(*, member: Member, items: Sequence[ClaimItemRequest]) -> None:
    if not items:
        raise InvalidInput("items must name at least one reward", field="items")
    if len(items) > MAX_CLAIM_ITEMS:
        raise InvalidInput(f"items may hold at most {MAX_CLAIM_ITEMS} entries", field="items")
    for index, item in enumerate(items):
        _check_amount(item.amount, f"items[{index}].amount")
        if item.reward_type.org_id != member.organization_id:
            raise ValueError("reward type of another organisation")
        if item.inventory is not None and item.inventory.reward_type_id != item.reward_type.pk:
            raise InvalidInput(
                "the inventory holds another reward type", field=f"items[{index}].inventory_id"
            )


def _allocate(
    *, index: int, item: ClaimItemRequest, inventories: list[_LockedInventory]
) -> list[tuple[_LockedInventory, _Allocation]]:
    """Where one item's amount comes from: the named inventory, or oldest in-stock first."""
    field_name = f"items[{index}]"
    allocations: dict = {}

    def take(locked: _LockedInventory, amount: int, overdrawn: int) -> None:
        allocation = allocations.setdefault(locked.row.pk, (locked, _Allocation()))[1]
        allocation.amount += amount
        allocation.overdrawn += overdrawn
        locked.claimed += amount

    left = item.amount
    if item.inventory is not None:
        candidates = [inv for inv in inventories if inv.row.pk == item.inventory.pk]
        field_name = f"items[{index}].inventory_id"
    else:
        candidates = [inv for inv in inventories if inv.row.reward_type_id == item.reward_type.pk]
    candidates = [inv for inv in candidates if inv.row.in_stock]
    for locked in candidates:
        room = max(0, locked.row.amount_total - locked.claimed)
        amount = min(room, left)
        if amount:
            take(locked, amount, 0)
            left -= amount
        if not left:
            break
    if left:
        permitted = [inv for inv in candidates if inv.row.claim_depleted]
        if not permitted:
            raise InventoryDepleted(
                f"no inventory of {item.reward_type.reward_type!r} can supply {item.amount}",
                field=field_name,
                reward_type=item.reward_type.reward_type,
            )
        take(permitted[0], left, left)
    return list(allocations.values())


def _take_digital_codes(*, item: ClaimItem, now) -> list[DigitalCode]:
    """Give the claim item `amount` free codes; each code goes to one claim item only.

    SKIP LOCKED lets concurrent claims pass each other's candidate codes instead of queueing;
    the conditional UPDATE (claim_item IS NULL) is what guarantees a code is handed out once,
    also on databases without row locks.
    """
    free = DigitalCode.objects.filter(reward_type_id=item.reward_type_id, claim_item__isnull=True)
    if connection.features.has_select_for_update_skip_locked:
        free = free.select_for_update(skip_locked=True)
    ids = list(free.order_by("id").values_list("id", flat=True)[: item.amount])
    taken = 0
    if len(ids) == item.amount:
        taken = DigitalCode.objects.filter(pk__in=ids, claim_item__isnull=True).update(
            claim_item=item, date_issued=now
        )
    if taken != item.amount:
        raise CodePoolExhausted(
            f"not enough digital codes of {item.reward_type.reward_type!r} are left",
            field="items",
            reward_type=item.reward_type.reward_type,
        )
    return list(DigitalCode.objects.filter(claim_item=item).order_by("id"))


def claim_create(
    *,
    member: Member,
    items: Sequence[ClaimItemRequest],
    actor: str,
    description: str = "",
    idempotency_key: str | None = None,
) -> ClaimResult:
    """Claim rewards from the member's balance; the claim starts pending.

    Inside one transaction: locks the member's balances of the claimed types and checks them,
    locks the types' inventories and allocates each item (the named inventory, or in-stock
    inventories oldest first; past a total only where claim_depleted permits, recorded as
    `overdrawn`), takes digital codes for code-pool types (a claim of code-pool types only is
    fulfilled at once) and enqueues fulfilment webhooks. With an idempotency_key a repeat with
    the same items returns the first claim; other items raise IdempotencyConflict.
    Raises InvalidInput, RewardTypeInactive, InsufficientRewardBalance, InventoryDepleted,
    CodePoolExhausted; nothing changes then.
    """
    _check_claim_items(member=member, items=items)
    description = _check_text(description or "", "description", max_length=2000, required=False)
    fingerprint = _claim_fingerprint(items)
    totals: dict = defaultdict(int)
    for item in items:
        totals[item.reward_type.pk] += item.amount
    now = timezone.now()
    with transaction.atomic():
        balances = _lock_balances(member=member, reward_type_ids=list(totals))
        if idempotency_key is not None:
            existing = Claim.objects.filter(member=member, idempotency_key=idempotency_key).first()
            if existing is not None:
                if existing.request_fingerprint != fingerprint:
                    raise IdempotencyConflict(field="Idempotency-Key")
                return ClaimResult(claim=existing, replayed=True)
        reward_types = {
            rt.pk: rt for rt in RewardType.objects.filter(pk__in=list(totals)).order_by("pk")
        }
        for index, item in enumerate(items):
            if not reward_types[item.reward_type.pk].active:
                raise RewardTypeInactive(
                    f"reward type {item.reward_type.reward_type!r} is not active",
                    field=f"items[{index}].reward_type",
                )
        for reward_type_id, total in totals.items():
            balance = balances[reward_type_id]
            if balance.amount < total:
                name = reward_types[reward_type_id].reward_type
                raise InsufficientRewardBalance(
                    f"the balance of {name!r} is {balance.amount}, {total} requested",
                    field="items",
                    reward_type=name,
                    balance=balance.amount,
                    requested=total,
                )
        inventories = [
            _LockedInventory(row=row, claimed=row.amount_claimed)
            for row in Inventory.objects.select_for_update()
            .filter(reward_type_id__in=list(totals))
            .order_by("pk")
        ]
        inventories.sort(key=lambda inv: (inv.row.date_created, str(inv.row.pk)))
        plan = [
            (item, _allocate(index=index, item=item, inventories=inventories))
            for index, item in enumerate(items)
        ]
        try:
            with transaction.atomic():
                claim = Claim.objects.create(
                    org_id=member.organization_id,
                    member=member,
                    description=description,
                    idempotency_key=idempotency_key,
                    request_fingerprint=fingerprint,
                )
        except IntegrityError:
            # The key was just used by a claim of other types (whose balances we do not lock).
            raise IdempotencyConflict(field="Idempotency-Key") from None
        ClaimStatusChange.objects.create(
            claim=claim, from_status="", to_status=ClaimStatus.PENDING, actor=actor[:200]
        )
        created_items = []
        for item, allocations in plan:
            for locked, allocation in allocations:
                Inventory.objects.filter(pk=locked.row.pk).update(
                    amount_claimed=F("amount_claimed") + allocation.amount, date_updated=now
                )
                created_items.append(
                    ClaimItem.objects.create(
                        claim=claim,
                        reward_type=reward_types[item.reward_type.pk],
                        inventory=locked.row,
                        amount=allocation.amount,
                        overdrawn=allocation.overdrawn,
                    )
                )
        for reward_type_id, total in totals.items():
            RewardBalance.objects.filter(pk=balances[reward_type_id].pk).update(
                claimed=F("claimed") + total
            )
        fulfilments = {reward_types[i.reward_type_id].fulfilment for i in created_items}
        for claim_item in created_items:
            if claim_item.reward_type.fulfilment == Fulfilment.CODE_POOL:
                _take_digital_codes(item=claim_item, now=now)
        _enqueue_fulfilment_webhooks(claim=claim, items=created_items)
        _activity_record(
            member=member,
            kind="reward_claimed",
            summary="Redeemed "
            + ", ".join(f"{i.amount} x {i.reward_type.display_name}" for i in created_items),
            data={
                "claimId": str(claim.pk),
                "items": [
                    {"rewardType": i.reward_type.reward_type, "amount": i.amount}
                    for i in created_items
                ],
            },
            actor=actor,
        )
        if fulfilments == {Fulfilment.CODE_POOL}:
            claim = claim_set_status(
                claim=claim,
                status=ClaimStatus.FULFILLED,
                actor="system",
                note="digital codes issued",
            )
        return ClaimResult(claim=claim)


def claim_record(
    *,
    member: Member,
    items: Sequence[ClaimItemRequest],
    actor: str,
    description: str = "",
    status: str | None = None,
) -> Claim:
    """An administrator records a claim, optionally already moved on (e.g. fulfilled offline).

    Creation and the status move are one transaction, both audited; same refusals as
    claim_create and claim_set_status.
    """
    with transaction.atomic():
        claim = claim_create(member=member, items=items, actor=actor, description=description).claim
        if status is not None and status != claim.status:
            claim = claim_set_status(claim=claim, status=status, actor=actor)
        return claim


def claim_payload(claim: Claim) -> dict:
    """The claim as the Rokwire contract shows it (also the fulfilment webhook's `claim`)."""
    items = claim.items.select_related("reward_type").prefetch_related("digital_codes")
    return {
        "id": str(claim.pk),
        "org_id": str(claim.org_id),
        "user_id": claim.member.external_id,
        "items": [
            {
                "reward_type": item.reward_type.reward_type,
                "inventory_id": str(item.inventory_id),
                "amount": item.amount,
                "overdrawn": item.overdrawn,
                "codes": [code.code for code in item.digital_codes.all()],
            }
            for item in items
        ],
        "status": claim.status,
        "description": claim.description,
        "date_created": claim.date_created.isoformat(),
        "date_updated": claim.date_updated.isoformat(),
    }


def _enqueue_fulfilment_webhooks(*, claim: Claim, items: list[ClaimItem]) -> None:
    by_type: dict = {}
    for item in items:
        if item.reward_type.fulfilment == Fulfilment.WEBHOOK:
            by_type[item.reward_type.pk] = item.reward_type
    if not by_type:
        return
    claim = Claim.objects.select_related("member").get(pk=claim.pk)
    payload = claim_payload(claim)
    for reward_type in by_type.values():
        outbox_enqueue(
            topic="rewards.claim.created",
            url=reward_type.webhook_url,
            payload={
                "type": "rewards.claim.created",
                "reward_type": reward_type.reward_type,
                "claim": payload,
            },
            organization=claim.member.organization,
            signing_secret=reward_type.webhook_secret,
        )


def claim_set_status(*, claim: Claim, status: str, actor: str, note: str = "") -> Claim:
    """Move a claim along CLAIM_TRANSITIONS and audit the move, in one transaction.

    Rejecting or cancelling gives the claimed amounts back to the member's balances and to the
    inventories. Setting the status a claim already has changes nothing. Raises
    InvalidStatusTransition (field status), InvalidInput (unknown status).
    """
    if status not in CLAIM_TRANSITIONS:
        raise InvalidInput(f"status must be one of {', '.join(CLAIM_TRANSITIONS)}", field="status")
    note = _check_text(note or "", "note", max_length=500, required=False)
    now = timezone.now()
    with transaction.atomic():
        locked = Claim.objects.select_for_update().get(pk=claim.pk)
        if locked.status == status:
            return locked
        if status not in CLAIM_TRANSITIONS[locked.status]:
            raise InvalidStatusTransition(
                f"a {locked.status} claim cannot become {status}",
                field="status",
                from_status=locked.status,
                to_status=status,
            )
        if status in RETURNED_STATUSES:
            items = list(ClaimItem.objects.filter(claim=locked).order_by("inventory_id", "id"))
            totals: dict = defaultdict(int)
            for item in items:
                totals[item.reward_type_id] += item.amount
            balances = _lock_balances(member=locked.member, reward_type_ids=list(totals))
            for reward_type_id, total in totals.items():
                RewardBalance.objects.filter(pk=balances[reward_type_id].pk).update(
                    claimed=F("claimed") - total
                )
            for item in items:
                Inventory.objects.filter(pk=item.inventory_id).update(
                    amount_claimed=F("amount_claimed") - item.amount, date_updated=now
                )
        Claim.objects.filter(pk=locked.pk).update(status=status, date_updated=now)
        ClaimStatusChange.objects.create(
            claim=locked,
            from_status=locked.status,
            to_status=status,
            actor=actor[:200],
            note=note,
        )
    return Claim.objects.get(pk=claim.pk)


def claim_update(
    *,
    claim: Claim,
    actor: str,
    description: object = None,
    status: str | None = None,
    note: str = "",
) -> Claim:
    """An administrator's update: the description, and a status move through claim_set_status.

    Both or neither: a refused move (InvalidStatusTransition) keeps the old description too.
    """
    with transaction.atomic():
        if description is not None:
            description = _check_text(description, "description", max_length=2000, required=False)
            Claim.objects.filter(pk=claim.pk).update(
                description=description, date_updated=timezone.now()
            )
        if status is not None:
            claim_set_status(claim=claim, status=status, actor=actor, note=note)
    return Claim.objects.get(pk=claim.pk)


# --- digital codes --------------------------------------------------------------------------


@dataclass
class CodeImportReport:
    created: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


def digital_codes_import(*, reward_type: RewardType, lines: Sequence[str]) -> CodeImportReport:
    """Add codes to a reward type's pool: one code per line (the first CSV column).

    A header line `code` is skipped. Blank, over-long, or non-printable codes are rejected
    with their line number; codes already in the pool (or twice in the file) are counted as
    duplicates and not added again. The valid codes are stored even when some lines are bad.
    """
    report = CodeImportReport()
    seen: set[str] = set()
    wanted: list[str] = []
    for number, row in enumerate(csv.reader(lines), start=1):
        value = row[0].strip() if row else ""
        if number == 1 and value.lower() == "code":
            continue
        if not value:
            if any(cell.strip() for cell in row):
                report.rejected.append((number, "the code is empty"))
            continue
        if len(value) > MAX_CODE_LENGTH:
            report.rejected.append((number, f"longer than {MAX_CODE_LENGTH} characters"))
            continue
        if not value.isprintable() or any(ch.isspace() for ch in value):
            report.rejected.append((number, "contains spaces or control characters"))
            continue
        if value in seen:
            report.duplicates += 1
            continue
        seen.add(value)
        wanted.append(value)
    with transaction.atomic():
        existing = set(
            DigitalCode.objects.filter(reward_type=reward_type, code__in=wanted).values_list(
                "code", flat=True
            )
        )
        new_codes = [code for code in wanted if code not in existing]
        report.duplicates += len(existing)
        # ignore_conflicts: a concurrent import of the same code is a duplicate, not an error.
        DigitalCode.objects.bulk_create(
            [
                DigitalCode(org_id=reward_type.org_id, reward_type=reward_type, code=code)
                for code in new_codes
            ],
            ignore_conflicts=True,
            batch_size=1000,
        )
        report.created = (
            DigitalCode.objects.filter(reward_type=reward_type, code__in=new_codes).count()
            if new_codes
            else 0
        )
    return report


# --- the reward store -------------------------------------------------------------------------


@dataclass(frozen=True)
class PurchaseResult:
    purchase: StorePurchase
    replayed: bool = False


def store_purchase(
    *,
    member: Member,
    reward_type: RewardType,
    quantity: int,
    program: PointProgram,
    idempotency_key: str | None,
    claim_now: bool = False,
    actor: str = "",
) -> PurchaseResult:
    """Buy `quantity` of a reward type with points: burn and grant (and claim) in one transaction.

    The member's point account is locked first, so purchases of one member are serialised and
    an Idempotency-Key repeat finds the first purchase: same reward type, quantity and program
    -> the stored purchase (replayed=True); anything else -> IdempotencyConflict. Raises
    NotForSale, RewardTypeInactive, InsufficientPointsForPurchase, InventoryDepleted,
    InvalidInput, Conflict (a follower program); nothing changes then, points included.
    """
    quantity = _check_amount(quantity, "quantity")
    if idempotency_key is not None:
        idempotency_key = _check_text(
            idempotency_key, "Idempotency-Key", max_length=200, required=True
        )
    if reward_type.org_id != member.organization_id or program.organization_id != (
        member.organization_id
    ):
        raise ValueError("member, reward type and program belong to different organisations")
    actor = actor or f"member:{member.pk}"
    account = point_services.account_get_or_create(program=program, member=member)
    with transaction.atomic():
        PointAccount.objects.select_for_update().get(pk=account.pk)
        if idempotency_key is not None:
            existing = StorePurchase.objects.filter(
                member=member, idempotency_key=idempotency_key
            ).first()
            if existing is not None:
                same = (
                    existing.reward_type_id == reward_type.pk
                    and existing.quantity == quantity
                    and existing.program_id == program.pk
                    and (existing.claim_id is not None) == claim_now
                )
                if not same:
                    raise IdempotencyConflict(field="Idempotency-Key")
                return PurchaseResult(purchase=existing, replayed=True)
        current = RewardType.objects.get(pk=reward_type.pk)
        if current.points_price is None:
            raise NotForSale(f"{current.reward_type!r} is not for sale", field="reward_type")
        if not current.active:
            raise RewardTypeInactive(
                f"reward type {current.reward_type!r} is not active", field="reward_type"
            )
        points = current.points_price * quantity
        purchase_id = uuid.uuid4()
        if claim_now:
            # The claim will lock the type's inventories in id order; take them now, after the
            # balance and before the grant touches one, so the module's lock order holds.
            _lock_balances(member=member, reward_type_ids=[current.pk])
            list(
                Inventory.objects.select_for_update()
                .filter(reward_type=current)
                .order_by("pk")
                .values_list("pk", flat=True)
            )
        burn_key = (
            f"rewards:store:{member.pk}:{idempotency_key}"
            if idempotency_key is not None
            else f"rewards:store:{purchase_id}"
        )
        description = f"{quantity} x {current.display_name}"
        try:
            transfer = point_services.burn(
                program=program,
                member=member,
                amount=points,
                source="Reward store",
                description=description,
                reference=f"store:{purchase_id}",
                actor=actor,
                idempotency_key=burn_key,
            )
        except point_exceptions.InsufficientPoints as exc:
            raise InsufficientPointsForPurchase(
                f"{points} points needed, {exc.details.get('available', 0)} available",
                field="quantity",
                required=points,
                available=exc.details.get("available", 0),
            ) from None
        except point_exceptions.InvalidAmount as exc:
            raise InvalidInput(f"quantity: {exc.message}", field="quantity") from None
        except point_exceptions.PointsError as exc:
            raise Conflict(exc.message, field="program") from None
        grant = reward_grant(
            member=member,
            reward_type=current,
            amount=quantity,
            source=GrantSource.STORE,
            code=STORE_CODE,
            building_block=STORE_BUILDING_BLOCK,
            description=description,
        ).grant
        claim = None
        if claim_now:
            claim = claim_create(
                member=member,
                items=[ClaimItemRequest(reward_type=current, amount=quantity)],
                actor=actor,
                description=f"Reward store: {description}",
            ).claim
        purchase = StorePurchase.objects.create(
            id=purchase_id,
            org_id=member.organization_id,
            member=member,
            reward_type=current,
            program=program,
            quantity=quantity,
            unit_price=current.points_price,
            points=points,
            transfer=transfer,
            grant=grant,
            claim=claim,
            idempotency_key=idempotency_key,
        )
        return PurchaseResult(purchase=purchase)
