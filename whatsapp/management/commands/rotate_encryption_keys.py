from django.core.management.base import BaseCommand
from django.db import transaction

from whatsapp.models import Provider


class Command(BaseCommand):
    help = "Re-encrypt every stored credential with the first key of FIELD_ENCRYPTION_KEYS."

    def handle(self, *args, **opts):
        count = 0
        with transaction.atomic():
            for provider in Provider.objects.select_for_update():
                # Reading decrypts with whichever key fits; saving encrypts with the first key.
                provider.save(update_fields=["credentials"])
                count += 1
        self.stdout.write(f"Re-encrypted the credentials of {count} provider(s).")
