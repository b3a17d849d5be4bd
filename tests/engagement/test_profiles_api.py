"""Profiles API: create, read (light, or with includes), change; PII ids refused; tenants apart."""

import pytest
from rest_framework.test import APIClient

from loyalty.engagement.models import ActivityEntry
from loyalty.models import Member
from points import services as point_services

pytestmark = pytest.mark.django_db


def test_create_profile_returns_the_platform_id_and_the_external_id(api, org):
    response = api.post(
        "/api/v1/customers",
        {
            "externalId": "cust-0001",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "email": "ada@example.com",
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    member = Member.objects.get(organization=org, external_id="cust-0001")
    assert body["id"] == str(member.pk)
    assert (body["externalId"], body["firstName"], body["email"]) == (
        "cust-0001",
        "Ada",
        "ada@example.com",
    )
    assert set(body) == {
        "id",
        "externalId",
        "firstName",
        "lastName",
        "email",
        "status",
        "createdAt",
        "updatedAt",
    }
    assert ActivityEntry.objects.get(member=member).kind == "profile_created"


@pytest.mark.parametrize(
    ("external_id", "reason"),
    [
        ("ada@example.com", "must not be an e-mail address"),
        ("+46 70 123 45 67", "must not be a phone number"),
        ("(555) 123-4567", "must not be a phone number"),
        ("123-45-6789", "must not be a national id number"),
        ("19900101-1234", "must not be a national id number"),
        ("ada lovelace", "may contain only letters, digits"),
    ],
)
def test_pii_shaped_external_ids_are_refused_with_the_reason_and_nothing_is_created(
    api, org, external_id, reason
):
    response = api.post(
        "/api/v1/customers", {"externalId": external_id, "firstName": "Ada"}, format="json"
    )

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_parameters"
    assert body["message"].startswith("invalid parameters: externalId: ")
    assert reason in body["message"]
    assert "externalId" in body["details"]["fields"]
    assert not Member.objects.filter(organization=org).exists()
    assert not ActivityEntry.objects.exists()


def test_opaque_external_ids_such_as_seed_002s_are_accepted(api):
    response = api.post("/api/v1/customers", {"externalId": "111111fa6-4b2c-9d1e"}, format="json")
    assert response.status_code == 201


def test_a_taken_external_id_is_409_and_the_first_profile_is_unchanged(api, org, member):
    response = api.post(
        "/api/v1/customers",
        {"externalId": member.external_id, "firstName": "Somebody else"},
        format="json",
    )

    assert response.status_code == 409
    assert response.json()["code"] == "external_id_taken"
    member.refresh_from_db()
    assert member.first_name == "Test"
    assert Member.objects.filter(organization=org).count() == 1


def test_the_same_external_id_may_exist_in_another_organisation(make_org, make_member, api):
    other = make_member(make_org(), external_id="shared-id")

    response = api.post("/api/v1/customers", {"externalId": "shared-id"}, format="json")

    assert response.status_code == 201
    assert response.json()["id"] != str(other.pk)


def test_unknown_fields_and_bad_email_are_refused_by_name(api, org):
    unknown = api.post("/api/v1/customers", {"externalId": "c-1", "phone": "1"}, format="json")
    bad_email = api.post(
        "/api/v1/customers", {"externalId": "c-2", "email": "not-an-address"}, format="json"
    )

    assert unknown.status_code == 400
    assert unknown.json()["details"]["fields"] == {"phone": ["unknown field"]}
    assert bad_email.status_code == 400
    assert bad_email.json()["details"]["field"] == "email"
    assert not Member.objects.filter(organization=org).exists()


def test_get_by_external_id_and_by_platform_id(api, member):
    by_external = api.get(f"/api/v1/customers/{member.external_id}")
    by_platform = api.get(f"/api/v1/customers/{member.pk}")

    assert by_external.status_code == by_platform.status_code == 200
    assert by_external.json() == by_platform.json()
    assert by_external.json()["id"] == str(member.pk)


def test_light_profile_costs_two_queries(api, member, django_assert_num_queries):
    # the token with its client (one joined query), the member
    with django_assert_num_queries(2):
        response = api.get(f"/api/v1/customers/{member.external_id}")
    assert response.status_code == 200
    assert "wallet" not in response.json()


def test_include_adds_the_heavier_parts_only_on_request(api, program, member):
    point_services.earn(program=program, member=member, amount=120)

    response = api.get(f"/api/v1/customers/{member.external_id}?include=wallet,tier,tags,campaigns")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["wallet"]["points"] == [
        {
            "programKey": program.key,
            "programName": program.name,
            "mode": "master",
            "balance": 120,
            "available": 120,
            "held": 0,
            "pending": 0,
            "expiringSoon": 0,
            "lifetimeEarned": 120,
        }
    ]
    assert body["tiers"] == []
    assert body["tags"] == []
    assert body["campaigns"] == []


def test_an_unknown_include_is_400(api, member):
    response = api.get(f"/api/v1/customers/{member.external_id}?include=wallet,everything")
    assert response.status_code == 400
    assert response.json()["details"]["field"] == "include"


def test_patch_changes_the_named_fields_and_records_which(api, member):
    response = api.patch(
        f"/api/v1/customers/{member.external_id}",
        {"firstName": "Grace", "email": "grace@example.com"},
        format="json",
    )

    assert response.status_code == 200, response.content
    member.refresh_from_db()
    assert (member.first_name, member.last_name, member.email) == (
        "Grace",
        "Member",
        "grace@example.com",
    )
    entry = ActivityEntry.objects.get(member=member, kind="profile_updated")
    assert entry.data == {"fields": ["firstName", "email"]}


def test_patch_cannot_change_the_external_id(api, member):
    response = api.patch(
        f"/api/v1/customers/{member.external_id}", {"externalId": "new-id"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["details"]["field"] == "externalId"
    member.refresh_from_db()
    assert member.external_id != "new-id"


def test_unknown_customer_is_404(api):
    response = api.get("/api/v1/customers/nobody-here")
    assert response.status_code == 404
    assert response.json()["code"] == "customer_not_found"


def test_a_client_without_customers_write_gets_403_and_nothing_is_created(make_api, org):
    reader = make_api(org, scopes=("customers:read",))

    response = reader.post("/api/v1/customers", {"externalId": "c-9"}, format="json")

    assert response.status_code == 403
    assert "customers:write" in response.json()["message"]
    assert not Member.objects.filter(organization=org).exists()


def test_no_token_is_401(member):
    response = APIClient().get(f"/api/v1/customers/{member.external_id}")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_another_organisations_client_gets_404_on_read_and_change_and_nothing_changes(
    make_org, make_api, member
):
    # given a client of another organisation
    outsider = make_api(make_org())
    before = Member.objects.filter(pk=member.pk).values().get()

    # when it reads or changes the member, by external id or by platform id
    responses = [
        outsider.get(f"/api/v1/customers/{member.external_id}"),
        outsider.get(f"/api/v1/customers/{member.pk}"),
        outsider.get(f"/api/v1/customers/{member.external_id}/wallet"),
        outsider.get(f"/api/v1/customers/{member.external_id}/point-log"),
        outsider.get(f"/api/v1/customers/{member.external_id}/activity-log"),
        outsider.patch(
            f"/api/v1/customers/{member.external_id}", {"firstName": "Mallory"}, format="json"
        ),
        outsider.patch(f"/api/v1/customers/{member.pk}", {"status": "blocked"}, format="json"),
        outsider.post(
            f"/api/v1/customers/{member.external_id}/tags", {"tags": ["x"]}, format="json"
        ),
    ]

    # then every answer is 404 and the member is as it was
    assert [r.status_code for r in responses] == [404] * len(responses)
    assert Member.objects.filter(pk=member.pk).values().get() == before
    assert not ActivityEntry.objects.filter(member=member).exists()


def test_every_profiles_endpoint_is_in_the_openapi_schema(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in [
        "/api/v1/customers",
        "/api/v1/customers/{customer_id}",
        "/api/v1/customers/{customer_id}/wallet",
        "/api/v1/customers/{customer_id}/tags",
        "/api/v1/customers/{customer_id}/tags/{tag}",
        "/api/v1/customers/{customer_id}/campaigns",
        "/api/v1/customers/{customer_id}/campaigns/{campaign_id}/opt-in",
        "/api/v1/customers/{customer_id}/purchases",
        "/api/v1/customers/{customer_id}/redemptions",
        "/api/v1/customers/{customer_id}/point-log",
        "/api/v1/customers/{customer_id}/activity-log",
        "/api/v1/tags/{tag}/customers",
        "/api/v1/events",
        "/api/v1/campaigns",
        "/api/v1/stores",
        "/api/v1/stores/{store_key}/offers",
    ]:
        assert path in paths, path
    event = paths["/api/v1/events"]["post"]
    assert "201" in event["responses"] and "409" in event["responses"]
