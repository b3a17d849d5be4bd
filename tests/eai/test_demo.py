"""seed_demo's `eai_vendor` part: an RS256 vendor on the demo program, credentials reset per run."""

from __future__ import annotations

import pytest

from integrations.eai.models import SigningKey, Vendor
from integrations.eai.selectors import vendor_for_credentials
from loyalty.demo import demo_seed

pytestmark = pytest.mark.django_db


def test_seed_demo_makes_an_rs256_vendor_and_resets_its_secret_on_every_run():
    first = demo_seed()["eai_vendor"]
    second = demo_seed()["eai_vendor"]

    assert set(first) == {"username", "password", "vendor_id", "sso_algorithm", "sso_audience"}
    assert Vendor.objects.count() == 1
    vendor = Vendor.objects.get()
    assert (second["vendor_id"], second["username"]) == (first["vendor_id"], first["username"])
    assert str(vendor.pk) == first["vendor_id"]
    assert vendor.program.key == "default"
    assert (second["sso_algorithm"], second["sso_audience"]) == ("RS256", vendor.sso_audience)
    assert second["password"] != first["password"]
    assert vendor_for_credentials(username=second["username"], secret=second["password"]) == vendor
    assert vendor_for_credentials(username=first["username"], secret=first["password"]) is None
    assert SigningKey.objects.count() == 1
