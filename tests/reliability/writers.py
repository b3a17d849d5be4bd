"""Every place a partner writes, described once for the idempotency tests.

A writer sends one request with an idempotency key as principal 0 or 1 (two clients, vendors,
services or members of the same organisation), in variant 0 (the request) or variant 1 (the same
key with another meaningful field), and counts the effects made under a key.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from integrations.follower.models import TransactionBatch
from integrations.partner.models import PartnerRequest
from points.models import Hold, HoldStatus, Transfer
from rewards.models import Claim, RewardGrant, StorePurchase
from tests.reliability.worlds import World, bearer


def basic(username: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@dataclass
class Writer:
    name: str
    world: World

    def prepare(self, http, *, key: str, principal: int) -> None:
        """What must exist before the first send (a hold to confirm, a reward to claim)."""

    def send(self, http, *, key: str, principal: int = 0, variant: int = 0):
        raise NotImplementedError

    def effects(self, *, key: str, principal: int = 0) -> int:
        raise NotImplementedError

    @property
    def refusal_status(self) -> int:
        """What the same key with another meaningful field gets."""
        return 409


class EaiCommit(Writer):
    def send(self, http, *, key, principal=0, variant=0):
        vendor = self.world.vendors[principal]
        body = {
            "userid": self.world.members[0].external_id,
            "pointstodeduct": 100 + variant,
            "transactionid": key,
            "description": "redemption for a mug",
        }
        return http.post(
            "/eai/v1/points?commit", body, basic(vendor.eai_username, vendor.eai_secret)
        )

    def effects(self, *, key, principal=0):
        owner = self.world.vendors[principal].vendor.hold_owner
        return Hold.objects.filter(owner=owner, transaction_id=key).count()


class EaiResolve(Writer):
    action = "confirm"

    def prepare(self, http, *, key, principal):
        reply = EaiCommit("commit", self.world).send(http, key=key, principal=principal)
        assert reply.status == 200, reply

    def send(self, http, *, key, principal=0, variant=0):
        vendor = self.world.vendors[principal]
        # Another member's userid is the meaningful change here: that member has no such hold.
        body = {"userid": self.world.members[variant].external_id, "transactionid": key}
        return http.post(
            f"/eai/v1/points?{self.action}", body, basic(vendor.eai_username, vendor.eai_secret)
        )

    @property
    def refusal_status(self):
        return 404

    def effects(self, *, key, principal=0):
        owner = self.world.vendors[principal].vendor.hold_owner
        if self.action == "confirm":
            return Transfer.objects.filter(
                hold__owner=owner, hold__transaction_id=key, hold__status=HoldStatus.CONFIRMED
            ).count()
        return Hold.objects.filter(
            owner=owner, transaction_id=key, status=HoldStatus.ROLLED_BACK
        ).count()


class EaiConfirm(EaiResolve):
    action = "confirm"


class EaiRollback(EaiResolve):
    action = "rollback"


class PartnerPoints(Writer):
    def send(self, http, *, key, principal=0, variant=0):
        _created, token = self.world.partners[principal]
        body = {
            "userId": self.world.members[0].external_id,
            "ruleId": str(self.world.earn_rule.pk),
            "amount": 50 + variant,
            "requestId": key,
            "callbackUrl": self.world.callback_url,
        }
        return http.post("/api/v1/points", body, bearer(token))

    def effects(self, *, key, principal=0):
        created, _token = self.world.partners[principal]
        accepted = PartnerRequest.objects.filter(client=created.client, request_id=key).count()
        applied = Transfer.objects.filter(
            idempotency_key=f"partner:{created.client.pk}:{key}"
        ).count()
        # Stored once, and (processed in process or by a worker) applied at most once.
        return max(accepted, applied)


class FollowerTransactions(Writer):
    def send(self, http, *, key, principal=0, variant=0):
        _created, token = self.world.masters[principal]
        body = [
            {
                "contactId": "master-contact-1",
                "amount": 25 + variant,
                "definitionId": self.world.follower_program.definition_id,
                "timeStamp": "2024-05-16T12:20:03.807Z",
                "source": "Purchase",
                "description": "Gilded gauntlets",
            }
        ]
        return http.post(
            "/api/v2/point-accounts/transactions", body, {**bearer(token), "Idempotency-Key": key}
        )

    def effects(self, *, key, principal=0):
        created, _token = self.world.masters[principal]
        return TransactionBatch.objects.filter(client=created.client, idempotency_key=key).count()


class RewardsIntReward(Writer):
    def send(self, http, *, key, principal=0, variant=0):
        _service, raw_key, operation = self.world.services[principal]
        body = {
            "user_id": self.world.members[variant].external_id,
            "code": operation.code,
            "description": "posted ten times",
        }
        return http.post(
            "/rewards/int/reward", body, {"X-Api-Key": raw_key, "Idempotency-Key": key}
        )

    def effects(self, *, key, principal=0):
        service, _raw, _operation = self.world.services[principal]
        return RewardGrant.objects.filter(service=service, idempotency_key=key).count()


class RewardsStorePurchase(Writer):
    def send(self, http, *, key, principal=0, variant=0):
        body = {"reward_type": self.world.priced_type.reward_type, "quantity": 1 + variant}
        return http.post(
            "/rewards/user/purchases",
            body,
            {**bearer(self.world.member_tokens[principal]), "Idempotency-Key": key},
        )

    def effects(self, *, key, principal=0):
        member = self.world.members[principal]
        return StorePurchase.objects.filter(member=member, idempotency_key=key).count()


class RewardsUserClaim(Writer):
    def prepare(self, http, *, key, principal):
        from rewards import services

        member = self.world.members[principal]
        reward_type = self.world.services[0][2].reward_type
        services.reward_grant(
            member=member,
            reward_type=reward_type,
            amount=5,
            source="operation",
            code="setup",
            building_block="tests",
        )

    def send(self, http, *, key, principal=0, variant=0):
        reward_type = self.world.services[0][2].reward_type
        body = {"items": [{"reward_type": reward_type.reward_type, "amount": 1 + variant}]}
        return http.post(
            "/rewards/user/claims",
            body,
            {**bearer(self.world.member_tokens[principal]), "Idempotency-Key": key},
        )

    def effects(self, *, key, principal=0):
        member = self.world.members[principal]
        return Claim.objects.filter(member=member, idempotency_key=key).count()


class EngagementEvent(Writer):
    def send(self, http, *, key, principal=0, variant=0):
        _created, token = self.world.profile_clients[principal]
        body = {
            "userId": self.world.members[variant].external_id,
            "name": self.world.event_name,
            "properties": {"screen": "home"},
        }
        return http.post("/api/v1/events", body, {**bearer(token), "Idempotency-Key": key})

    def effects(self, *, key, principal=0):
        from loyalty.engagement.models import Event

        created, _token = self.world.profile_clients[principal]
        return Event.objects.filter(client=created.client, idempotency_key=key).count()


class EngagementOfferPurchase(Writer):
    def send(self, http, *, key, principal=0, variant=0):
        _created, token = self.world.profile_clients[principal]
        member = self.world.members[0]
        body = {"offerId": str(self.world.offer.pk), "quantity": 1 + variant}
        return http.post(
            f"/api/v1/customers/{member.external_id}/purchases",
            body,
            {**bearer(token), "Idempotency-Key": key},
        )

    def effects(self, *, key, principal=0):
        created, _token = self.world.profile_clients[principal]
        return StorePurchase.objects.filter(
            idempotency_key=f"client:{created.client.pk}:{key}"
        ).count()


WRITERS = {
    "eai-commit": EaiCommit,
    "eai-confirm": EaiConfirm,
    "eai-rollback": EaiRollback,
    "partner-points": PartnerPoints,
    "follower-transactions": FollowerTransactions,
    "rewards-int-reward": RewardsIntReward,
    "rewards-store-purchase": RewardsStorePurchase,
    "rewards-user-claim": RewardsUserClaim,
    "engagement-event": EngagementEvent,
    "engagement-offer-purchase": EngagementOfferPurchase,
}


def writer_for(name: str, world: World) -> Writer:
    return WRITERS[name](name, world)
