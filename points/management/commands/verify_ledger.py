"""`manage.py verify_ledger`: check every ledger invariant; exit non-zero on any mismatch."""

from django.core.management.base import BaseCommand, CommandError

from points.selectors import ledger_verify


class Command(BaseCommand):
    help = "Check the ledger's invariants for every program and account (DESIGN.md, The ledger)."

    def handle(self, *args, **options):
        report = ledger_verify()
        self.stdout.write(
            f"checked {report.programs_checked} programs, {report.accounts_checked} accounts, "
            f"{report.transfers_checked} transfers: transfers sum to zero per program; per member "
            "account balance == posted credits - debits == remaining of active lots, held == open "
            "holds, pending == pending lots, 0 <= held <= balance"
        )
        for mismatch in report.mismatches:
            self.stderr.write(f"MISMATCH {mismatch}")
        if not report.ok:
            raise CommandError(f"{len(report.mismatches)} ledger mismatches")
        self.stdout.write(self.style.SUCCESS("ledger OK"))
