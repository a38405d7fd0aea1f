"""
A task held by a worker that dies (the whole worker, not just a child) comes back within a minute:
acks_late plus the Redis visibility timeout (40 s) and the unacked-restore sweep (every 5 s).
"""

import os
import signal
import time

import pytest

from tests.conftest import start_worker, stop_worker, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_task_of_a_killed_worker_is_redelivered_within_a_minute(worker_env, tmp_path):
    from whatsapp.tasks import close_expired_sessions_task

    first = start_worker(worker_env, tmp_path / "first.log", "doomed")
    # A countdown makes the worker take the message and hold it, unacknowledged, until it is due.
    result = close_expired_sessions_task.apply_async(countdown=4)
    wait_until(lambda: result.id.encode() in (tmp_path / "first.log").read_bytes(), 20,
               message="the first worker to take the task")
    os.killpg(first.pid, signal.SIGKILL)  # the main process and its children, with no goodbye
    first.wait()
    killed_at = time.monotonic()

    second = start_worker(worker_env, tmp_path / "second.log", "survivor")
    try:
        marker = f"{result.id}] succeeded".encode()
        wait_until(lambda: marker in (tmp_path / "second.log").read_bytes(), 75,
                   message="the task to come back to the second worker")
        assert time.monotonic() - killed_at < 60
    finally:
        stop_worker(second)
