"""Where an adjustment goes, by program mode: the ledger (master) or the point master (follower).

The ledger imports no integration (DESIGN.md), so this decision lives here, above
points.services. In a follower program the platform does not generate points: an operator's or an
automation's adjustment becomes a webhook to the point master, and the balance changes only when
the master's next sync arrives.

How the master reads the webhook
--------------------------------
The master receives a POST with a JSON body::

    {"eventType": "loyalty.addPoints", "id": "<uuid>", "payload": "<base64>",
     "tenant": "<organisation slug>"}

`payload` is base64 (standard alphabet, padded) of nonce (12 bytes) + ciphertext + tag (16
bytes), AES-256-GCM, no associated data, under the program's key (base64 of 32 bytes, shown
once per generation in the operator console: Point master connections). The plaintext is the
seed's JSON::

    Manual:     {"ContactId", "Amount", "Description", "Source": "Manual", "PointDefinitionId",
                 "UserId", "UserName"}
    Automation: {"ContactId", "Amount", "Description", "Source": "Automation",
                 "PointDefinitionId", "Reason", "ProcessId", "WorkflowId", "WorkflowName"}

The shipped helper decrypts it (integrations/follower_crypto.py has no Django dependency; copy it
to the master)::

    from follower_crypto import decrypt_payload, PayloadDecryptError
    adjustment = decrypt_payload(body["payload"], key)   # raises PayloadDecryptError if tampered

In any language: base64-decode, split off the first 12 bytes (nonce), AES-GCM-decrypt the rest
(ciphertext with the 16-byte tag at its end) with the 32-byte key, parse the UTF-8 JSON. The
message is delivered at least once (retries with backoff until a 2xx); the master de-duplicates
by `id`, which stays the same across retries.
"""

from __future__ import annotations

from dataclasses import dataclass

from integrations.follower.models import AdjustmentSource, MasterAdjustment
from integrations.follower.services import adjustment_send_to_master
from loyalty.models import Member
from points import services as point_services
from points.models import PointProgram, Transfer


@dataclass(frozen=True)
class AdjustOutcome:
    sent_to_master: bool
    transfer: Transfer | None = None  # master program: the ledger entry
    adjustment: MasterAdjustment | None = None  # follower program: what went to the master


def points_adjust(
    *,
    program: PointProgram,
    member: Member,
    amount: int,
    reason: str,
    actor_user=None,
    automation: dict | None = None,
) -> AdjustOutcome:
    """Adjust a member's points the way the program's mode wants.

    Master program: a ledger adjustment (points.services.adjust), source "Manual" for an
    operator, "Automation" for an automation. Follower program: an encrypted webhook to the
    master (adjustment_send_to_master); nothing moves locally. `automation` is {Reason,
    ProcessId, WorkflowId, WorkflowName}; without it the adjustment is the operator's
    (`actor_user`). Raises what the chosen service raises (points.exceptions.PointsError
    subclasses for refusals).
    """
    source = AdjustmentSource.AUTOMATION if automation is not None else AdjustmentSource.MANUAL
    if program.is_follower:
        adjustment = adjustment_send_to_master(
            program=program,
            member=member,
            amount=amount,
            description=reason,
            source=source,
            operator=actor_user,
            automation=automation,
        )
        return AdjustOutcome(sent_to_master=True, adjustment=adjustment)
    if automation is not None:
        actor = f"automation:{automation.get('WorkflowId') or automation.get('ProcessId') or ''}"
    elif actor_user is not None:
        actor = f"user:{actor_user.pk}"
    else:
        actor = "system"
    transfer = point_services.adjust(
        program=program,
        member=member,
        amount=amount,
        reason=reason,
        actor=actor,
        source=str(source),
    )
    return AdjustOutcome(sent_to_master=False, transfer=transfer)
