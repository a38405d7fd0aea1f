#!/usr/bin/env bash
# Run the test suite. Installs what it needs into .venv; talks to PostgreSQL and Redis at 127.0.0.1
# unless DATABASE_URL / REDIS_URL say otherwise. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/whatsapp}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/15}"
export VAR_DIR="${VAR_DIR:-$PWD/var/test}"
export DJANGO_SETTINGS_MODULE=config.settings
# Keys for this run (DEBUG is off, as in production, so the settings require them).
export DJANGO_SECRET_KEY="${DJANGO_SECRET_KEY:-$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))')}"
export FIELD_ENCRYPTION_KEYS="${FIELD_ENCRYPTION_KEYS:-$(.venv/bin/python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')}"
exec .venv/bin/python -m pytest "$@"
