#!/usr/bin/env bash
# Run the whole platform on one machine: web server, Celery worker and Celery beat.
# With no environment variables it uses embedded defaults (SQLite, a filesystem broker, local storage).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"
export PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-http://127.0.0.1:${PORT}}"
export DJANGO_SETTINGS_MODULE=config.settings

# DEBUG is off, so the platform needs real keys: made once for this installation and kept in var/.
KEYS_FILE=var/local-keys.env
if [ ! -f "$KEYS_FILE" ]; then
  mkdir -p var
  # A database from before keys were required holds credentials encrypted with a key derived from the
  # secret key it ran with: that key stays second, for reading them (the first encrypts).
  LEGACY_DATABASE=""
  if [ -f var/db.sqlite3 ] || [ -n "${DATABASE_URL:-}" ]; then LEGACY_DATABASE=1; fi
  (umask 077 && LEGACY_DATABASE="$LEGACY_DATABASE" "$PYTHON" - >"$KEYS_FILE" <<'PY'
import base64, hashlib, os, secrets
keys = [base64.urlsafe_b64encode(os.urandom(32)).decode()]
if os.environ.get("LEGACY_DATABASE"):
    old_secret = os.environ.get("DJANGO_SECRET_KEY") or "django-insecure-dev-only-change-me"
    keys.append(base64.urlsafe_b64encode(hashlib.sha256(b"field-encryption:" + old_secret.encode()).digest()).decode())
print("DJANGO_SECRET_KEY=" + secrets.token_urlsafe(50))
print("FIELD_ENCRYPTION_KEYS=" + ",".join(keys))
PY
  )
fi
while read -r line; do
  name="${line%%=*}"
  [ -n "${!name:-}" ] || export "$line"  # a key from the environment wins
done <"$KEYS_FILE"

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt

# Web and worker processes add up their metrics through files here (docs/operations.md#metrics); the files of
# an earlier run belong to processes that are gone.
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$PWD/var/metrics}"
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -type f -name '*.db' -delete

.venv/bin/python manage.py migrate --noinput
.venv/bin/python manage.py collectstatic --noinput --verbosity 0
.venv/bin/python manage.py seed_demo
# The dashboard's figures from the first page on (without PostgreSQL's triggers, beat recounts them each minute).
.venv/bin/python manage.py analytics_rebuild >/dev/null

mkdir -p var/log
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

.venv/bin/celery -A config worker --loglevel INFO --concurrency "${WORKER_CONCURRENCY:-2}" \
  >>var/log/worker.log 2>&1 &
pids+=($!)
# AI calls wait on a remote model: their own queue and worker, so ingestion and sending never wait for them.
# On SQLite (no DATABASE_URL) one process: the assistant keeps a conversation's turns in order with a
# PostgreSQL advisory lock, which SQLite has no equivalent of.
ai_concurrency="${AI_WORKER_CONCURRENCY:-$([ -n "${DATABASE_URL:-}" ] && echo 2 || echo 1)}"
.venv/bin/celery -A config worker -Q ai --hostname "ai@%h" --loglevel INFO --concurrency "$ai_concurrency" \
  >>var/log/ai-worker.log 2>&1 &
pids+=($!)
.venv/bin/celery -A config beat --loglevel INFO --pidfile= >>var/log/beat.log 2>&1 &
pids+=($!)
GUNICORN_BIND="${HOST}:${PORT}" .venv/bin/gunicorn config.wsgi:application -c config/gunicorn.py \
  >>var/log/web.log 2>&1 &
pids+=($!)

for _ in $(seq 1 60); do
  if .venv/bin/python -c "import urllib.request,sys; urllib.request.urlopen('http://${HOST}:${PORT}/health/', timeout=2)" 2>/dev/null; then
    break
  fi
  sleep 1
done

cat <<MSG

  WhatsApp platform is running.
  Admin:      ${PUBLIC_BASE_URL}/admin/
  Demo login: ${DEMO_ADMIN_USERNAME:-admin} / ${DEMO_ADMIN_PASSWORD:-whatsapp-demo}
  (a superuser: at the first sign-in it sets up an authenticator app for two-factor sign-in)
  API docs:   ${PUBLIC_BASE_URL}/api/docs/
  Health:     ${PUBLIC_BASE_URL}/health/
  Metrics:    ${PUBLIC_BASE_URL}/metrics   (Prometheus; from this machine, or with METRICS_TOKEN)
  Logs:       var/log/{web,worker,ai-worker,beat}.log      (Ctrl-C stops everything)

MSG

# Stop everything as soon as any of the three processes exits.
wait -n "${pids[@]}"
