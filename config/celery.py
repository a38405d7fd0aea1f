"""The Celery app: `celery -A config worker` and `celery -A config beat`."""

import os

from celery import Celery
from celery.signals import (
    beat_init,
    before_task_publish,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
)

from core import correlation
from core.embedded import embedded_dirs_create

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("whatsapp_platform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
@worker_init.connect
@beat_init.connect
def _make_embedded_dirs(**_kwargs):
    # The filesystem broker of the embedded defaults needs its folders before the first publish, whichever
    # process publishes first (web, worker, beat, or a `celery inspect` / `call` command).
    embedded_dirs_create()


@before_task_publish.connect
def _attach_correlation_id(headers=None, **_kwargs):
    # A task enqueued while handling a webhook carries that webhook's id; a beat job gets a fresh one.
    if headers is not None and not headers.get(correlation.TASK_HEADER):
        headers[correlation.TASK_HEADER] = correlation.get_correlation_id() or correlation.new_correlation_id()


@task_prerun.connect
def _adopt_correlation_id(task=None, **_kwargs):
    value = getattr(task.request, correlation.TASK_HEADER, None) if task else None
    task.request._correlation_token = correlation.set_correlation_id(value)


@task_postrun.connect
def _drop_correlation_id(task=None, **_kwargs):
    token = getattr(task.request, "_correlation_token", None) if task else None
    if token is not None:
        correlation.reset_correlation_id(token)


@worker_process_init.connect
def _warm_send_path(**_kwargs):
    # Build the pooled HTTP client (SSL context and all) before the first send, not between a message's
    # rate-limit slot and its provider call, where the delay would bunch sends together.
    # Imported here: this module loads before Django is set up, and the provider layer needs the app registry.
    from whatsapp.providers.base import pooled_http_client  # noqa: PLC0415

    pooled_http_client()
