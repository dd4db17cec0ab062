from django.core.management.base import BaseCommand

from messaging.crypto import generate_key


class Command(BaseCommand):
    help = "Print a new key for FIELD_ENCRYPTION_KEYS (put it first; keep the old ones until rotate_secrets ran)."

    def handle(self, *args, **options):
        self.stdout.write(generate_key())
