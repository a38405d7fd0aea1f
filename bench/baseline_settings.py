"""
The application's own settings with one difference: the URL configuration adds the bare baseline
endpoint (`bench/baseline_urls.py`). The benchmark serves BOTH endpoints with these settings, so the
webhook endpoint and the baseline run in the same gunicorn, middleware and database configuration.
"""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.baseline_urls"
