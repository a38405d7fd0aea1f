from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from core.fields import EncryptedJSONField


class Command(BaseCommand):
    help = ("Re-encrypt every stored secret (providers' credentials, alert rules' signing secrets, any encrypted "
            "field) with the first key of FIELD_ENCRYPTION_KEYS.")

    def handle(self, *args, **opts):
        # Found through the app registry, so that every app's encrypted fields are covered without this command
        # knowing the apps.
        for model in apps.get_models():
            fields = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedJSONField)]
            if not fields or model._meta.proxy:
                continue
            count = 0
            with transaction.atomic():
                for row in model._default_manager.select_for_update():
                    # Reading decrypts with whichever key fits; saving encrypts with the first key.
                    row.save(update_fields=fields)
                    count += 1
            self.stdout.write(f"Re-encrypted {', '.join(fields)} of {count} {model._meta.verbose_name_plural}.")
