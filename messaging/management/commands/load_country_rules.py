from django.core.management.base import BaseCommand

from messaging.country_rules import load_rules
from messaging.models import CountryRule


class Command(BaseCommand):
    help = "Load destination-country rules from messaging/data/country_rules.csv (keeps staff edits)."

    def add_arguments(self, parser):
        parser.add_argument("--update", action="store_true", help="Overwrite existing rows with the file's values.")

    def handle(self, *args, update=False, **options):
        created, updated = load_rules(CountryRule, update=update)
        self.stdout.write(f"Country rules: {created} created, {updated} updated.")
