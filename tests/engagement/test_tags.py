"""Tags: add and remove on a profile; list the profiles with a tag, a keyset page at a time."""

import pytest

from loyalty.engagement.models import MemberTag, Tag

pytestmark = pytest.mark.django_db


def test_tags_are_added_once_case_insensitively_and_removed(api, member):
    url = f"/api/v1/customers/{member.external_id}/tags"

    added = api.post(url, {"tags": ["VIP", "newsletter"]}, format="json")
    again = api.post(url, {"tags": ["vip"]}, format="json")
    removed = api.delete(f"{url}/newsletter")
    removed_again = api.delete(f"{url}/newsletter")

    assert added.json() == {"tags": ["newsletter", "vip"], "added": ["vip", "newsletter"]}
    assert again.json() == {"tags": ["newsletter", "vip"], "added": []}
    assert removed.status_code == removed_again.status_code == 204
    assert api.get(url).json() == {"tags": ["vip"]}


def test_a_bad_tag_is_400_and_no_tag_is_added(api, member):
    response = api.post(
        f"/api/v1/customers/{member.external_id}/tags",
        {"tags": ["good", "not a tag!"]},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["details"]["field"] == "tags"
    assert not MemberTag.objects.exists()
    assert not Tag.objects.exists()


def test_profiles_with_a_tag_come_in_keyset_pages_newest_first(api, org, make_member, make_org):
    members = [make_member(org) for _ in range(5)]
    for tagged in members:
        api.post(f"/api/v1/customers/{tagged.external_id}/tags", {"tags": ["vip"]}, format="json")
    outsider = make_member(make_org())
    Tag.objects.create(organization=outsider.organization, name="vip")

    seen, cursor = [], None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = api.get(f"/api/v1/tags/vip/customers{query}").json()
        seen.extend(item["externalId"] for item in body["results"])
        cursor = body["nextCursor"]
        if cursor is None:
            break

    assert seen == [m.external_id for m in reversed(members)]


def test_an_operator_tags_and_untags_a_member_in_the_admin(admin_client, org, member):
    from loyalty.engagement.models import ActivityEntry

    tag = Tag.objects.create(organization=org, name="vip")

    added = admin_client.post(
        "/admin/engagement/membertag/add/", {"member": member.pk, "tag": tag.pk}
    )
    member_tag = MemberTag.objects.get(member=member, tag=tag)
    deleted = admin_client.post(
        f"/admin/engagement/membertag/{member_tag.pk}/delete/", {"post": "yes"}
    )

    assert added.status_code == deleted.status_code == 302
    assert not MemberTag.objects.exists()
    assert [e.kind for e in ActivityEntry.objects.filter(member=member).order_by("id")] == [
        "tag_added",
        "tag_removed",
    ]


def test_the_admin_refuses_a_malformed_tag_name(admin_client, org):
    response = admin_client.post(
        "/admin/engagement/tag/add/", {"organization": org.pk, "name": "Not A Tag!"}
    )

    assert response.status_code == 200
    assert not Tag.objects.exists()
