"""
Settings, read from the environment (12-factor). With no variables set the platform runs on
embedded defaults: SQLite, a filesystem Celery broker and local-directory storage under ``var/``.
Every variable is listed with its default in README.md.
"""

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if env.bool("DJANGO_READ_DOT_ENV", default=False):
    environ.Env.read_env(BASE_DIR / ".env")

VAR_DIR = Path(env("VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
# Field encryption: comma-separated Fernet keys; the first encrypts, all decrypt (rotation).
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])
# The key of development runs (DEBUG on) without one: unchanged, since credentials stored by such runs
# are encrypted with a key derived from it.
DEVELOPMENT_SECRET_KEY = "django-insecure-dev-only-change-me"


def _key_problems(secret_key: str, field_keys: list[str]) -> list[str]:
    problems = []
    # Django's own test of a weak key (security.W009): short, few distinct characters, or its dev prefix.
    if not secret_key:
        problems.append("DJANGO_SECRET_KEY is not set")
    elif secret_key.startswith("django-insecure") or len(secret_key) < 50 or len(set(secret_key)) < 5:
        problems.append("DJANGO_SECRET_KEY is insecure (use 50 or more random characters)")
    if not field_keys:
        # Without it credentials would be encrypted with a key derived from SECRET_KEY, and rotating
        # SECRET_KEY would make every stored credential unreadable.
        problems.append("FIELD_ENCRYPTION_KEYS is not set (one or more Fernet keys; the first encrypts)")
    return problems


if not DEBUG and (_problems := _key_problems(SECRET_KEY, FIELD_ENCRYPTION_KEYS)):
    raise ImproperlyConfigured(
        "With DJANGO_DEBUG off the platform needs its own keys: " + "; ".join(_problems) + ". Make them with "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))' and python -c 'from cryptography.fernet "
        "import Fernet; print(Fernet.generate_key().decode())' (scripts/run.sh makes a pair under var/). An install "
        "that ran without FIELD_ENCRYPTION_KEYS must keep its old key readable: docs/operations.md#keys-and-rotation."
    )
SECRET_KEY = SECRET_KEY or DEVELOPMENT_SECRET_KEY
PUBLIC_BASE_URL = env("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Where workers reach the web server to post the simulators' webhooks to it: in a container the public
# URL may be unreachable or, as localhost, the worker itself.
INTERNAL_BASE_URL = env("INTERNAL_BASE_URL", default=PUBLIC_BASE_URL).rstrip("/")


def _django_host(url: str) -> str:
    host = urlsplit(url).hostname or ""
    return f"[{host}]" if ":" in host else host  # an IPv6 address, as Django writes it


# The public and internal URLs' hosts are served unless ALLOWED_HOSTS says otherwise: setting
# PUBLIC_BASE_URL (and INTERNAL_BASE_URL) alone deploys.
_LOCAL_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
_URL_HOSTS = [host for host in (_django_host(PUBLIC_BASE_URL), _django_host(INTERNAL_BASE_URL)) if host]
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=list(dict.fromkeys(_LOCAL_HOSTS + _URL_HOSTS)))
# An origin is scheme and host (and port): a path in PUBLIC_BASE_URL is not part of it.
_PUBLIC_URL = urlsplit(PUBLIC_BASE_URL)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[f"{_PUBLIC_URL.scheme}://{_PUBLIC_URL.netloc}"])

INSTALLED_APPS = [
    "config.apps.PlatformAdminConfig",  # django.contrib.admin with our own site (config/admin_site.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    # Swagger UI and Redoc as static files of our own: /api/docs/ works without internet.
    "drf_spectacular_sidecar",
    "django_celery_beat",
    # Staff sign-in: failed-login lockout; authenticator apps, with backup codes, as the second factor.
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "core.apps.CoreConfig",
    "whatsapp.apps.WhatsappConfig",
    "contacts.apps.ContactsConfig",
    "templates_app.apps.TemplatesAppConfig",
    "ai.apps.AiConfig",
    "assistant.apps.AssistantConfig",
    "analytics.apps.AnalyticsConfig",
    "campaigns.apps.CampaignsConfig",
    "monitoring.apps.MonitoringConfig",
    "demo.apps.DemoConfig",
    # After contacts: its admin extends the user admin that contacts registers.
    "accounts.apps.AccountsConfig",
]

MIDDLEWARE = [
    "core.correlation.CorrelationIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "core.security_headers.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "accounts.middleware.TwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.request_body.ChunkedBodyMiddleware",
    "core.api.throttling.RateLimitHeadersMiddleware",
    # Last, as django-axes requires: it turns a refused sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Templates of the packages we use, changed for the platform (e.g. an inline script moved to a file,
        # for the content security policy); searched before the apps' own.
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "core.security_headers.csp_nonce",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
# Persistent connections: opening a PostgreSQL connection per request or task costs more than the work.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Its folder is made at start-up (core.embedded), not here: importing settings has no side effects.
    # The web server, the worker and beat share one SQLite file: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
    # The analytics counts' unique constraints treat "no provider" as one value, which SQLite cannot state;
    # there the counts are recounted into emptied rows, never upserted, so the constraint is not needed.
    SILENCED_SYSTEM_CHECKS = ["models.W047"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Staff sign-in: lockout and two-factor (docs/security.md) ---
# The axes backend refuses a locked-out name or address before any password is checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
# Failed sign-ins (wrong passwords and wrong second-factor codes) allowed per user name, and separately per
# client address, within the lockout period; the next one locks that name or address for the period.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_LOCKOUT_MINUTES = env.int("LOGIN_LOCKOUT_MINUTES", default=15)
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
# Each item is counted on its own: a name tried from many addresses, or many names tried from one address.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "core.client_address.client_address"
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
# Attempts refused during a lockout do not extend it, so "try again in N minutes" holds. A completed sign-in
# clears only that name's failures from that address (accounts.signals), never a whole address's count.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = False
# Every failure is kept in the admin's access failure log, not only the running count.
AXES_ENABLE_ACCESS_FAILURE_LOG = True
# Values masked in axes' log lines and stored form data (passwords always are): a password typed into the
# name field stays out of the logs, and so do second-factor codes.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "code"]
TWO_FACTOR_REQUIRED_FOR_SUPERUSERS = env.bool("TWO_FACTOR_REQUIRED_FOR_SUPERUSERS", default=True)
TWO_FACTOR_REQUIRED_FOR_ALL_STAFF = env.bool("TWO_FACTOR_REQUIRED_FOR_ALL_STAFF", default=False)
# The name authenticator apps show beside the account.
OTP_TOTP_ISSUER = env("TWO_FACTOR_ISSUER", default="WhatsApp platform")
# Wrong codes are counted by the lockout above (per name and per address); django-otp's own per-device
# delay would refuse a right code typed within seconds of a wrong one.
OTP_TOTP_THROTTLE_FACTOR = 0
OTP_STATIC_THROTTLE_FACTOR = 0
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
# ISO-like dates everywhere (2026-12-03 14:05) instead of the English locale's "Dec. 3, 2026, 2:05 p.m.".
FORMAT_MODULE_PATH = ["config.formats"]

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)

# --- Security (all of `check --deploy` is satisfied when DJANGO_DEBUG=false and HTTPS is used) ---
HTTPS = env.bool("DJANGO_HTTPS", default=PUBLIC_BASE_URL.startswith("https://"))
# Behind a TLS-terminating proxy the scheme comes from X-Forwarded-Proto. Only trust it when a proxy
# sets it (assumed when the public URL is https); otherwise a client could claim HTTPS.
if env.bool("TRUST_X_FORWARDED_PROTO", default=HTTPS):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=HTTPS)
# Health checks and metrics scrapes answer on plain HTTP inside the cluster; a webhook must never be redirected (a
# provider does not follow a redirect of its POST, so the event would be lost). The simulators' files are
# fetched by the workers at INTERNAL_BASE_URL, plain HTTP inside the cluster too.
# How many reverse proxies in front of the web server append to X-Forwarded-For: the client's address
# (throttling, lockouts, audit, API key use) is the entry that many places from the right; 0 uses the
# direct peer. Never higher than the proxies that really sit in front, or clients could pick their address.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# X-Forwarded-For is believed only from these peers (the proxies' own addresses); a request straight from
# anywhere else is its own client, whatever it claims. Default: this host and the private networks.
TRUSTED_PROXY_NETWORKS = env.list("TRUSTED_PROXY_NETWORKS", default=[
    "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"])
SECURE_REDIRECT_EXEMPT = [r"^health/$", r"^metrics$", r"^webhooks/", r"^simulator/"]
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Response headers (docs/security.md#response-headers-and-content-security-policy). Both are Django's
# defaults, written out so that a change of default does not change what we send.
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# The content security policy of every response (core.security_headers); script-src also gets a fresh
# nonce per response. Styles allow 'unsafe-inline': the admin's templates (Django's and ours) and
# Swagger UI use style attributes. Stored media are served by our own views, so 'self' covers them;
# blob: URLs can only be made by scripts of this origin, and let a page preview a file before it is sent.
CSP_REPORT_ONLY = env.bool("CSP_REPORT_ONLY", default=False)
# Where browsers report violations: our own endpoint (logged at WARNING), another collector, or empty for none.
CSP_REPORT_URI = env("CSP_REPORT_URI", default="/csp-report/")
# Reports logged per client address; past it they are answered 204 and dropped, so the anonymous endpoint
# cannot be used to flood the logs.
CSP_REPORT_RATE = env("CSP_REPORT_RATE", default="60/min")
CSP_DIRECTIVES = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:", "blob:", *env.list("CSP_EXTRA_IMG_SRC", default=[])],
    "media-src": ["'self'", "blob:", *env.list("CSP_EXTRA_MEDIA_SRC", default=[])],
    "connect-src": ["'self'", *env.list("CSP_EXTRA_CONNECT_SRC", default=[])],
    "font-src": ["'self'", "data:"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
# Browser features no page of ours uses (the sandbox phone sends recorded files, it does not record).
PERMISSIONS_POLICY = {
    feature: [] for feature in ("accelerometer", "camera", "display-capture", "geolocation", "gyroscope",
                                "magnetometer", "microphone", "midi", "payment", "screen-wake-lock", "serial",
                                "usb", "xr-spatial-tracking")
}

# --- Redis, cache and Celery ---
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    # Timeouts: with Redis unreachable a request waits seconds, never minutes (webhooks go on being stored).
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2}}}
else:
    # Room for the rate-limit counters of many clients (the default 300 entries would drop some under load).
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                          "OPTIONS": {"MAX_ENTRIES": 20000}}}

CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
CELERY_BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded broker: separate worker and beat processes exchange messages through a directory.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # A task held by a worker that died comes back after the visibility timeout plus one restore sweep
    # (sweep interval x throttle): 40 s + 5 s, so under a minute. Countdowns and ETAs must stay shorter
    # than the visibility timeout or the task is delivered twice; longer waits go through the database.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=40),
        "unacked_restore_interval": 5,
        "unacked_restore_throttle": 1,
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing must not hang a web request when the broker is down: fail fast, the inbox row stays
# pending and the requeue beat job sends it later.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
CELERY_BROKER_CONNECTION_TIMEOUT = 2
# Keep our JSON log lines (with correlation ids) in the worker too.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes the database connection before and after every task unless this is set;
# reconnecting to PostgreSQL per task costs more than processing a webhook. The connection is recycled
# after this many tasks (and dropped as usual when it breaks).
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# AI calls wait seconds on a remote model: they run on a queue of their own, served by workers of their
# own (`celery worker -Q ai`), so ingestion and sending never wait behind them.
AI_QUEUE = "ai"
CELERY_TASK_ROUTES = {"ai.tasks.*": {"queue": AI_QUEUE}, "assistant.tasks.*": {"queue": AI_QUEUE}}
# /health/ is degraded when no worker ran the heartbeat job (every WORKER_HEARTBEAT_INTERVAL_SECONDS) for
# WORKER_HEARTBEAT_MAX_AGE_SECONDS, or when a due outbound message or a pending inbox row has waited longer
# than HEALTH_BACKLOG_DEGRADED_AFTER_SECONDS.
WORKER_HEARTBEAT_INTERVAL_SECONDS = env.int("WORKER_HEARTBEAT_INTERVAL_SECONDS", default=15)
WORKER_HEARTBEAT_MAX_AGE_SECONDS = env.int("WORKER_HEARTBEAT_MAX_AGE_SECONDS", default=60)
HEALTH_BACKLOG_DEGRADED_AFTER_SECONDS = env.int("HEALTH_BACKLOG_DEGRADED_AFTER_SECONDS", default=300)
# /metrics (docs/operations.md#metrics) answers a request carrying `Authorization: Bearer <METRICS_TOKEN>`, or
# one whose client address (seen through the trusted proxies) is in METRICS_ALLOWED_NETWORKS. An empty token
# accepts none; an empty list leaves the token as the only way in.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"])
# Beat schedules are declared here, in code; django-celery-beat copies them into the database, where
# admins can see them and pause them.
CELERY_BEAT_SCHEDULE = {
    "requeue-due-webhook-events": {
        "task": "whatsapp.tasks.requeue_due_webhook_events_task",
        "schedule": 60.0,
    },
    "analytics-squash-counts": {
        "task": "analytics.tasks.counts_squash_task",
        "schedule": 60.0,
    },
    "prune-rejected-webhook-events": {
        "task": "whatsapp.tasks.prune_rejected_webhook_events_task",
        "schedule": 24 * 3600.0,
    },
    "requeue-due-media-downloads": {
        "task": "whatsapp.tasks.requeue_due_media_downloads_task",
        "schedule": 30.0,
    },
    "requeue-due-messages": {
        "task": "whatsapp.tasks.requeue_due_messages_task",
        "schedule": 5.0,
    },
    "close-expired-sessions": {
        "task": "whatsapp.tasks.close_expired_sessions_task",
        "schedule": 300.0,
    },
    "submit-due-templates": {
        "task": "templates_app.tasks.templates_submit_due_task",
        "schedule": 60.0,
    },
    "requeue-due-archives": {
        "task": "whatsapp.tasks.requeue_due_archives_task",
        "schedule": 60.0,
    },
    "bundle-webhook-bodies": {
        "task": "whatsapp.tasks.bundle_webhook_bodies_task",
        "schedule": 60.0,
    },
    "prune-archived-webhook-bodies": {
        "task": "whatsapp.tasks.prune_archived_webhook_bodies_task",
        "schedule": 6 * 3600.0,
    },
    "delete-expired-data-exports": {
        "task": "contacts.tasks.data_exports_expire_task",
        "schedule": 3600.0,
    },
    "requeue-due-data-exports": {
        "task": "contacts.tasks.data_exports_requeue_due_task",
        "schedule": 60.0,
    },
    "sync-templates": {
        "task": "templates_app.tasks.templates_sync_task",
        "schedule": env.float("TEMPLATE_SYNC_INTERVAL_SECONDS", default=900.0),
    },
    # The safety net under the wakes that new messages send: anything a lost task left behind.
    "ai-drain": {
        "task": "ai.tasks.ai_drain_task",
        "schedule": 60.0,
    },
    "assistant-retry-waiting-turns": {
        "task": "assistant.tasks.retry_waiting_turns_task",
        "schedule": 60.0,
    },
    "assistant-send-due-reminders-and-summaries": {
        "task": "assistant.tasks.proactive_task",
        "schedule": 60.0,
    },
    "ai-summarize-idle-conversations": {
        "task": "ai.tasks.ai_summarize_idle_task",
        "schedule": 300.0,
    },
    # Run by a worker, it proves that beat, the broker and a worker all work (see /health/). It expires with
    # its interval so heartbeats piled up while no worker ran do not all run at once later; priority 0 lets
    # it overtake a bulk send backlog, so a busy worker is still seen.
    "worker-heartbeat": {
        "task": "monitoring.tasks.worker_heartbeat_task",
        "schedule": float(WORKER_HEARTBEAT_INTERVAL_SECONDS),
        # django-celery-beat's name for `expires`.
        "options": {"expire_seconds": WORKER_HEARTBEAT_INTERVAL_SECONDS, "priority": 0},
    },
    # Campaigns: wakes lost with a worker, recurring runs; and receipts copied into campaign results.
    # Snoozed conversations whose time came reopen; Chatwoot is told states it missed.
    "conversations-lifecycle": {
        "task": "whatsapp.tasks.conversations_lifecycle_task",
        "schedule": 60.0,
        "options": {"expire_seconds": 60},
    },
    "campaigns-tick": {
        "task": "campaigns.tasks.campaigns_tick_task",
        "schedule": 15.0,
        "options": {"expire_seconds": 15},
    },
    "campaigns-refresh-results": {
        "task": "campaigns.tasks.campaigns_results_refresh_task",
        "schedule": 60.0,
        "options": {"expire_seconds": 60},
    },
    # Alert rules (monitoring.alerts). A run left waiting past the next one is dropped: the next one reads the
    # same rows.
    "evaluate-alerts": {
        "task": "monitoring.tasks.alerts_evaluate_task",
        "schedule": 60.0,
        "options": {"expire_seconds": 60},
    },
}

# --- Webhooks and sending ---
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=3 * 1024 * 1024)
WEBHOOK_STALE_AFTER_SECONDS = env.int("WEBHOOK_STALE_AFTER_SECONDS", default=120)
WEBHOOK_REJECTED_RETENTION_DAYS = env.int("WEBHOOK_REJECTED_RETENTION_DAYS", default=14)
# Rejected requests (bad signature, unknown URL, malformed) from one client address to one webhook URL, after
# which that address is answered 429 before anything is read; and rejections per URL recorded one row each
# (past it they are only counted). Correctly signed requests are never refused by these. "off" lifts them.
WEBHOOK_REJECTION_RATE = env("WEBHOOK_REJECTION_RATE", default="30/min")
WEBHOOK_REJECTIONS_RECORDED_RATE = env("WEBHOOK_REJECTIONS_RECORDED_RATE", default="300/min")
# Processing attempts of an inbox event whose failure is transient (database unavailable, a lock timeout)
# before it is left `failed` for a person; with the 30 s doubling backoff, 10 attempts span about 4 hours.
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=10)
# The inbox is the queue (docs/operations.md#scaling-out): a drain task claims up to WEBHOOK_DRAIN_BATCH rows at a
# time, applies them in one transaction, and keeps claiming for WEBHOOK_DRAIN_SECONDS before it hands over to a
# fresh task (short, so that sends queued meanwhile never wait long behind a drain for a worker process). The
# endpoint wakes it at most once per process per WEBHOOK_WAKE_INTERVAL_SECONDS, that long ahead.
WEBHOOK_DRAIN_BATCH = env.int("WEBHOOK_DRAIN_BATCH", default=100)
# ... and no more than this many bytes of bodies in one batch (a Meta request may carry 1000 updates).
WEBHOOK_DRAIN_BATCH_BYTES = env.int("WEBHOOK_DRAIN_BATCH_BYTES", default=1024 * 1024)
WEBHOOK_DRAIN_SECONDS = env.float("WEBHOOK_DRAIN_SECONDS", default=1.0)
WEBHOOK_WAKE_INTERVAL_SECONDS = env.float("WEBHOOK_WAKE_INTERVAL_SECONDS", default=0.2)
# The webhook endpoint keeps providers (with their decrypted secrets) in memory: a change reaches every
# process within PROVIDER_CACHE_CHECK_SECONDS through the shared cache, and every PROVIDER_CACHE_SECONDS anyway.
PROVIDER_CACHE_CHECK_SECONDS = env.float("PROVIDER_CACHE_CHECK_SECONDS", default=1.0)
PROVIDER_CACHE_SECONDS = env.float("PROVIDER_CACHE_SECONDS", default=60.0)
PROVIDER_CACHE_MAX_ENTRIES = 1000
DATA_UPLOAD_MAX_MEMORY_SIZE = WEBHOOK_MAX_BODY_BYTES + 1024 * 1024
SESSION_WINDOW_HOURS = 24
# Provider REST calls (Meta's Graph API, Chatwoot, media downloads).
PROVIDER_HTTP_TIMEOUT_SECONDS = env.float("PROVIDER_HTTP_TIMEOUT_SECONDS", default=15.0)
# WhatsApp's largest file (a document) is 100 MB.
MEDIA_MAX_BYTES = env.int("MEDIA_MAX_BYTES", default=100 * 1024 * 1024)
MEDIA_MAX_ATTEMPTS = env.int("MEDIA_MAX_ATTEMPTS", default=25)
# Media is downloaded only from public addresses (an answer naming 127.0.0.1 or a cloud metadata address
# is refused); local development and test servers on this machine need the private ones too.
MEDIA_ALLOW_PRIVATE_ADDRESSES = env.bool("MEDIA_ALLOW_PRIVATE_ADDRESSES", default=False)

# --- Sending ---
# Attempts per message before it lands in the dead-letter state; backoff doubles from the base, with
# full jitter, up to the cap.
SEND_MAX_ATTEMPTS = env.int("SEND_MAX_ATTEMPTS", default=6)
SEND_RETRY_BASE_SECONDS = env.float("SEND_RETRY_BASE_SECONDS", default=2.0)
SEND_RETRY_MAX_SECONDS = env.float("SEND_RETRY_MAX_SECONDS", default=900.0)
# Circuit breaker per provider: opens after this many consecutive failed calls, probes after the cooldown.
SEND_CIRCUIT_THRESHOLD = env.int("SEND_CIRCUIT_THRESHOLD", default=5)
SEND_CIRCUIT_COOLDOWN_SECONDS = env.float("SEND_CIRCUIT_COOLDOWN_SECONDS", default=30.0)
# The per-number limiter keeps this fraction of the rate spare, to absorb the jitter between our
# admission and the provider's arrival clock (so no one-second window at the provider exceeds the rate).
SEND_RATE_HEADROOM = env.float("SEND_RATE_HEADROOM", default=0.01)
# Overrides every kind's per-recipient interval (WhatsApp's pair rate) when set; seconds.
SEND_PAIR_INTERVAL_SECONDS = env.float("SEND_PAIR_INTERVAL_SECONDS", default=None)
# The sender (docs/operations.md#how-sending-is-shared) claims up to SEND_BATCH_SIZE due messages of a provider at
# a time, no more than the number's slots within SEND_BATCH_HORIZON_SECONDS (a reply queued meanwhile waits about
# that long), calls the provider from SEND_BATCH_CONCURRENCY threads per worker process (at least the number's
# rate times the provider's response time plus the horizon: a call's thread waits for its slot), and keeps
# claiming for SEND_DRAIN_SECONDS before it hands over.
SEND_BATCH_SIZE = env.int("SEND_BATCH_SIZE", default=100)
SEND_BATCH_HORIZON_SECONDS = env.float("SEND_BATCH_HORIZON_SECONDS", default=0.25)
SEND_BATCH_CONCURRENCY = env.int("SEND_BATCH_CONCURRENCY", default=64)
SEND_DRAIN_SECONDS = env.float("SEND_DRAIN_SECONDS", default=5.0)
# A message still "sending" this long after its attempt began lost its worker mid-call (see docs).
SEND_STALE_AFTER_SECONDS = env.int("SEND_STALE_AFTER_SECONDS", default=300)
# Uploaded files to send are kept in storage and served to the provider from an unguessable URL.
OUTBOUND_MEDIA_MAX_BYTES = env.int("OUTBOUND_MEDIA_MAX_BYTES", default=16 * 1024 * 1024)

# --- AI: off until OPENAI_API_KEY is set. Any OpenAI-compatible server works (OPENAI_BASE_URL). ---
OPENAI_API_KEY = env("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = (env("OPENAI_BASE_URL", default="") or "https://api.openai.com/v1").rstrip("/")
OPENAI_MODEL = env("OPENAI_MODEL", default="gpt-5.4-mini")
OPENAI_TRANSCRIPTION_MODEL = env("OPENAI_TRANSCRIPTION_MODEL", default="whisper-1")
# Reasoning models (gpt-5*, o-series) refuse any temperature but their default; others get 0. "auto" decides
# by the model's name; true or false forces it (for a self-hosted model with another name).
AI_SEND_TEMPERATURE = env("AI_SEND_TEMPERATURE", default="auto")
AI_TIMEOUT_SECONDS = env.float("AI_TIMEOUT_SECONDS", default=30.0)
# Attempts per AI step (timeouts, 429, 5xx), spaced by the server's Retry-After or a doubling backoff.
AI_MAX_ATTEMPTS = env.int("AI_MAX_ATTEMPTS", default=3)
# The conversation's recent messages sent with each call, newest first, up to this many characters.
AI_CONTEXT_CHARS = env.int("AI_CONTEXT_CHARS", default=2000)
# The transcription API refuses larger files.
AI_MAX_AUDIO_BYTES = env.int("AI_MAX_AUDIO_BYTES", default=25 * 1024 * 1024)
# Prices in US dollars per million tokens (input, cached input, output) and per audio minute; JSON that
# replaces or adds models, e.g. AI_PRICES='{"my-model": {"input": 0.2, "output": 0.8}}'.
AI_PRICES = env.json("AI_PRICES", default={})
# The day a daily budget counts (midnight to midnight here).
AI_BUDGET_TIME_ZONE = env("AI_BUDGET_TIME_ZONE", default="UTC")
# Summaries made on their own: a conversation idle this long with this many messages since its last one.
AI_SUMMARY_IDLE_MINUTES = env.int("AI_SUMMARY_IDLE_MINUTES", default=60)
AI_SUMMARY_MIN_MESSAGES = env.int("AI_SUMMARY_MIN_MESSAGES", default=6)
# The AI API's circuit breaker: open after this many consecutive failed calls, probe after the cooldown.
AI_CIRCUIT_THRESHOLD = env.int("AI_CIRCUIT_THRESHOLD", default=5)
AI_CIRCUIT_COOLDOWN_SECONDS = env.float("AI_CIRCUIT_COOLDOWN_SECONDS", default=60.0)

# --- The assistant: mapped users' notes, tasks and content requests (on when AI is on). ---
# An unanswered clarification is dropped after this long; the recent messages the model sees with each turn.
ASSISTANT_PENDING_MINUTES = env.int("ASSISTANT_PENDING_MINUTES", default=30)
ASSISTANT_CONTEXT_MESSAGES = env.int("ASSISTANT_CONTEXT_MESSAGES", default=6)
# Model rounds per message (a tool's result can need one more call, e.g. to phrase a list).
ASSISTANT_MAX_TOOL_ROUNDS = env.int("ASSISTANT_MAX_TOOL_ROUNDS", default=3)
# While the AI is down or over budget a user is told once per this many hours, however many messages wait.
ASSISTANT_UNAVAILABLE_NOTICE_HOURS = env.int("ASSISTANT_UNAVAILABLE_NOTICE_HOURS", default=6)
# Waiting messages are retried for this long, then given up with one notice.
ASSISTANT_GIVE_UP_HOURS = env.int("ASSISTANT_GIVE_UP_HOURS", default=24)

# --- Storage: local directory by default; GCS when GCS_PROJECT is set (or STORAGE_BACKEND=gcs). ---
STORAGE_BACKEND = env("STORAGE_BACKEND", default="gcs" if env("GCS_PROJECT", default="") else "local")
LOCAL_STORAGE_DIR = Path(env("LOCAL_STORAGE_DIR", default=str(VAR_DIR / "archive")))
GCS_PROJECT = env("GCS_PROJECT", default="")
# Bucket names are global in GCS: the prefix makes them this deployment's. Names are
# <prefix>-u-<hash> per user and <prefix>-p-<hash> per provider account, the hash keyed by GCS_BUCKET_NAME_KEY
# (derived from SECRET_KEY when empty; names already made are recorded, so a new key changes only new ones).
GCS_BUCKET_PREFIX = env("GCS_BUCKET_PREFIX", default="wa-archive")
GCS_BUCKET_NAME_KEY = env("GCS_BUCKET_NAME_KEY", default="")
GCS_LOCATION = env("GCS_LOCATION", default="US")
GCS_STORAGE_CLASS = env("GCS_STORAGE_CLASS", default="STANDARD")
GCS_CREDENTIALS_FILE = env("GCS_CREDENTIALS_FILE", default="")
# Empty takes the google-cloud-storage default endpoint (or STORAGE_EMULATOR_HOST, which the client reads).
GCS_ENDPOINT = env("GCS_ENDPOINT", default="")
GCS_TIMEOUT_SECONDS = env.float("GCS_TIMEOUT_SECONDS", default=20.0)
# Lifecycle: objects move to cheaper classes as they age (days). An empty value drops that step.
GCS_NEARLINE_AFTER_DAYS = env.int("GCS_NEARLINE_AFTER_DAYS", default=30)
GCS_COLDLINE_AFTER_DAYS = env.int("GCS_COLDLINE_AFTER_DAYS", default=90)
GCS_ARCHIVE_AFTER_DAYS = env.int("GCS_ARCHIVE_AFTER_DAYS", default=365)
# 0 deletes archived objects for good at once (an erased user's data is not recoverable); GCS's own default
# keeps deleted objects 7 days (604800 s), billed, restorable by the project's admins.
GCS_SOFT_DELETE_SECONDS = env.int("GCS_SOFT_DELETE_SECONDS", default=0)
# Archiving: attempts back off from 30 s up to this cap, and are retried as long as it takes.
ARCHIVE_RETRY_MAX_SECONDS = env.int("ARCHIVE_RETRY_MAX_SECONDS", default=3600)
# Raw webhook bodies are archived in bundles: one compressed object per bucket and ARCHIVE_BUNDLE_SECONDS,
# written once that window has closed and ARCHIVE_STALE_AFTER_SECONDS more have passed (late arrivals).
ARCHIVE_BUNDLE_SECONDS = env.int("ARCHIVE_BUNDLE_SECONDS", default=3600)
ARCHIVE_STALE_AFTER_SECONDS = env.int("ARCHIVE_STALE_AFTER_SECONDS", default=120)
# Bodies one bundling claim takes at most (a busier bucket-hour gets one bundle per claim).
ARCHIVE_BUNDLE_MAX_BODIES = env.int("ARCHIVE_BUNDLE_MAX_BODIES", default=5000)
# Objects at least this large go under the "tiered/" prefix, the only one the lifecycle rules move to
# colder classes: a transition is billed per object, and smaller ones never earn it back
# (bench/storage_cost.py prints the break-even size; 0 tiers everything).
ARCHIVE_TIERED_MIN_BYTES = env.int("ARCHIVE_TIERED_MIN_BYTES", default=256 * 1024)
# /health/ reports storage as degraded when a row waited longer than this for the archive.
ARCHIVE_DEGRADED_AFTER_SECONDS = env.int("ARCHIVE_DEGRADED_AFTER_SECONDS", default=900)
# Raw webhook bodies that are safely archived leave the database after this many days (0 keeps them).
WEBHOOK_BODY_RETENTION_DAYS = env.int("WEBHOOK_BODY_RETENTION_DAYS", default=30)
# A GDPR export zip is downloadable for this many days, then deleted.
DATA_EXPORT_RETENTION_DAYS = env.int("DATA_EXPORT_RETENTION_DAYS", default=7)

# --- REST API ---
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        # Last: counts the requests no credential claimed, per client address.
        "core.api.throttling.AnonymousRateLimit",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["core.api.throttling.ApiRateThrottle"],
    "DEFAULT_PERMISSION_CLASSES": ["core.api.permissions.ModelPermissionsWithView"],
    "DEFAULT_FILTER_BACKENDS": [
        "core.api.filters.ApiFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "core.api.parsers.DepthSafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.StandardPagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
# Requests per API key and, separately, per user (a user's keys share it), counted in the cache by bucket:
# read (GET and previews), write (other changes), send (messages to contacts), bulk (template sync, GDPR
# exports and erasures); anonymous requests per client address. "off" lifts a limit.
API_RATE_LIMITS = {
    "read": env("API_RATE_READ", default="1200/min"),
    "write": env("API_RATE_WRITE", default="300/min"),
    "send": env("API_RATE_SEND", default="600/min"),
    "bulk": env("API_RATE_BULK", default="30/hour"),
    "anonymous": env("API_RATE_ANONYMOUS", default="60/min"),
}
# Requests with an unknown, expired or revoked key per client address, after which it is refused outright.
API_KEY_FAILURE_RATE = env("API_KEY_FAILURE_RATE", default="20/min")
# A new key expires after this many days unless its maker chooses otherwise (0: never).
API_KEY_DEFAULT_LIFETIME_DAYS = env.int("API_KEY_DEFAULT_LIFETIME_DAYS", default=365)
# After a rotation the old key keeps working this long, so clients can switch without an outage.
API_KEY_ROTATION_GRACE_HOURS = env.int("API_KEY_ROTATION_GRACE_HOURS", default=24)

SPECTACULAR_SETTINGS = {
    "TITLE": "WhatsApp business messaging API",
    "DESCRIPTION": "Contacts, conversations, messages and templates across Meta, Twilio and Chatwoot.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The credentials a client can send (the anonymous rate limit is not one).
    "AUTHENTICATION_WHITELIST": ["core.api.authentication.ApiTokenAuthentication",
                                 "rest_framework.authentication.SessionAuthentication"],
    # From our static files (drf-spectacular-sidecar), not a CDN: pinned and available offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # No badge from validator.swagger.io: it would send our schema's URL there, and the policy blocks its image.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "MessageStatusEnum": "whatsapp.providers.events.MessageStatus",
        "TemplateStatusEnum": "whatsapp.providers.events.TemplateStatus",
        "ProviderVerificationStatusEnum": "whatsapp.models.Provider.VerificationStatus",
        "AiStepStatusEnum": "ai.models.StepStatus",
        "ConversationStatusEnum": "whatsapp.models.Conversation.Status",
    },
}

# --- The operators' inbox (docs/inbox.md) ---
# How often an open conversation page asks for new messages and ticks, in seconds.
INBOX_POLL_SECONDS = env.float("INBOX_POLL_SECONDS", default=3.0)

# A 24-hour window counts as closing (the inbox's "window closing" filter, the amber marker) this long
# before it ends.
INBOX_WINDOW_CLOSING_MINUTES = env.int("INBOX_WINDOW_CLOSING_MINUTES", default=120)

# --- Conversation lifecycle and satisfaction surveys (docs/teams.md) ---
# A resolved conversation asks its customer at most once per this many days.
CSAT_SURVEY_PERIOD_DAYS = env.int("CSAT_SURVEY_PERIOD_DAYS", default=7)
# How long after the question an answer still counts, and a comment after the rating.
CSAT_ANSWER_HOURS = env.int("CSAT_ANSWER_HOURS", default=24)
CSAT_COMMENT_MINUTES = env.int("CSAT_COMMENT_MINUTES", default=15)
CSAT_QUESTION = env.str("CSAT_QUESTION", default="How satisfied are you with the help you got today?")
CSAT_THANKS = env.str("CSAT_THANKS", default="Thank you! If you like, tell us in a message what we could do better.")
# An approved template (by name) that asks the question when the 24-hour window has closed; empty: no survey then.
CSAT_TEMPLATE_NAME = env.str("CSAT_TEMPLATE_NAME", default="")

# --- Email: alert notices (docs/operations.md#alerts) ---
# One URL: smtp+tls://user:password@host:587 (STARTTLS), smtp+ssl://user:password@host:465 (TLS from the start),
# smtp://host:25 (plain), consolemail:// (printed to the log). Characters such as @ or / in the password are
# percent-encoded. The default without DEBUG is a mail server on this host.
_EMAIL = env.email_url("EMAIL_URL", default="consolemail://" if DEBUG else "smtp://localhost:25")
EMAIL_BACKEND = _EMAIL["EMAIL_BACKEND"]
EMAIL_HOST = _EMAIL["EMAIL_HOST"] or "localhost"
EMAIL_PORT = _EMAIL["EMAIL_PORT"] or 25
EMAIL_HOST_USER = _EMAIL["EMAIL_HOST_USER"] or ""
EMAIL_HOST_PASSWORD = _EMAIL["EMAIL_HOST_PASSWORD"] or ""
EMAIL_USE_TLS = _EMAIL.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _EMAIL.get("EMAIL_USE_SSL", False)
# A mail server that does not answer must not hold the alert job for long (it retries at its next run).
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT_SECONDS", default=10)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="whatsapp-platform@localhost")
ALERT_WEBHOOK_TIMEOUT_SECONDS = env.float("ALERT_WEBHOOK_TIMEOUT_SECONDS", default=5.0)
# The time one alert check spends sending notices (it holds the evaluation lock meanwhile): the notices it
# leaves untried wait for the next check, a minute later.
ALERT_NOTICE_BUDGET_SECONDS = env.float("ALERT_NOTICE_BUDGET_SECONDS", default=20.0)

# --- Logging: JSON lines with the correlation id that follows a webhook into its tasks ---
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"correlation": {"()": "core.correlation.CorrelationIdFilter"}},
    "formatters": {"json": {"()": "core.correlation.JsonFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["correlation"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "celery": {"level": LOG_LEVEL, "propagate": True},
        # The SDK and its HTTP client log whole requests at DEBUG: prompts (customers' words) must never
        # reach the logs, whatever LOG_LEVEL says.
        "openai": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "httpcore2": {"level": "WARNING"},
    },
}

# --- Campaigns (docs/campaigns.md) ---
# A campaign keeps this many seconds of its number's rate queued for the sender, no more: a pause takes back
# what is still queued, and replies never wait behind a long bulk queue (the sender takes replies first anyway).
CAMPAIGN_BACKLOG_SECONDS = env.float("CAMPAIGN_BACKLOG_SECONDS", default=10.0)
CAMPAIGN_DISPATCH_BATCH = env.int("CAMPAIGN_DISPATCH_BATCH", default=2000)
# How often a running campaign tops its backlog up.
CAMPAIGN_DISPATCH_INTERVAL_SECONDS = env.float("CAMPAIGN_DISPATCH_INTERVAL_SECONDS", default=1.0)
# At most this many marketing campaign messages per person in this many days (0 lifts the cap).
CAMPAIGN_FREQUENCY_CAP = env.int("CAMPAIGN_FREQUENCY_CAP", default=2)
CAMPAIGN_FREQUENCY_CAP_DAYS = env.int("CAMPAIGN_FREQUENCY_CAP_DAYS", default=7)
# Someone WhatsApp held marketing back from (131049) is left out of marketing for this long, doubled at each
# further hold in a row (Meta advises waiting at least a day; the cap is per person, unpublished).
CAMPAIGN_SUPPRESSION_HOURS = env.int("CAMPAIGN_SUPPRESSION_HOURS", default=48)
# A reply within this long of a campaign message counts for that campaign.
CAMPAIGN_REPLY_ATTRIBUTION_HOURS = env.int("CAMPAIGN_REPLY_ATTRIBUTION_HOURS", default=72)
# What a message costs, for the campaign results (US dollars; rates differ by country and change quarterly: set
# your own). WhatsApp charges per delivered template by category (service messages are billed too since
# October 2026); an SMS per segment, carrier fees included.
CAMPAIGN_WHATSAPP_PRICES = env.json("CAMPAIGN_WHATSAPP_PRICES", default={
    "marketing": 0.025, "utility": 0.0034, "authentication": 0.0034, "service": 0.0034})
CAMPAIGN_SMS_SEGMENT_PRICE = env.float("CAMPAIGN_SMS_SEGMENT_PRICE", default=0.0113)
# The largest CSV list imported at once.
CAMPAIGN_IMPORT_MAX_BYTES = env.int("CAMPAIGN_IMPORT_MAX_BYTES", default=20 * 1024 * 1024)
CAMPAIGN_IMPORT_MAX_ROWS = env.int("CAMPAIGN_IMPORT_MAX_ROWS", default=200_000)
