"""Credentials are encrypted at rest, and keys rotate."""

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from core import crypto
from whatsapp.models import Provider
from whatsapp.services.providers import provider_create

pytestmark = pytest.mark.django_db

SECRET = "EAAG-super-secret-access-token-123"


def _raw_credentials_column(provider_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM whatsapp_provider WHERE id = %s", [provider_id])
        return cursor.fetchone()[0]


def _meta(name="Meta main"):
    return provider_create(kind="meta", name=name, options={
        "phone_number_id": "1111", "waba_id": "2222", "access_token": SECRET, "app_secret": "app-secret-xyz",
        "verify_token": "verify-me-please"})


def test_raw_column_holds_no_plaintext():
    provider = _meta()
    raw = _raw_credentials_column(provider.pk)
    for secret in (SECRET, "app-secret-xyz", "verify-me-please", "access_token"):
        assert secret not in raw
    assert Provider.objects.get(pk=provider.pk).credentials["access_token"] == SECRET


def test_database_dump_shows_no_plaintext_credential():
    _meta()
    out = io.StringIO()
    call_command("dumpdata", "whatsapp.provider", stdout=out)
    dump = out.getvalue()
    assert "Meta main" in dump
    assert SECRET not in dump and "app-secret-xyz" not in dump


def test_value_written_with_old_key_still_reads_after_rotation(settings):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old_key]
    provider = _meta()
    written_with_old = _raw_credentials_column(provider.pk)

    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    assert Provider.objects.get(pk=provider.pk).credentials["access_token"] == SECRET

    call_command("rotate_encryption_keys", stdout=io.StringIO())
    assert _raw_credentials_column(provider.pk) != written_with_old

    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    assert Provider.objects.get(pk=provider.pk).credentials["access_token"] == SECRET


def test_unknown_key_fails_clearly(settings):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    provider = _meta()
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(crypto.DecryptionError):
        Provider.objects.get(pk=provider.pk)


@pytest.mark.django_db(transaction=True)
def test_pg_dump_shows_no_plaintext_credential():
    import os
    import shutil
    import subprocess

    if connection.vendor != "postgresql":
        pytest.skip("pg_dump needs PostgreSQL")
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "pg_dump (postgresql-client) is needed for this test"
    provider = _meta("Meta dumped")
    database = connection.settings_dict
    dump = subprocess.run(
        [pg_dump, "--data-only", "--table=whatsapp_provider", "-h", database["HOST"] or "127.0.0.1",
         "-p", str(database["PORT"] or 5432), "-U", database["USER"] or "postgres", database["NAME"]],
        capture_output=True, text=True, check=True, timeout=60,
        env={**os.environ, "PGPASSWORD": database["PASSWORD"] or ""},
    ).stdout
    assert "Meta dumped" in dump and str(provider.public_id) in dump
    for secret in (SECRET, "app-secret-xyz", "verify-me-please"):
        assert secret not in dump
