"""gunicorn settings: threaded workers, and access log lines as JSON with the request's correlation id
(its X-Request-ID)."""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# gunicorn's default control socket (~/.gunicorn/gunicorn.ctl) is shared by every gunicorn of the user:
# keep ours with this instance's files.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET",
                                os.path.join(os.environ.get("VAR_DIR", "var"), "gunicorn.ctl"))
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads, not sync workers: a sync worker belongs to one connection until it closes, so a browser that
# keeps an idle keep-alive connection open holds it, and with every worker held the admin hangs. A
# gthread worker parks idle keep-alive connections and serves WEB_CONCURRENCY x GUNICORN_THREADS requests
# at once. Each thread has its own database connection (Django's connections are per thread), so
# PostgreSQL sees up to that many connections per instance.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
timeout = 30
accesslog = "-"
access_log_format = (
    '{"time": "%(t)s", "level": "INFO", "logger": "gunicorn.access", "message": "%(m)s %(U)s %(s)s", '
    '"method": "%(m)s", "path": "%(U)s", "status": %(s)s, "duration_ms": %(M)s, "bytes": "%(B)s", '
    '"remote_addr": "%(h)s", "correlation_id": "%({x-request-id}o)s"}'
)
