from django.core.management.base import BaseCommand

from analytics.management.commands._range import add_range_arguments, day_argument
from analytics.services.rollups import counts_rebuild


class Command(BaseCommand):
    help = ("Recount the hourly and per-template figures of a range of whole UTC days from the messages, "
            "contacts, consent changes and AI calls, replacing what was rolled up. Safe while the platform runs.")

    def add_arguments(self, parser):
        add_range_arguments(parser)

    def handle(self, *args, **options):
        result = counts_rebuild(day_argument(options["since"]), day_argument(options["until"]))
        self.stdout.write(f"Rebuilt {result.start:%Y-%m-%d} to {result.end:%Y-%m-%d} (exclusive):")
        for name, rows in result.rows.items():
            self.stdout.write(f"  {name}: {rows} row(s)")
