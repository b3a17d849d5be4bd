"""A Hypothesis state machine drives random ledger operations with moving time and checks
every invariant of DESIGN.md's ledger section after each step."""

import datetime as dt
import itertools

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from loyalty.models import Member, Organization
from points import services
from points.exceptions import HoldAlreadyResolved, HoldExpired, InsufficientPoints
from points.models import Hold, HoldStatus, PointProgram
from points.selectors import balance_get, ledger_verify

pytestmark = pytest.mark.django_db

_runs = itertools.count()


class LedgerMachine(RuleBasedStateMachine):
    """Model: the points each member should have; the ledger must agree after every step."""

    @initialize()
    def setup(self):
        run = next(_runs)
        org = Organization.objects.create(name=f"stateful {run}", slug=f"stateful-{run}")
        self.program = PointProgram.objects.create(
            organization=org, key="default", name="p", definition_id=1, hold_ttl_seconds=600
        )
        services.program_system_accounts_ensure(program=self.program)
        self.members = [
            Member.objects.create(organization=org, external_id=f"m{i}") for i in range(2)
        ]
        self.now = timezone.now()
        self.transaction_ids = itertools.count()
        self.holds: list[str] = []
        self.owner = f"vendor:stateful-{run}"

    def _member(self, index):
        return self.members[index % len(self.members)]

    @rule(
        who=st.integers(0, 1),
        amount=st.integers(1, 200),
        validity=st.sampled_from([None, 1, 5]),
        delay=st.sampled_from([0, 0, 2]),
    )
    def earn(self, who, amount, validity, delay):
        valid_from = self.now + dt.timedelta(hours=delay)
        valid_to = valid_from + dt.timedelta(hours=validity) if validity else None
        services.earn(
            program=self.program,
            member=self._member(who),
            amount=amount,
            valid_from=valid_from,
            valid_to=valid_to,
            now=self.now,
        )

    @rule(who=st.integers(0, 1), amount=st.integers(1, 300))
    def burn(self, who, amount):
        member = self._member(who)
        available = balance_get(program=self.program, member=member).available
        try:
            services.burn(program=self.program, member=member, amount=amount)
        except InsufficientPoints:
            assert amount > available
        else:
            assert amount <= available

    @rule(who=st.integers(0, 1), amount=st.integers(1, 300))
    def hold(self, who, amount):
        member = self._member(who)
        available = balance_get(program=self.program, member=member).available
        transaction_id = f"t{next(self.transaction_ids)}"
        try:
            services.hold_create(
                program=self.program,
                member=member,
                amount=amount,
                owner=self.owner,
                transaction_id=transaction_id,
                now=self.now,
            )
        except InsufficientPoints:
            assert amount > available
        else:
            self.holds.append(transaction_id)

    @precondition(lambda self: self.holds)
    @rule(pick=st.integers(0, 1000), confirm=st.booleans())
    def resolve(self, pick, confirm):
        transaction_id = self.holds[pick % len(self.holds)]
        action = services.hold_confirm if confirm else services.hold_rollback
        try:
            action(owner=self.owner, transaction_id=transaction_id, now=self.now)
        except (HoldAlreadyResolved, HoldExpired):
            hold = Hold.objects.get(owner=self.owner, transaction_id=transaction_id)
            assert hold.status != HoldStatus.HELD or hold.expires_at <= self.now

    @rule(hours=st.sampled_from([1, 3, 12]))
    def time_passes(self, hours):
        self.now += dt.timedelta(hours=hours)

    @rule()
    def run_jobs(self):
        services.activate_due_lots(now=self.now)
        services.expire_stale_holds(now=self.now)
        services.expire_due_lots(now=self.now)

    @invariant()
    def ledger_is_consistent(self):
        if not hasattr(self, "program"):
            return
        report = ledger_verify(program=self.program)
        assert report.ok, report.mismatches


def test_ledger_invariants_hold_under_random_operations():
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
