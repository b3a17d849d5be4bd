"""Portal pages: members see their own data, anonymous visitors are sent to sign in."""

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse

from loyalty.selectors import SESSION_MEMBER_KEY
from points import services

pytestmark = pytest.mark.django_db

MEMBER_PAGES = [
    "portal:dashboard",
    "portal:history",
    "portal:profile",
    "portal:store",
    "portal:my-rewards",
    "portal:partners",
]


@pytest.fixture
def person(member):
    user = get_user_model().objects.create_user("alice@example.com", "alice@example.com", "pw")
    member.user = user
    member.save()
    return user


@pytest.fixture
def signed_in(client, person):
    client.force_login(person)
    return client


@pytest.mark.parametrize("name", MEMBER_PAGES)
def test_every_member_page_renders_for_a_member(signed_in, name, program, member):
    services.earn(program=program, member=member, amount=10)
    assert signed_in.get(reverse(name)).status_code == 200


@pytest.mark.parametrize("name", MEMBER_PAGES)
def test_anonymous_visitors_are_sent_to_sign_in(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response.url.startswith("/portal/login/?next=")


def test_sign_in_with_email_and_password_shows_the_balance(client, person, program, member):
    services.earn(program=program, member=member, amount=321)
    response = client.post(
        "/portal/login/", {"username": "alice@example.com", "password": "pw"}, follow=True
    )
    assert response.status_code == 200
    assert b'data-testid="available-default">321<' in response.content


def test_wrong_password_shows_a_message_not_an_error_page(client, person):
    response = client.post("/portal/login/", {"username": "alice@example.com", "password": "no"})
    assert response.status_code == 200
    assert b"did not match" in response.content


def test_a_member_never_sees_another_members_history(signed_in, org, program, member, make_member):
    other = make_member(org)
    services.earn(program=program, member=other, amount=77, description="other's secret order")
    services.earn(program=program, member=member, amount=5, description="my order")

    response = signed_in.get(reverse("portal:history"))

    assert b"my order" in response.content
    assert b"other&#x27;s secret order" not in response.content
    assert b"secret order" not in response.content


def test_history_filters_by_direction(signed_in, program, member):
    services.earn(program=program, member=member, amount=50, description="bought shoes")
    services.burn(program=program, member=member, amount=20, description="spent on socks")

    credits = signed_in.get(reverse("portal:history"), {"direction": "credit"}).content
    debits = signed_in.get(reverse("portal:history"), {"direction": "debit"}).content

    assert b"bought shoes" in credits and b"spent on socks" not in credits
    assert b"spent on socks" in debits and b"bought shoes" not in debits


def test_profile_shows_external_id_read_only_and_saves_names(signed_in, member):
    response = signed_in.post(
        reverse("portal:profile"),
        {"first_name": "Alicia", "last_name": "A", "email": "a@example.com", "external_id": "x"},
    )
    assert response.status_code == 302
    external_id = member.external_id
    member.refresh_from_db()
    assert member.first_name == "Alicia"
    assert member.external_id == external_id  # not a field of the form: posted values are ignored


def test_a_login_in_two_organisations_chooses_one(client, person, member, make_org, make_member):
    other_org = make_org(name="Other shop")
    second = make_member(other_org, user=person)
    client.force_login(person)

    assert client.get(reverse("portal:dashboard")).url == reverse("portal:choose-organization")
    client.post(reverse("portal:choose-organization"), {"member": str(second.pk)})

    assert client.session[SESSION_MEMBER_KEY] == str(second.pk)
    assert client.get(reverse("portal:dashboard")).status_code == 200


def test_choosing_someone_elses_membership_is_refused(
    client, person, member, make_org, make_member
):
    make_member(make_org(), user=person)
    stranger = make_member(make_org())
    client.force_login(person)

    client.post(reverse("portal:choose-organization"), {"member": str(stranger.pk)})

    assert SESSION_MEMBER_KEY not in client.session


def test_password_reset_mails_a_link_that_sets_a_new_password(client, person):
    client.post(reverse("portal:password_reset"), {"email": "alice@example.com"})
    assert len(mail.outbox) == 1
    link = next(line for line in mail.outbox[0].body.splitlines() if "/portal/reset/" in line)
    path = link.split("testserver", 1)[1]

    form_page = client.get(path, follow=True)
    response = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": "A-much-better-pass-42", "new_password2": "A-much-better-pass-42"},
    )

    assert response.status_code == 302
    person.refresh_from_db()
    assert person.check_password("A-much-better-pass-42")


def test_sign_out_needs_post_and_ends_the_session(signed_in):
    assert signed_in.get(reverse("portal:logout")).status_code == 405
    signed_in.post(reverse("portal:logout"))
    assert signed_in.get(reverse("portal:dashboard")).status_code == 302


def test_dashboard_shows_the_tier_and_progress_to_the_next(signed_in, program, member):
    from loyalty.engagement.models import Tier
    from loyalty.engagement.services import tier_save

    tier_save(tier=Tier(program=program, name="Silver", threshold=0))
    tier_save(tier=Tier(program=program, name="Gold", threshold=100))
    services.earn(program=program, member=member, amount=40)

    html = signed_in.get(reverse("portal:dashboard")).content.decode()

    assert 'data-testid="tier-default">Silver<' in html
    assert "60 points to Gold" in html


def test_a_form_without_a_valid_csrf_token_gets_a_clear_page(person, program, member):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(person)

    response = strict.post(reverse("portal:profile"), {"first_name": "X"})

    assert response.status_code == 403
    assert b"your session has expired" in response.content
    member.refresh_from_db()
    assert member.first_name != "X"
