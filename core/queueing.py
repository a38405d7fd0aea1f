"""
Enqueueing tasks from request handlers without letting a broker outage slow them down.

Everything enqueued this way is also recorded in the database with a due time (inbox events, media
downloads), and a beat job hands due rows back to the workers. So when the broker is down, a publish
may simply be skipped: after one failure, this process stops trying for a few seconds, instead of
making every webhook wait for connection retries.
"""

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import Task, current_app
from django.db import transaction

from core.correlation import correlation, get_correlation_id

logger = logging.getLogger(__name__)

BROKER_BACKOFF_SECONDS = 10.0

_lock = threading.Lock()
_skip_until = 0.0


def publish_on_commit(publish: Callable[[], Any], *, what: str) -> None:
    """Run `publish` after the transaction commits; a broker failure is logged, never raised. The task
    carries the correlation id of the work that asked for it, whatever runs when the commit comes."""
    correlation_id = get_correlation_id()
    transaction.on_commit(lambda: _publish_as(correlation_id, publish, what))


def publish_on_commit_or(publish: Callable[[], Any], *, fallback: Callable[[], Any], what: str) -> None:
    """Like publish_on_commit, and when the publish fails or is skipped, `fallback` records that the
    row is not in the broker (so the requeue job takes it at once instead of after its stale time)."""
    correlation_id = get_correlation_id()
    transaction.on_commit(lambda: _publish_as(correlation_id, publish, what) or fallback())


def _publish_as(correlation_id: str, publish: Callable[[], Any], what: str) -> bool:
    with correlation(correlation_id):
        return _publish(publish, what)


def _publish(publish: Callable[[], Any], what: str) -> bool:
    """Returns whether the broker took it."""
    global _skip_until
    if time.monotonic() < _skip_until:
        return False  # the broker failed moments ago; the row's due time brings it back
    try:
        publish()
    except Exception as exc:  # noqa: BLE001 - any broker failure: the database row is the safety net
        with _lock:
            _skip_until = time.monotonic() + BROKER_BACKOFF_SECONDS
        logger.warning("broker unavailable; %s left for the requeue job", what,
                       extra={"error": f"{type(exc).__name__}: {exc}"})
        return False
    return True


def task_named(name: str) -> Task:
    """A registered Celery task, by name. Services enqueue the tasks that call them this way, so that a
    service and its task never import each other. Each app imports its tasks module in its
    `AppConfig.ready()`, so every process (web, worker, beat, shell) has them registered."""
    return current_app.tasks[name]


class Wake:
    """
    Wake a drain task: the rows themselves are the queue, and the task claims whatever is due. A burst of
    rows costs one publish per process per `interval` seconds, queued `delay` seconds ahead: `delay` is at
    least `interval`, so the drain a wake starts runs after every row whose own wake was skipped in its
    favour has committed (each committed at most `interval` after that wake was published). A lost wake
    (broker down, a worker killed) is made up by the periodic sweep that calls `now`.

    A drain of one key (a provider's sender, say) takes it as the task's arguments: wakes with different
    arguments are throttled apart.
    """

    def __init__(self, task_name: str, *, interval: float, delay: float) -> None:
        if delay < interval:
            raise ValueError("a wake's delay must be at least its interval, or a skipped wake's row could wait")
        self.task_name, self.interval, self.delay = task_name, interval, delay
        self._last: dict[tuple[Any, ...], float] = {}
        self._lock = threading.Lock()

    def soon(self, *args: Any) -> None:
        """Wake the drain once the current transaction commits (at once outside one)."""
        transaction.on_commit(lambda: self._throttled(args))

    def now(self, *args: Any) -> None:
        """Publish a drain, unthrottled, once the transaction commits: the sweep, a replay, a drain that ran
        out of time."""
        self.later(*args, countdown=0)

    def later(self, *args: Any, countdown: float) -> None:
        """Publish a drain to run `countdown` seconds after the transaction commits (rows due then)."""
        transaction.on_commit(lambda: self._publish(args, countdown))

    def _throttled(self, args: tuple[Any, ...]) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last.get(args, float("-inf")) < self.interval:
                return
            self._last[args] = now
        self._publish(args, self.delay)

    def _publish(self, args: tuple[Any, ...], countdown: float) -> None:
        _publish(lambda: task_named(self.task_name).apply_async(args, countdown=countdown or None),
                 f"{self.task_name} wake")
