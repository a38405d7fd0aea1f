import json
from typing import Any

from django.db import models

from core import crypto


class EncryptedJSONField(models.TextField):
    """
    A JSON object stored as one Fernet token: the column never holds plaintext, so a database dump
    shows no credential. Not searchable, by design.
    """

    description = "JSON object encrypted at rest"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("default", dict)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def from_db_value(self, value: str | None, expression, connection) -> dict:
        if not value:
            return {}
        return json.loads(crypto.decrypt_text(value))

    def to_python(self, value: Any) -> dict:
        if isinstance(value, dict):
            return value
        if not value:
            return {}
        return json.loads(crypto.decrypt_text(value))

    def get_prep_value(self, value: Any) -> str:
        return crypto.encrypt_text(json.dumps(value or {}, sort_keys=True))

    def value_to_string(self, obj: models.Model) -> str:
        # dumpdata and serializers get the ciphertext, never the secret.
        return self.get_prep_value(self.value_from_object(obj))
