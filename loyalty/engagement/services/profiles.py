"""Customer profiles: create and change members through the profiles API.

External ids are unique per organisation (the constraint member_external_id_unique_per_org):
every API call is scoped to the calling client's organisation, so "globally unique", as seed 004
puts it, means unique everywhere that client can see. They must not be personal data: an e-mail
address, a phone number or a national-id-shaped value is refused (loyalty.validators).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from loyalty.engagement.exceptions import ExternalIdTaken, InvalidInput
from loyalty.engagement.models import ActivityKind
from loyalty.engagement.services.activity import activity_record
from loyalty.models import Member, Organization
from loyalty.validators import external_id_problem

NAME_MAX_LENGTH = 150
PROFILE_FIELDS = ("first_name", "last_name", "email", "status")
# The contract's names of the fields, for refusals that name them.
WIRE_NAMES = {
    "first_name": "firstName",
    "last_name": "lastName",
    "email": "email",
    "status": "status",
}


def _clean_fields(changes: dict) -> dict:
    cleaned = {}
    for name, value in changes.items():
        wire = WIRE_NAMES[name]
        if name in ("first_name", "last_name"):
            if not isinstance(value, str) or len(value) > NAME_MAX_LENGTH:
                raise InvalidInput(
                    f"{wire}: must be text of at most {NAME_MAX_LENGTH} characters", field=wire
                )
            cleaned[name] = value.strip()
        elif name == "email":
            if not isinstance(value, str):
                raise InvalidInput(f"{wire}: must be an e-mail address", field=wire)
            value = value.strip()
            if value:
                try:
                    validate_email(value)
                except ValidationError:
                    raise InvalidInput(f"{wire}: must be an e-mail address", field=wire) from None
            cleaned[name] = value
        elif name == "status":
            if value not in Member.Status.values:
                raise InvalidInput(
                    f"{wire}: must be one of {', '.join(Member.Status.values)}", field=wire
                )
            cleaned[name] = value
        else:  # pragma: no cover - callers pass only PROFILE_FIELDS
            raise ValueError(f"unknown profile field {name!r}")
    return cleaned


def profile_create(
    *,
    organization: Organization,
    external_id: str,
    first_name: str = "",
    last_name: str = "",
    email: str = "",
    actor: str = "",
) -> Member:
    """Create a customer profile (a Member) of the organisation.

    Raises InvalidInput naming `externalId` when the id is personal data (e-mail, phone, national
    id) or otherwise unacceptable, naming another field when that one is invalid, and
    ExternalIdTaken when the organisation already has a member with this external id. Nothing
    is stored on a refusal.
    """
    if problem := external_id_problem(external_id):
        raise InvalidInput(f"externalId: {problem}", field="externalId")
    fields = _clean_fields({"first_name": first_name, "last_name": last_name, "email": email})
    with transaction.atomic():
        try:
            # A savepoint: the unique constraint decides between concurrent creators.
            with transaction.atomic():
                member = Member.objects.create(
                    organization=organization, external_id=external_id, **fields
                )
        except IntegrityError:
            raise ExternalIdTaken(field="externalId") from None
        activity_record(
            member=member,
            kind=ActivityKind.PROFILE_CREATED,
            summary="Profile created",
            actor=actor,
        )
    return member


def profile_update(*, member: Member, changes: dict, actor: str = "") -> Member:
    """Change the profile fields in `changes` (first_name, last_name, email, status).

    The external id cannot be changed: partners' systems key their data by it. Raises
    InvalidInput naming the field at fault; nothing is changed then. Records what changed in
    the activity log (field names only: the values are personal data).
    """
    unknown = set(changes) - set(PROFILE_FIELDS)
    if unknown:
        raise ValueError(f"unknown profile fields {sorted(unknown)}")
    cleaned = _clean_fields(changes)
    with transaction.atomic():
        locked = Member.objects.select_for_update().get(pk=member.pk)
        changed = [name for name, value in cleaned.items() if getattr(locked, name) != value]
        if not changed:
            return locked
        for name in changed:
            setattr(locked, name, cleaned[name])
        locked.save(update_fields=[*changed, "updated_at"])
        activity_record(
            member=locked,
            kind=ActivityKind.PROFILE_UPDATED,
            summary="Profile updated: " + ", ".join(WIRE_NAMES[name] for name in changed),
            data={"fields": [WIRE_NAMES[name] for name in changed]},
            actor=actor,
        )
    return locked
