"""
The message, status report and provider pages as a person reads them: a message's page in sections that
fit its direction, times to the second; a report that did not move a status said in words, not shown as a
failure; a provider's page with its own kind's ids and credentials only; ISO-like dates in the lists.
"""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from tests.conftest import customer, page
from whatsapp.models import Conversation, Message, MessageStatusEvent
from whatsapp.services.providers import provider_create

pytestmark = pytest.mark.django_db

AT = datetime(2026, 12, 3, 14, 5, 9, tzinfo=UTC)


def a_message(provider, direction: str, **fields) -> Message:
    conversation = Conversation.objects.get(contact=customer(provider), provider=provider)
    status = "received" if direction == Message.Direction.INBOUND else "read"
    message = Message.objects.create(provider=provider, conversation=conversation, direction=direction,
                                     text="Is my order on its way?", status=status, **fields)
    Message.objects.filter(pk=message.pk).update(created_at=AT)
    message.refresh_from_db()
    return message


def sections(response) -> list[str]:
    return [fieldset.name for fieldset in response.context["adminform"]]


def fields_shown(response) -> set[str]:
    return {field for fieldset in response.context["adminform"] for line in fieldset for field in line.fields}


def test_outbound_message_page_shows_its_delivery_and_no_ai(admin_client_logged, sandbox_provider):
    message = a_message(sandbox_provider, Message.Direction.OUTBOUND, provider_message_id="wamid.1", queued_at=AT,
                        sent_at=AT + timedelta(seconds=1), read_at=AT + timedelta(seconds=7), attempts=1,
                        content={"text": {"body": "Hi"}})
    response = admin_client_logged.get(reverse("admin:whatsapp_message_change", args=[message.pk]))

    assert sections(response) == ["Message", "Delivery", "Technical"]  # no template: no template section
    shown = fields_shown(response)
    assert {"queued_at_shown", "sent_at_shown", "attempts", "idempotency_key"} <= shown
    assert not {"transcript", "intent", "sentiment", "processing_status"} & shown
    html = page(response)
    assert "2026-12-03 14:05:10" in html  # sent, to the second
    assert "2026-12-03 14:05:16" in html  # read
    assert 'id="send_attempts-group"' in html and 'id="status_events-group"' in html
    # The content reads as a table of its fields, its raw JSON kept in the folded technical section.
    assert re.search(r"<th scope=\"row\">text › body</th>\s*<td>Hi</td>", html)


def test_inbound_message_page_shows_what_the_ai_made_of_it(admin_client_logged, sandbox_provider):
    message = a_message(sandbox_provider, Message.Direction.INBOUND, received_at=AT, intent="order_status",
                        sentiment="neutral")
    response = admin_client_logged.get(reverse("admin:whatsapp_message_change", args=[message.pk]))

    assert sections(response) == ["Message", "Delivery", "AI", "Technical"]
    shown = fields_shown(response)
    assert {"intent", "sentiment", "transcript", "received_at_shown"} <= shown
    assert not {"attempts", "queued_at_shown", "sent_at_shown", "lane"} & shown
    html = page(response)
    assert "2026-12-03 14:05:09" in html
    assert 'id="send_attempts-group"' not in html and 'id="status_events-group"' not in html


def test_a_status_report_that_did_not_apply_reads_as_kept_not_failed(admin_client_logged, sandbox_provider):
    message = a_message(sandbox_provider, Message.Direction.OUTBOUND, provider_message_id="wamid.2")
    for status, seconds, applied in [("read", 9, True), ("delivered", 2, False)]:
        MessageStatusEvent.objects.create(provider=sandbox_provider, message=message, provider_message_id="wamid.2",
                                          status=status, occurred_at=AT + timedelta(seconds=seconds),
                                          applied=applied)
    MessageStatusEvent.objects.create(provider=sandbox_provider, provider_message_id="wamid.unknown",
                                      status="sent", occurred_at=AT)

    html = page(admin_client_logged.get(reverse("admin:whatsapp_messagestatusevent_changelist")))

    results = html[html.index('id="result_list"'):]
    assert "Kept for history (not newer than the message&#x27;s status)" in results
    assert "Waiting for its message" in results
    assert "Applied" in results
    assert "icon-no.svg" not in results and "icon-yes.svg" not in results
    assert "2026-12-03 14:05:11" in results  # reports are listed to the second
    kept = admin_client_logged.get(reverse("admin:whatsapp_messagestatusevent_changelist"), {"outcome": "kept"})
    assert [event.status for event in kept.context["cl"].result_list] == ["delivered"]

    message_page = page(admin_client_logged.get(reverse("admin:whatsapp_message_change", args=[message.pk])))
    assert "Kept for history" in message_page


def test_lists_show_iso_like_dates(admin_client_logged, sandbox_provider):
    a_message(sandbox_provider, Message.Direction.INBOUND)
    html = page(admin_client_logged.get(reverse("admin:whatsapp_message_changelist")))
    assert '<td class="field-created_at nowrap">2026-12-03 14:05</td>' in html
    assert "p.m." not in html and "a.m." not in html


def test_a_long_text_in_a_list_is_cut_with_the_whole_text_on_hover(admin_client_logged, sandbox_provider):
    long_text = "Hello, " + "this is a long message " * 20
    message = a_message(sandbox_provider, Message.Direction.INBOUND)
    Message.objects.filter(pk=message.pk).update(text=long_text)
    html = page(admin_client_logged.get(reverse("admin:whatsapp_message_changelist")))
    assert f'<span class="clip" style="max-width:30em" title="{long_text.strip()}">' in html


def test_provider_page_shows_only_its_kinds_ids_and_credentials(admin_client_logged, sandbox_provider):
    response = admin_client_logged.get(reverse("admin:whatsapp_provider_change", args=[sandbox_provider.pk]))
    shown = fields_shown(response)
    assert {"phone_number", "webhook_secret"} <= shown
    assert not {"external_id", "business_account_id", "access_token", "app_secret", "verify_token", "auth_token",
                "api_token", "base_url", "url_token", "media_storage_hosts"} & shown
    assert "Sandbox (local simulator) settings and credentials" in sections(response)
    html = page(response)
    assert 'name="access_token"' not in html
    assert "provider_form.js" not in html  # the kind is fixed: nothing to toggle


def test_meta_provider_page_names_its_ids_as_meta_does(admin_client_logged):
    provider = provider_create(kind="meta", name="Meta page", options={
        "phone_number_id": "1234", "waba_id": "5678", "access_token": "tok", "app_secret": "sec",
        "verify_token": "ver"})
    response = admin_client_logged.get(reverse("admin:whatsapp_provider_change", args=[provider.pk]))
    shown = fields_shown(response)
    assert {"external_id", "business_account_id", "access_token", "app_secret", "verify_token"} <= shown
    assert not {"webhook_secret", "auth_token", "api_token", "base_url"} & shown
    html = page(response)
    assert "Cloud API phone number id." in html

    # Saving the page keeps what it does not show.
    form = response.context["adminform"].form
    data = {name: form[name].value() or "" for name in form.fields if name not in ("registration_template",)}
    data.update({"name": "Meta page renamed", "is_active": "on"})
    data = {key: value for key, value in data.items() if value not in (False, None)}
    saved = admin_client_logged.post(reverse("admin:whatsapp_provider_change", args=[provider.pk]), data)
    assert saved.status_code == 302, saved.context["adminform"].form.errors if saved.context else saved
    provider.refresh_from_db()
    assert (provider.name, provider.external_id, provider.credentials["access_token"]) == ("Meta page renamed",
                                                                                          "1234", "tok")


def test_provider_add_page_shows_every_kind_with_its_kinds_named(admin_client_logged):
    response = admin_client_logged.get(reverse("admin:whatsapp_provider_add"))
    shown = fields_shown(response)
    assert {"external_id", "access_token", "auth_token", "api_token", "webhook_secret", "base_url"} <= shown
    html = page(response)
    assert "Each field says which kinds use it" in html
    assert "Chatwoot: Chatwoot inbox id; Meta WhatsApp Cloud API: Cloud API phone number id." in html
    assert 'id="provider-kind-fields" type="application/json"' in html
    assert "whatsapp/provider_form" in html


def test_provider_list_says_paused_in_words(admin_client_logged, sandbox_provider):
    sandbox_provider.is_paused = True
    sandbox_provider.save()
    html = page(admin_client_logged.get(reverse("admin:whatsapp_provider_changelist")))
    results = html[html.index('id="result_list"'):]
    assert "Paused (sends held)" in results
    assert "icon-yes.svg" not in results and "icon-no.svg" not in results
