from django.core.management.base import BaseCommand, CommandError

from whatsapp.services.archive import archive_buckets_configure


class Command(BaseCommand):
    help = ("Apply the current archive settings (lifecycle rules under tiered/, labels, access, soft delete) to "
            "every recorded bucket. Safe to run again.")

    def handle(self, *args, **opts):
        outcomes = archive_buckets_configure()
        for bucket, outcome in outcomes:
            self.stdout.write(f"{bucket}: {outcome}")
        failed = sum(outcome != "configured" for _bucket, outcome in outcomes)
        if failed:
            raise CommandError(f"{failed} of {len(outcomes)} bucket(s) could not be configured; run it again")
        self.stdout.write(f"{len(outcomes)} bucket(s) configured")
