from django.core.management.base import BaseCommand, CommandError

from analytics.management.commands._range import add_range_arguments, day_argument
from analytics.services.rollups import counts_check


class Command(BaseCommand):
    help = ("Compare the rolled-up figures of a range of whole UTC days with a direct count of the rows they "
            "describe. Exits 1 and names each difference if they disagree (analytics_rebuild repairs a range). "
            "Rows deleted on purpose, such as an erased contact's messages, stay counted in the figures.")

    def add_arguments(self, parser):
        add_range_arguments(parser)

    def handle(self, *args, **options):
        result = counts_check(day_argument(options["since"]), day_argument(options["until"]))
        span = f"{result.start:%Y-%m-%d} to {result.end:%Y-%m-%d} (exclusive)"
        if result.ok:
            self.stdout.write(f"The figures of {span} match a direct count.")
            return
        for line in result.differences[:200]:
            self.stdout.write(line)
        raise CommandError(f"{len(result.differences)} figure(s) of {span} differ from a direct count.")
