"""Tags on customer profiles: add and remove (both idempotent), created on first use."""

from __future__ import annotations

import re

from django.db import IntegrityError, transaction

from loyalty.engagement.exceptions import InvalidInput
from loyalty.engagement.models import ActivityKind, MemberTag, Tag
from loyalty.engagement.services.activity import activity_record
from loyalty.models import Member, Organization

TAG_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._:\-]{0,63}$")
MAX_TAGS_PER_REQUEST = 50


def tag_name_clean(value: object, *, field: str = "tags") -> str:
    """Tags are case-insensitive: stored lower case. Raises InvalidInput naming `field`."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: a tag must be text", field=field)
    name = value.strip().lower()
    if not TAG_NAME_RE.match(name):
        raise InvalidInput(
            f"{field}: {value!r} is not a tag (1-64 letters, digits and . _ : -)", field=field
        )
    return name


def _tag_get_or_create(*, organization: Organization, name: str) -> Tag:
    tag = Tag.objects.filter(organization=organization, name=name).first()
    if tag is not None:
        return tag
    try:
        with transaction.atomic():
            return Tag.objects.create(organization=organization, name=name)
    except IntegrityError:
        return Tag.objects.get(organization=organization, name=name)


def member_tags_add(*, member: Member, names: list, actor: str = "") -> list[str]:
    """Tag the member with every name (already present ones are left as they are).

    Returns the names that were added now. Raises InvalidInput (field tags) for a bad name or
    too many names; nothing is added then.
    """
    if not isinstance(names, list) or not names:
        raise InvalidInput("tags: must be a non-empty list of tags", field="tags")
    if len(names) > MAX_TAGS_PER_REQUEST:
        raise InvalidInput(f"tags: at most {MAX_TAGS_PER_REQUEST} at a time", field="tags")
    cleaned = list(dict.fromkeys(tag_name_clean(name) for name in names))
    added = []
    with transaction.atomic():
        for name in cleaned:
            tag = _tag_get_or_create(organization=member.organization, name=name)
            try:
                with transaction.atomic():
                    MemberTag.objects.create(member=member, tag=tag)
            except IntegrityError:
                continue  # already tagged (perhaps by a concurrent request)
            added.append(name)
            activity_record(
                member=member,
                kind=ActivityKind.TAG_ADDED,
                summary=f"Tagged {name}",
                data={"tag": name},
                actor=actor,
            )
    return added


def member_tag_remove(*, member: Member, name: str, actor: str = "") -> bool:
    """Remove a tag from the member; returns whether it was there. Raises InvalidInput."""
    name = tag_name_clean(name, field="tag")
    with transaction.atomic():
        removed, _ = MemberTag.objects.filter(
            member=member, tag__organization_id=member.organization_id, tag__name=name
        ).delete()
        if removed:
            activity_record(
                member=member,
                kind=ActivityKind.TAG_REMOVED,
                summary=f"Untagged {name}",
                data={"tag": name},
                actor=actor,
            )
    return bool(removed)
