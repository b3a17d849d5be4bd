"""`manage.py seed_demo [--json]`: create (idempotently) the demo data and print its credentials."""

import json

from django.core.management.base import BaseCommand

from loyalty.demo import demo_seed


class Command(BaseCommand):
    help = "Create the demo organisation, program, members and clients; reset demo credentials."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print everything as JSON.")

    def handle(self, *args, **options):
        data = demo_seed()
        if options["json"]:
            self.stdout.write(json.dumps(data, indent=2))
            return
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        self.stdout.write(
            f"  operator console: /admin/  user {data['admin']['username']}  "
            f"password {data['admin']['password']}"
        )
        for member in data["members"]:
            self.stdout.write(
                f"  member portal:    /portal/login/  {member['email']}  "
                f"password {member['password']}  ({member['points']} points)"
            )
        self.stdout.write(f"  organisation id: {data['org_id']}")
        # In full: these are the credentials a developer copies into a client.
        for key in ("partner", "eai_vendor", "follower", "rewards_service"):
            if data[key]:
                self.stdout.write(f"  {key}: {json.dumps(data[key])}")
