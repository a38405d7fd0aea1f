"""Every admin changelist and add page answers 200 to a superuser; object pages show what matters."""

import json

import httpx
import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client, RequestFactory
from django.urls import reverse
from kombu.exceptions import OperationalError

from contacts.models import Contact
from core.models import ApiToken, AuditLog
from tests.conftest import FIXTURES, event_id, fixture_bytes, json_body
from tests.signing import make_meta, make_twilio, post_meta, post_twilio
from whatsapp.models import Conversation, Media, Message, Provider, WebhookEvent
from whatsapp.services import providers
from whatsapp.services.providers import provider_create
from whatsapp.services.webhooks import webhook_event_process
from whatsapp.tasks import simulate_inbound_task

pytestmark = pytest.mark.django_db

REGISTERED = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


@pytest.fixture
def demo_data(sandbox_provider, post_sandbox):
    response = post_sandbox(sandbox_provider, fixture_bytes("sandbox", "inbound_text.json"))
    webhook_event_process(json_body(response)["event"])
    return sandbox_provider


@pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=[m._meta.label for m, _ in REGISTERED])
def test_changelist_and_add_pages(admin_client_logged, demo_data, model, model_admin):
    info = model._meta.app_label, model._meta.model_name
    response = admin_client_logged.get(reverse("admin:{}_{}_changelist".format(*info)))
    assert response.status_code == 200
    response = admin_client_logged.get(reverse("admin:{}_{}_changelist".format(*info)), {"q": "ana"})
    assert response.status_code == 200
    add = admin_client_logged.get(reverse("admin:{}_{}_add".format(*info)))
    expected = 200 if model_admin.has_add_permission(_request_for(admin_client_logged)) else 403
    assert add.status_code == expected


def _request_for(client):
    request = RequestFactory().get("/")
    request.user = get_user_model().objects.get(username="root")
    return request


# The counting's own bookkeeping (deltas waiting to be folded in, who wrote in which hour, which template
# got an answer): the dashboard shows what they add up to.
BOOKKEEPING = {"analytics.CountDelta", "analytics.ContactHour", "analytics.TemplateReply"}


def test_every_model_is_registered():
    ours = [m for app in ("whatsapp", "contacts", "templates_app", "analytics")
            for m in apps.get_app_config(app).get_models() if m._meta.label not in BOOKKEEPING]
    assert [m._meta.label for m in ours if m not in admin.site._registry] == []


def test_provider_page_shows_webhook_url_and_masks_secrets(admin_client_logged, demo_data):
    page = admin_client_logged.get(reverse("admin:whatsapp_provider_change", args=[demo_data.pk])).content.decode()
    assert f"/webhooks/sandbox/{demo_data.public_id}/" in page
    secret = demo_data.credentials["webhook_secret"]
    assert secret not in page
    assert "••••" + secret[-4:] in page


def test_provider_add_form_stores_credentials_encrypted(admin_client_logged):
    response = admin_client_logged.post(reverse("admin:whatsapp_provider_add"), {
        "kind": "meta", "name": "Meta from admin", "is_active": "on", "rate_limit_per_second": "80",
        "verification_status": "unverified", "phone_number": "+15550001111", "external_id": "123456",
        "business_account_id": "998877", "access_token": "tok-abcdefgh", "app_secret": "sec-abcdefgh",
        "verify_token": "ver-abcdefgh",
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    provider = Provider.objects.get(name="Meta from admin")
    assert provider.credentials == {"access_token": "tok-abcdefgh", "app_secret": "sec-abcdefgh",
                                    "verify_token": "ver-abcdefgh"}


def test_provider_add_form_names_missing_options(admin_client_logged):
    response = admin_client_logged.post(reverse("admin:whatsapp_provider_add"), {
        "kind": "twilio", "name": "Twilio incomplete", "rate_limit_per_second": "10",
        "verification_status": "unverified"})
    assert response.status_code == 200
    assert "A twilio provider needs: account_sid, auth_token, phone_number" in response.content.decode()


def test_sandbox_added_in_admin_gets_its_secret_and_defaults(admin_client_logged):
    response = admin_client_logged.post(reverse("admin:whatsapp_provider_add"), {
        "kind": "sandbox", "name": "Admin sandbox", "is_active": "on", "rate_limit_per_second": "0",
        "verification_status": "unverified"})
    assert response.status_code == 302
    provider = Provider.objects.get(name="Admin sandbox")
    assert len(provider.credentials["webhook_secret"]) >= 32
    assert provider.phone_number == "+15550000000" and provider.rate_limit_per_second == 50


def test_conversation_page_shows_the_transcript(admin_client_logged, demo_data):
    conversation = Conversation.objects.get()
    page = admin_client_logged.get(reverse("admin:whatsapp_conversation_change", args=[conversation.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "wa-transcript" in html and "Is my order #1042 on its way?" in html


def test_webhook_event_page_pretty_prints_the_raw_body(admin_client_logged, demo_data):
    event = WebhookEvent.objects.get()
    page = admin_client_logged.get(reverse("admin:whatsapp_webhookevent_change", args=[event.pk]))
    assert page.status_code == 200
    assert "&quot;events&quot;: [" in page.content.decode()


def test_default_groups_exist():
    names = set(Group.objects.values_list("name", flat=True))
    assert {"Operator", "Template reviewer", "Admin"} <= names
    reviewer = Group.objects.get(name="Template reviewer")
    assert reviewer.permissions.filter(codename="review_messagetemplate").exists()


def test_pause_and_resume_actions_are_audited(admin_client_logged, demo_data):
    url = reverse("admin:whatsapp_provider_changelist")
    admin_client_logged.post(url, {"action": "pause", "_selected_action": [demo_data.pk]})
    demo_data.refresh_from_db()
    assert demo_data.is_paused
    admin_client_logged.post(url, {"action": "resume", "_selected_action": [demo_data.pk]})
    demo_data.refresh_from_db()
    assert not demo_data.is_paused
    actions = list(AuditLog.objects.filter(object_id=str(demo_data.pk)).values_list("action", "actor_label"))
    assert ("provider.pause", "root") in actions and ("provider.resume", "root") in actions


def test_test_connection_action_reports_the_result(admin_client_logged, demo_data):
    url = reverse("admin:whatsapp_provider_changelist")
    response = admin_client_logged.post(url, {"action": "test_connection", "_selected_action": [demo_data.pk]},
                                        follow=True)
    assert "the sandbox simulator is always reachable" in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_simulate_inbound_posts_a_signed_webhook_to_the_live_server(live_server, settings, monkeypatch):
    # Workers post to INTERNAL_BASE_URL, where they reach the web server, whatever the public URL is.
    settings.PUBLIC_BASE_URL = "https://wa.example.invalid"
    settings.INTERNAL_BASE_URL = live_server.url
    user = get_user_model().objects.create_superuser("sim", "sim@example.com", "pw-123456-strong")
    provider = provider_create(kind="sandbox", name="Sim sandbox", options={})
    client = Client()
    client.force_login(user)
    page = client.get(reverse("admin:whatsapp_provider_change", args=[provider.pk])).content.decode()
    assert "Simulate an inbound message" in page
    queued = []
    monkeypatch.setattr(simulate_inbound_task, "delay", lambda *args: queued.append(args))
    response = client.post(reverse("admin:whatsapp_provider_simulate_inbound", args=[provider.pk]),
                           {"from_phone": "+15551239999", "name": "Sim", "text": "hello from the phone"}, follow=True)
    # The admin answers at once: the webhook is posted by a worker, not by the admin's own request.
    assert response.redirect_chain[-1][0] == reverse("admin:whatsapp_provider_change", args=[provider.pk])
    assert "The simulated message was queued for sending to the webhook" in response.content.decode()
    assert not WebhookEvent.objects.exists() and len(queued) == 1
    assert queued[0][0] == provider.pk and all(isinstance(arg, str | dict) for arg in queued[0][1:])

    result = simulate_inbound_task.apply(args=queued[0])  # what the worker does
    event = WebhookEvent.objects.get(provider=provider)
    assert result.get() == event.pk
    assert event.status == "pending" and event.signature_valid is True
    assert b"hello from the phone" in bytes(event.body)


@pytest.mark.parametrize(("answer", "posts"), [(400, 1), (403, 1), (503, 9), ("network", 9)])
def test_simulate_inbound_task_retries_network_errors_and_5xx_only(demo_data, monkeypatch, answer, posts):
    calls = []

    def post(url, **kwargs):
        calls.append(url)
        if answer == "network":
            raise httpx.ConnectError("connection refused")
        return httpx.Response(answer, json={}, request=httpx.Request("POST", url))

    monkeypatch.setattr(providers.httpx, "post", post)
    result = simulate_inbound_task.apply(args=(demo_data.pk, "{}", {}))  # retries run at once when applied
    assert result.failed()
    assert len(calls) == posts  # a 4xx once; otherwise the first post and every retry


@pytest.mark.django_db(transaction=True)
def test_simulate_inbound_says_so_when_the_task_queue_is_down(admin_client_logged, demo_data, monkeypatch):
    def broker_down(*args):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(simulate_inbound_task, "delay", broker_down)
    response = admin_client_logged.post(reverse("admin:whatsapp_provider_simulate_inbound", args=[demo_data.pk]),
                                        {"from_phone": "+15551239999", "name": "Sim", "text": "hello"})
    assert response.status_code == 200  # the form again, with what went wrong
    assert "Not sent: the task queue cannot be reached" in response.content.decode()


def test_editing_a_provider_keeps_secrets_left_empty_and_audits_before_and_after(admin_client_logged, demo_data):
    secret = demo_data.credentials["webhook_secret"]
    response = admin_client_logged.post(reverse("admin:whatsapp_provider_change", args=[demo_data.pk]), {
        "name": "Renamed sandbox", "is_active": "on", "rate_limit_per_second": "20",
        "verification_status": "verified", "phone_number": "+15550000000", "webhook_secret": ""})
    assert response.status_code == 302, response.content.decode()[:2000]
    demo_data.refresh_from_db()
    assert demo_data.name == "Renamed sandbox" and demo_data.kind == "sandbox"
    assert demo_data.credentials["webhook_secret"] == secret
    entry = AuditLog.objects.filter(action="admin.change", object_id=str(demo_data.pk)).get()
    assert entry.before["name"] == "Sandbox test" and entry.after["name"] == "Renamed sandbox"
    assert secret not in str(entry.before) + str(entry.after)


def test_inbox_filters_flagged_events_and_shows_forms_readably(admin_client_logged):
    meta = make_meta()
    flagged = webhook_event_process(json_body(post_meta(
        admin_client_logged, meta, fixture_bytes("meta", "batch_three_numbers.json")))["event"])
    assert flagged.unrouted_to
    twilio = make_twilio()
    form = json.loads((FIXTURES / "twilio" / "inbound_text.json").read_text())
    twilio_event = event_id(post_twilio(admin_client_logged, twilio, form))

    changelist = reverse("admin:whatsapp_webhookevent_changelist")
    listed = admin_client_logged.get(changelist, {"routing": "unrouted"}).content.decode()
    assert f"/{flagged.pk}/change/" in listed and f"/{twilio_event}/change/" not in listed
    detail = admin_client_logged.get(reverse("admin:whatsapp_webhookevent_change", args=[twilio_event]))
    assert "&quot;MessageSid&quot;" in detail.content.decode() or '"MessageSid"' in detail.content.decode()


def test_media_retry_action_requeues_and_audits(admin_client_logged):
    conversation = Conversation.objects.create(provider=Provider.objects.create(kind="sandbox", name="s"),
                                               contact=Contact.objects.create())
    message = Message.objects.create(provider=conversation.provider, conversation=conversation, direction="inbound",
                                     status="received", message_type="image")
    media = Media.objects.create(message=message, state="failed", attempts=5, last_error="HTTP 404")
    response = admin_client_logged.post(reverse("admin:whatsapp_media_changelist"),
                                        {"action": "retry_download", "_selected_action": [media.pk]}, follow=True)
    assert "1 download(s) queued" in response.content.decode()
    media.refresh_from_db()
    assert (media.state, media.attempts) == ("pending", 0)
    assert AuditLog.objects.filter(action="media.retry").exists()


def test_api_keys_are_shown_once_stored_as_digests_and_revocable(admin_client_logged, superuser):
    response = admin_client_logged.post(reverse("admin:whatsapp_apitoken_add"),
                                        {"user": superuser.pk, "name": "CRM", "scopes": ["read"]}, follow=True)
    page = response.content.decode()
    token = ApiToken.objects.get(name="CRM")
    key = page.split("API key for root: ")[1].split(" ")[0]
    assert key.startswith(token.prefix + ".")
    with connection.cursor() as cursor:
        cursor.execute("SELECT prefix, digest FROM whatsapp_apitoken")
        assert key not in str(cursor.fetchall())
    listing = admin_client_logged.get(reverse("admin:whatsapp_apitoken_changelist")).content.decode()
    assert key not in listing and token.prefix in listing

    assert admin_client_logged.get("/api/v1/providers/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    admin_client_logged.post(reverse("admin:whatsapp_apitoken_changelist"),
                             {"action": "revoke", "_selected_action": [token.pk]})
    assert Client().get("/api/v1/providers/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 401
