"""
Property-based fuzzing of the whole REST API from its own OpenAPI schema (schemathesis): every operation,
authenticated as a superuser so that every endpoint is reached, against the demo data, must never answer
5xx, whatever it is sent (valid and invalid bodies, odd query parameters, huge numbers, lone surrogates...).

In-process through Django's WSGI application, inside the test's transaction: what the fuzzing creates,
changes, sends or erases is rolled back after it. Nothing leaves this machine: the only provider is the
sandbox, tasks are queued (never run: on_commit callbacks do not fire in a test transaction), and any
connection to a host other than this one fails the test.
"""

import io
import socket
from collections import Counter

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from contacts.models import Contact, ContactUserMapping, DataExport
from core.api_tokens import api_token_create
from templates_app.models import MessageTemplate
from whatsapp.models import Conversation, Message, Provider

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# Cases per operation in the fuzzing phase (the examples and coverage phases add their own): about a minute
# and a half for the whole API on one core.
MAX_EXAMPLES = 20

# An {id} in a path is mostly a random number (a 404), so that odd ids are tried; an even one is turned into
# an existing row of the resource, so that the detail endpoints and actions are reached too.
RESOURCES = {
    "providers": Provider,
    "contacts": Contact,
    "contact-mappings": ContactUserMapping,
    "conversations": Conversation,
    "messages": Message,
    "templates": MessageTemplate,
    "exports": DataExport,
    "users": get_user_model(),
}
LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture
def no_internet(monkeypatch):
    """Only this machine's services (PostgreSQL, Redis) can be reached."""
    connect = socket.socket.connect

    def local_only(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in LOCAL_HOSTS:
            raise AssertionError(f"the API tried to reach {address} while fuzzed")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)


@pytest.fixture
def connection_kept():
    """Django closes the database connection at the end of a request, and with it the test's transaction;
    its test client keeps it open the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def api_key(db, no_internet, connection_kept) -> str:
    call_command("seed_demo", stdout=io.StringIO())
    assert set(Provider.objects.values_list("kind", flat=True)) == {"sandbox"}
    _, key = api_token_create(user=get_user_model().objects.get(username="admin"), name="fuzz")
    return key


# Loaded when the module is collected (the schema is made without the database), so that each operation is a
# test of its own, in a transaction of its own.
schema = schemathesis.openapi.from_wsgi("/api/schema/", WSGIHandler())


def _existing_row(case) -> None:
    parts = case.operation.path.strip("/").split("/")
    identifier = (case.path_parameters or {}).get("id")
    model = RESOURCES.get(parts[2]) if len(parts) > 2 else None
    if model is None or not isinstance(identifier, int) or identifier % 2:
        return
    ids = list(model.objects.order_by("pk").values_list("pk", flat=True))
    if ids:
        case.path_parameters["id"] = ids[identifier // 2 % len(ids)]


FIGURES: dict[str, Counter] = {}


@pytest.fixture(scope="module", autouse=True)
def figures(request):
    """Operations covered, cases run and answers by status class, shown after the run."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not FIGURES:
        return
    total = sum((counts for counts in FIGURES.values()), Counter())
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        reporter.write_line(f"\nAPI fuzzing: {len(FIGURES)} operations, {sum(total.values())} cases, answers: "
                            + ", ".join(f"{klass}: {count}" for klass, count in sorted(total.items())))


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
def test_no_server_error(case, api_key):
    _existing_row(case)
    response = case.call(headers={"Authorization": f"Token {api_key}"})
    FIGURES.setdefault(case.operation.label, Counter())[f"{response.status_code // 100}xx"] += 1
    case.validate_response(response, checks=[not_a_server_error])
