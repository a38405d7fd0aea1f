"""gunicorn settings: access log lines as JSON with the request's correlation id (its X-Request-ID)."""

import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# gunicorn's default control socket (~/.gunicorn/gunicorn.ctl) is shared by every gunicorn of the user:
# keep ours with this instance's files.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET",
                                os.path.join(os.environ.get("VAR_DIR", "var"), "gunicorn.ctl"))
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = 30
accesslog = "-"
access_log_format = (
    '{"time": "%(t)s", "level": "INFO", "logger": "gunicorn.access", "message": "%(m)s %(U)s %(s)s", '
    '"method": "%(m)s", "path": "%(U)s", "status": %(s)s, "duration_ms": %(M)s, "bytes": "%(B)s", '
    '"remote_addr": "%(h)s", "correlation_id": "%({x-request-id}o)s"}'
)
