"""/metrics: webhooks counted as they arrive, queues, circuits and AI spend read from the database, in
Prometheus's text format; served with the metrics token or to an allowed address only."""

import logging
import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection
from django.utils import timezone
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from ai.models import AiCall, AiCircuit, ProviderAiSettings
from core.metrics import WEBHOOKS_REJECTED
from monitoring import metrics as monitoring_metrics
from tests.conftest import REPO_ROOT, _database_url, customer, event_id
from whatsapp.models import CircuitState, Message, Provider
from whatsapp.providers.events import MessageStatus
from whatsapp.services.delivery import message_deliver
from whatsapp.services.outbound import message_send_text
from whatsapp.services.webhooks import webhook_event_process
from whatsapp.views import REJECTION_REASONS

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-" + "k7" * 20
OUTSIDE = "203.0.113.7"


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def scrape(client, *, token: str | None = None, address: str = OUTSIDE, **extra):
    if token is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.get("/metrics", REMOTE_ADDR=address, **extra)


def read(response) -> dict[tuple[str, frozenset], float]:
    """Every sample of a 200 answer, parsed as Prometheus parses it: (name, labels) -> value."""
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.content.decode())
            for sample in family.samples}


def value(samples: dict, metric: str, /, **labels: str) -> float:
    return samples[(metric, frozenset(labels.items()))]


def of(provider: Provider, **labels: str) -> dict[str, str]:
    return {"provider_kind": provider.kind, "provider_id": str(provider.pk), **labels}


def inbound_body(text: str = "Hello") -> bytes:
    return (b'{"events": [{"type": "message", "id": "sbx-in-%s", "from": "+16505551234", "text": "%s", '
            b'"timestamp": %d}]}' % (uuid.uuid4().hex.encode(), text.encode(), int(time.time())))


# --- what a scrape shows ------------------------------------------------------------------------------

def test_webhooks_received_and_rejected_are_counted_and_the_inbox_shown(client, token, sandbox_provider,
                                                                        post_sandbox):
    unknown_url = {"provider_kind": "sandbox", "provider_id": "none", "reason": "unknown_provider"}
    before = read(scrape(client, token=token)).get(("whatsapp_webhooks_rejected_total",
                                                   frozenset(unknown_url.items())), 0)
    accepted = post_sandbox(sandbox_provider, inbound_body())
    assert accepted.status_code == 200
    assert post_sandbox(sandbox_provider, inbound_body(), sign=False).status_code == 401
    assert post_sandbox(sandbox_provider, inbound_body(), sign=False,
                        headers={"X-Sandbox-Signature": "sha256=" + "0" * 64}).status_code == 403
    assert post_sandbox(sandbox_provider, b"{", content_type="text/plain", sign=False).status_code == 415
    assert client.post(f"/webhooks/sandbox/{uuid.uuid4()}/", data=b"{}",
                       content_type="application/json").status_code == 404
    # A kind nobody registered does not become a label value of its own.
    assert client.post(f"/webhooks/made-up-{uuid.uuid4().hex}/{uuid.uuid4()}/", data=b"{}",
                       content_type="application/json").status_code == 404

    response = scrape(client, token=token)
    text = response.content.decode()
    assert "# HELP whatsapp_webhooks_received_total Webhook requests acknowledged" in text
    assert "# TYPE whatsapp_webhooks_received_total counter" in text
    assert "made-up" not in text
    samples = read(response)
    assert value(samples, "whatsapp_webhooks_received_total", **of(sandbox_provider, outcome="accepted")) == 1
    for reason in ("signature_missing", "signature_invalid", "unsupported_content_type"):
        assert value(samples, "whatsapp_webhooks_rejected_total", **of(sandbox_provider, reason=reason)) == 1
    assert value(samples, "whatsapp_webhooks_rejected_total", **unknown_url) == before + 1
    assert value(samples, "whatsapp_webhooks_rejected_total", provider_kind="unknown", provider_id="none",
                 reason="unknown_provider") >= 1
    assert value(samples, "whatsapp_webhook_events_pending", **of(sandbox_provider)) == 1
    assert value(samples, "whatsapp_webhook_oldest_pending_seconds", **of(sandbox_provider)) < 60
    assert value(samples, "whatsapp_webhook_events_failed", **of(sandbox_provider)) == 0

    webhook_event_process(event_id(accepted))
    samples = read(scrape(client, token=token))
    assert value(samples, "whatsapp_webhook_events_pending", **of(sandbox_provider)) == 0
    assert value(samples, "whatsapp_webhook_oldest_pending_seconds", **of(sandbox_provider)) == 0
    assert value(samples, "whatsapp_webhook_processing_seconds_count", **of(sandbox_provider)) == 1
    assert value(samples, "whatsapp_webhook_processing_seconds_bucket", **of(sandbox_provider, le="+Inf")) == 1


def test_queues_dead_letters_circuits_and_ai_spend_are_read_from_the_database(client, token, sandbox_provider):
    contact = customer(sandbox_provider)
    waiting = message_send_text(provider=sandbox_provider, contact=contact, text="Your order ships today.")
    dead = message_send_text(provider=sandbox_provider, contact=contact, text="Never arrived")
    now = timezone.now()
    Message.objects.filter(pk=waiting.pk).update(queued_at=now - timedelta(seconds=300),
                                                 next_attempt_at=now - timedelta(seconds=200))
    Message.objects.filter(pk=dead.pk).update(status=MessageStatus.DEAD_LETTER, next_attempt_at=None)
    Provider.objects.filter(pk=sandbox_provider.pk).update(circuit_state=CircuitState.OPEN, circuit_failures=5)
    ProviderAiSettings.objects.create(provider=sandbox_provider, daily_budget=Decimal("5.00"))
    for cost, status in ((Decimal("0.0125"), "ok"), (Decimal("0.0125"), "ok"), (Decimal("0"), "skipped")):
        AiCall.objects.create(feature="classification", provider=sandbox_provider, status=status, cost=cost)
    AiCall.objects.create(feature="classification", provider=sandbox_provider, status="ok", cost=Decimal("9"))
    AiCall.objects.filter(cost=Decimal("9")).update(created_at=now - timedelta(days=2))  # not today's
    AiCircuit.objects.update_or_create(pk="openai", defaults={"state": AiCircuit.State.OPEN})

    samples = read(scrape(client, token=token))
    reply = of(sandbox_provider, lane="reply")
    assert waiting.lane == "reply"
    assert value(samples, "whatsapp_outbound_queued_messages", **reply) == 1
    assert value(samples, "whatsapp_outbound_queued_messages", **of(sandbox_provider, lane="bulk")) == 0
    assert value(samples, "whatsapp_outbound_sending_messages", **reply) == 0
    assert 300 <= value(samples, "whatsapp_outbound_oldest_queued_seconds", **reply) < 360
    assert 200 <= value(samples, "whatsapp_outbound_oldest_due_seconds", **reply) < 260
    assert value(samples, "whatsapp_dead_letter_messages", **of(sandbox_provider)) == 1
    assert value(samples, "whatsapp_provider_circuit_state", **of(sandbox_provider)) == 2
    assert value(samples, "whatsapp_provider_circuit_failures", **of(sandbox_provider)) == 5
    assert value(samples, "whatsapp_provider_info", **of(sandbox_provider, name="Sandbox test")) == 1
    assert value(samples, "whatsapp_provider_active", **of(sandbox_provider)) == 1
    assert value(samples, "whatsapp_provider_paused", **of(sandbox_provider)) == 0
    assert value(samples, "whatsapp_ai_spend_today_usd", **of(sandbox_provider)) == pytest.approx(0.025)
    assert value(samples, "whatsapp_ai_calls_today", **of(sandbox_provider, status="ok")) == 2
    assert value(samples, "whatsapp_ai_calls_today", **of(sandbox_provider, status="skipped")) == 1
    assert value(samples, "whatsapp_ai_calls_today", **of(sandbox_provider, status="failed")) == 0
    assert value(samples, "whatsapp_ai_daily_budget_usd", **of(sandbox_provider)) == 5
    assert value(samples, "whatsapp_ai_circuit_state") == 2
    assert value(samples, "whatsapp_ai_requests_pending") == 0
    assert value(samples, "whatsapp_metrics_database_up") == 1

    # A paused provider's messages are held on purpose: not overdue for a worker.
    Provider.objects.filter(pk=sandbox_provider.pk).update(is_paused=True)
    samples = read(scrape(client, token=token))
    assert value(samples, "whatsapp_provider_paused", **of(sandbox_provider)) == 1
    assert value(samples, "whatsapp_outbound_oldest_due_seconds", **reply) == 0
    assert value(samples, "whatsapp_outbound_queued_messages", **reply) == 1


def test_a_send_is_timed_from_the_provider_call_and_from_the_queue(client, token, sandbox_provider):
    message = message_send_text(provider=sandbox_provider, contact=customer(sandbox_provider), text="Hi there")
    assert message_deliver(message.pk).status == MessageStatus.SENT

    samples = read(scrape(client, token=token))
    assert value(samples, "whatsapp_send_call_seconds_count", **of(sandbox_provider, outcome="sent")) == 1
    assert value(samples, "whatsapp_send_call_seconds_sum", **of(sandbox_provider, outcome="sent")) < 5
    assert value(samples, "whatsapp_send_queued_to_sent_seconds_count", **of(sandbox_provider, lane="reply")) == 1
    assert value(samples, "whatsapp_outbound_queued_messages", **of(sandbox_provider, lane="reply")) == 0


def test_the_output_is_valid_text_format_and_openmetrics_on_request(client, token, sandbox_provider):
    text = scrape(client, token=token).content.decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    ours = [family for name, family in families.items() if name.startswith("whatsapp_")]
    assert len(ours) >= 25
    assert all(family.documentation for family in ours)
    assert families["whatsapp_webhooks_received"].type == "counter"
    assert families["whatsapp_send_call_seconds"].type == "histogram"
    assert families["whatsapp_outbound_queued_messages"].type == "gauge"

    response = scrape(client, token=token, HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert response["Content-Type"].startswith("application/openmetrics-text")
    names = {family.name for family in openmetrics_families(response.content.decode())}
    assert {"whatsapp_webhooks_received", "whatsapp_provider_circuit_state"} <= names


def test_counts_of_several_processes_are_added_up_in_multiprocess_mode(client, token, tmp_path, monkeypatch):
    shared = tmp_path / "metrics"  # not made yet: the first process that counts makes it
    count = "from core import metrics; metrics.webhook_received('sandbox', 987654321, duplicate=False)"
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], cwd=REPO_ROOT, check=True, timeout=60,
                       env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)})
    assert len(list(shared.glob("counter_*.db"))) == 2  # one file per process

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    response = scrape(client, token=token)
    samples = read(response)
    assert value(samples, "whatsapp_webhooks_received_total", provider_kind="sandbox", provider_id="987654321",
                 outcome="accepted") == 2
    assert value(samples, "whatsapp_metrics_database_up") == 1
    # The serving process's own memory and CPU would stand for one process among many.
    assert "process_cpu_seconds_total" not in response.content.decode()


def test_the_processes_metrics_are_still_served_when_the_database_cannot_be_read(client, token, monkeypatch):
    monkeypatch.setattr(monitoring_metrics, "QUERY_TIMEOUT_MS", 200)
    with psycopg.connect(_database_url(connection.settings_dict)) as other:
        other.execute("SET lock_timeout = '5s'")
        # Another session holds the providers table: the scrape's first query gives up after its timeout.
        other.execute("LOCK TABLE whatsapp_provider IN ACCESS EXCLUSIVE MODE")
        response = scrape(client, token=token)
    text = response.content.decode()
    assert value(read(response), "whatsapp_metrics_database_up") == 0
    assert "# TYPE whatsapp_webhooks_received_total counter" in text
    assert "whatsapp_outbound_queued_messages" not in text


def test_a_scrape_over_plain_http_is_not_redirected_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert scrape(client, address="127.0.0.1").status_code == 200
    assert client.get("/health/").status_code != 301  # as /health/
    assert client.get("/admin/login/").status_code == 301


# --- who may read it ----------------------------------------------------------------------------------

def test_loopback_is_allowed_by_default_and_other_addresses_are_refused(client):
    assert scrape(client, address="127.0.0.1").status_code == 200
    assert scrape(client, address="::1").status_code == 200

    refused = scrape(client, address=OUTSIDE)
    assert refused.status_code == 403
    assert refused["Content-Type"] == "text/plain; charset=utf-8"
    assert OUTSIDE in refused.content.decode() and "METRICS_ALLOWED_NETWORKS" in refused.content.decode()


def test_the_allow_list_is_configurable_and_may_leave_only_the_token(client, settings, token):
    settings.METRICS_ALLOWED_NETWORKS = ["203.0.113.0/24", "2001:db8::/32"]
    assert scrape(client, address=OUTSIDE).status_code == 200
    assert scrape(client, address="2001:db8::5").status_code == 200
    assert scrape(client, address="127.0.0.1").status_code == 403

    settings.METRICS_ALLOWED_NETWORKS = []
    assert scrape(client, address="127.0.0.1").status_code == 403
    assert scrape(client, address="127.0.0.1", token=token).status_code == 200


def test_a_token_opens_it_from_anywhere_and_a_wrong_one_is_refused_with_401(client, token):
    assert scrape(client, token=token).status_code == 200

    wrong = scrape(client, token=token[:-1] + "x")
    assert wrong.status_code == 401
    assert wrong.content.decode().strip() == "the metrics token is wrong"
    assert wrong["WWW-Authenticate"].startswith("Bearer")

    basic = scrape(client, HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
    assert basic.status_code == 401 and "Bearer <token>" in basic.content.decode()
    assert scrape(client, HTTP_AUTHORIZATION=f"bearer {token}").status_code == 200  # the scheme is case-blind


def test_a_token_is_refused_when_none_is_configured(client, settings):
    settings.METRICS_TOKEN = ""
    response = scrape(client, token="anything")
    assert response.status_code == 401
    assert "METRICS_TOKEN is not set" in response.content.decode()


def test_the_client_address_is_seen_through_trusted_proxies_only(client, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    # The proxy on this host forwards a request from outside: the client is outside.
    assert scrape(client, address="127.0.0.1", HTTP_X_FORWARDED_FOR=OUTSIDE).status_code == 403
    assert scrape(client, address="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 200
    # A client outside claiming to be local is not believed.
    assert scrape(client, address=OUTSIDE, HTTP_X_FORWARDED_FOR="127.0.0.1").status_code == 403


@pytest.mark.parametrize("header", [{"HTTP_X_FORWARDED_FOR": "198.51.100.20"},
                                    {"HTTP_FORWARDED": "for=198.51.100.20;proto=https"},
                                    {"HTTP_X_REAL_IP": "198.51.100.20"}])
def test_a_request_through_an_untrusted_proxy_gets_no_address_based_access(client, settings, token, header):
    # A reverse proxy on this host passes a request from outside on from 127.0.0.1; with no proxy trusted,
    # the address says nothing about the client.
    assert settings.TRUSTED_PROXY_COUNT == 0
    refused = scrape(client, address="127.0.0.1", **header)
    assert refused.status_code == 403
    reason = refused.content.decode()
    assert "through a proxy" in reason and "TRUSTED_PROXY_COUNT" in reason and "metrics token" in reason
    assert scrape(client, address="127.0.0.1", token=token, **header).status_code == 200
    assert scrape(client, address="127.0.0.1").status_code == 200  # a scrape straight from this host


def test_the_token_is_never_logged(client, token, caplog):
    with caplog.at_level(logging.DEBUG):
        scrape(client, token=token)
        scrape(client, token="wrong-" + token)
    assert caplog.records  # the refusal is logged...
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert token not in logged  # ...without what was presented


def test_the_rejection_reasons_in_the_help_text_are_the_ones_counted(client, sandbox_provider):
    listed = WEBHOOKS_REJECTED.describe()[0].documentation.partition(":")[2].strip(" .").split(", ")
    # A GET answered 405 (a provider without a verification handshake) is not a counted rejection.
    assert set(listed) == {reason for status, reason in REJECTION_REASONS.items() if status != 405} | {"other"}
    before = read(scrape(client, address="127.0.0.1"))
    response = client.get(f"/webhooks/sandbox/{sandbox_provider.public_id}/")
    assert response.status_code == 405
    after = read(scrape(client, address="127.0.0.1"))
    assert not [key for key in after if key[0] == "whatsapp_webhooks_rejected_total" and after[key] != before.get(key)]


def test_only_get_is_answered(client):
    assert client.post("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 405
