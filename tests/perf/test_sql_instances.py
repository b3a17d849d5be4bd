"""loyalty.sql.Columns: rows of the hot paths' statements back into instances as the ORM loads
them, built without Model.__init__ unless something listens to the init signals."""

import pytest
from django.db.models.signals import post_init

from loyalty import sql
from loyalty.models import Member

pytestmark = pytest.mark.django_db

MEMBER_COLUMNS = sql.Columns(Member)
MEMBER_NAME_COLUMNS = sql.Columns(Member, ["id", "organization", "external_id"])


def _row(columns: sql.Columns, member: Member):
    table = Member._meta.db_table
    return sql.fetch_one(
        f'SELECT {columns.select("m")} FROM "{table}" m WHERE m."id" = %s',  # noqa: S608
        [sql.param(Member, "id", member.pk)],
    )


def _field_values(instance: Member) -> dict:
    return {
        field.attname: getattr(instance, field.attname) for field in Member._meta.concrete_fields
    }


def test_an_instance_from_a_row_is_the_one_the_orm_loads(member):
    # given a member's full row, read by a hot-path statement
    built = MEMBER_COLUMNS.instance(_row(MEMBER_COLUMNS, member))
    loaded = Member.objects.get(pk=member.pk)

    # then it holds the ORM's values, as a saved instance of the default database
    assert _field_values(built) == _field_values(loaded)
    assert built == loaded
    assert (built._state.adding, built._state.db) == (False, "default")
    assert built.get_deferred_fields() == set()
    # ... whose relations load on access, and whose save updates the row it came from
    assert built.organization == member.organization
    built.first_name = "Renamed"
    built.save(update_fields=["first_name"])
    assert Member.objects.get(pk=member.pk).first_name == "Renamed"
    assert Member.objects.filter(external_id=member.external_id).count() == 1


def test_fields_not_selected_stay_deferred_as_the_orm_leaves_them(member):
    built = MEMBER_NAME_COLUMNS.instance(_row(MEMBER_NAME_COLUMNS, member))
    loaded = Member.objects.only("id", "organization", "external_id").get(pk=member.pk)

    assert built.get_deferred_fields() == loaded.get_deferred_fields() != set()
    assert built.external_id == member.external_id
    assert built.first_name == member.first_name  # loaded on access, as the ORM does


def test_an_init_signal_receiver_sees_instances_built_from_rows(member):
    # given something that listens to post_init for members (as an ImageField's model has)
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance.pk)

    post_init.connect(receiver, sender=Member)
    try:
        # when a row becomes an instance, then Model.__init__ ran and told it
        built = MEMBER_COLUMNS.instance(_row(MEMBER_COLUMNS, member))
    finally:
        post_init.disconnect(receiver, sender=Member)
    assert seen == [member.pk]
    assert _field_values(built) == _field_values(Member.objects.get(pk=member.pk))
