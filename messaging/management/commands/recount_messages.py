from django.conf import settings
from django.core.management.base import BaseCommand

from messaging.models import DailyMessageCount


class Command(BaseCommand):
    help = (
        "Recount the daily message rollup (dashboard charts, usage statements) for every day retention has not "
        "reached — after an upgrade that added to it; the periodic task recounts only the last fortnight."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days", type=int, default=settings.MESSAGE_RETENTION_MAX_DAYS, help="How many days back (today included)."
        )

    def handle(self, *args, days: int, **options):
        rows = DailyMessageCount.recompute(days)
        self.stdout.write(f"Daily message counts: {rows} rows for the last {days} days (days retention reached kept).")
