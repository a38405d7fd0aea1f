"""
Encryption at rest for credentials: MultiFernet over FIELD_ENCRYPTION_KEYS. The first key encrypts,
every key decrypts, so a key is rotated by putting the new one first and running `rotate_encryption_keys`.
"""

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionError(Exception):
    pass


def _dev_key() -> bytes:
    # Only with DEBUG on (settings refuse to load without FIELD_ENCRYPTION_KEYS otherwise): a key derived
    # from SECRET_KEY, so development data stays readable while the key stays the same.
    digest = hashlib.sha256(("field-encryption:" + settings.SECRET_KEY).encode()).digest()
    return base64.urlsafe_b64encode(digest)


@lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS must be comma-separated Fernet keys "
            "(make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
        ) from exc


def get_fernet() -> MultiFernet:
    keys = tuple(settings.FIELD_ENCRYPTION_KEYS) or (_dev_key().decode(),)
    return _fernet(keys)


def encrypt_text(plaintext: str) -> str:
    return get_fernet().encrypt(plaintext.encode()).decode()


def decrypt_text(token: str) -> str:
    try:
        return get_fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("value cannot be decrypted with any key in FIELD_ENCRYPTION_KEYS") from exc
