# The platform's image: the web server by default; docker-compose.yml also runs the Celery worker and
# beat from it. Build: `docker build -t whatsapp-platform .`
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=config.settings

WORKDIR /app

# A fixed, unprivileged user; the code stays root-owned (read-only for it), only var/ is writable.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

# Dependencies first so that a code change does not reinstall them. Every pin ships a binary wheel,
# so the slim image needs no compiler.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# Static files are collected into the image (STATIC_ROOT = var/staticfiles, served by WhiteNoise).
# The keys and the in-memory broker are for this build step only; the runtime gets its own.
RUN DJANGO_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
        FIELD_ENCRYPTION_KEYS="$(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
        CELERY_BROKER_URL=memory:// \
        python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p var/archive \
    && chown app:app var var/archive

USER app

EXPOSE 8000

CMD ["gunicorn", "config.wsgi:application", "-c", "config/gunicorn.py"]
