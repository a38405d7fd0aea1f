"""Meta Cloud API webhooks, one test per fixture: what a signed POST leaves in the database. (`meta` is the
Meta provider of tests/conftest.py: the ids the fixtures name.)"""

import json

import pytest

from contacts.models import Contact, ContactIdentity
from core.models import AuditLog
from templates_app.models import MessageTemplate
from tests.conftest import fixture_bytes, json_body
from tests.signing import META_WABA_ID, make_meta, post_meta, webhook_path
from whatsapp.models import Conversation, Media, Message, MessageStatusEvent, Session, WebhookEvent
from whatsapp.services.inbound import orphan_statuses_apply
from whatsapp.services.providers import provider_create
from whatsapp.services.webhooks import webhook_event_process

pytestmark = pytest.mark.django_db

WA_PHONE = "+5511987650001"


def deliver(client, provider, fixture: str) -> WebhookEvent:
    response = post_meta(client, provider, fixture_bytes("meta", fixture))
    assert response.status_code == 200, response.content
    return webhook_event_process(json_body(response)["event"])


INBOUND = {
    # fixture: (type, text, expected content items, quoted message id)
    "text.json": ("text", "Olá! Can I change my delivery address?", {}, ""),
    "image.json": ("image", "The damaged box", {}, ""),
    "audio_voice.json": ("audio", "", {"voice": True}, ""),
    "video.json": ("video", "How it looks", {}, ""),
    "document.json": ("document", "Invoice", {}, ""),
    "sticker.json": ("sticker", "", {"animated": True}, ""),
    "location.json": ("location", "Av. Paulista", {"latitude": -23.561414, "longitude": -46.655881,
                                                   "address": "Av. Paulista, 1578, São Paulo"}, ""),
    "contacts.json": ("contacts", "Carlos Mendes", {}, ""),
    "interactive_button_reply.json": ("interactive_reply", "Reschedule",
                                      {"kind": "button_reply", "id": "reschedule"}, "wamid.OUTBOUND0001"),
    "interactive_list_reply.json": ("interactive_reply", "14:00", {"kind": "list_reply", "id": "slot-14h",
                                                                   "description": "Tomorrow afternoon"},
                                    "wamid.OUTBOUND0002"),
    "button_template_tap.json": ("button", "Confirm", {"payload": "CONFIRM_ORDER_2291"}, "wamid.OUTBOUND0003"),
    "reaction_added.json": ("reaction", "\U0001F44D", {"emoji": "\U0001F44D", "removed": False},
                            "wamid.OUTBOUND0004"),
    "reaction_removed.json": ("reaction", "", {"removed": True}, "wamid.OUTBOUND0004"),
    "order.json": ("order", "Two of these please", {}, ""),
    "unsupported.json": ("unsupported", "Message type unknown", {"unsupported_type": "poll_update"}, ""),
    "referral_ad.json": ("text", "Is this still available?", {}, ""),
    "forwarded.json": ("text", "Look at this deal", {"frequently_forwarded": True}, ""),
}


@pytest.mark.parametrize("fixture", sorted(INBOUND))
def test_inbound_fixture(client, meta, fixture):
    message_type, text, content, quoted = INBOUND[fixture]
    event = deliver(client, meta, fixture)
    assert (event.status, event.event_count, event.last_error) == ("processed", 1, "")
    message = Message.objects.get()
    assert (message.provider, message.direction, message.status) == (meta, "inbound", "received")
    assert (message.message_type, message.text) == (message_type, text)
    assert content.items() <= message.content.items()
    assert message.received_at.timestamp() > 1_790_000_000
    contact = message.conversation.contact
    assert contact.profile_name == "Beatriz Lima"
    assert set(contact.identities.values_list("kind", "value")) >= {("phone", WA_PHONE),
                                                                    ("whatsapp_id", "5511987650001")}
    assert Session.objects.get().state == "open"
    assert message.content.get("quoted_message_id", "") == quoted


@pytest.mark.parametrize(("fixture", "mime", "filename"), [
    ("image.json", "image/jpeg", ""), ("audio_voice.json", "audio/ogg; codecs=opus", ""),
    ("video.json", "video/mp4", ""), ("document.json", "application/pdf", "invoice-2291.pdf"),
    ("sticker.json", "image/webp", ""),
])
def test_media_messages_get_a_pending_media_row_that_expires_with_the_media_id(client, meta, fixture, mime, filename):
    deliver(client, meta, fixture)
    media = Media.objects.get()
    assert (media.mime_type, media.filename, media.state) == (mime, filename, "pending")
    assert media.provider_media_id.startswith("14100000000001")
    assert (media.expires_at - media.message.received_at).days == 7


def test_contacts_card_is_kept_whole(client, meta):
    deliver(client, meta, "contacts.json")
    card = Message.objects.get().content["contacts"][0]
    assert card["phones"][0]["wa_id"] == "5511977770002"


def test_referral_from_an_ad_is_kept(client, meta):
    deliver(client, meta, "referral_ad.json")
    referral = Message.objects.get().content["referral"]
    assert (referral["source_type"], referral["ctwa_clid"]) == ("ad", "ARAkLkA8rmlF")


def test_order_items_are_kept(client, meta):
    deliver(client, meta, "order.json")
    assert Message.objects.get().content["order"]["product_items"][0]["product_retailer_id"] == "sku-881"


def test_unsupported_keeps_its_error(client, meta):
    deliver(client, meta, "unsupported.json")
    assert Message.objects.get().content["errors"][0]["code"] == 131051


def test_a_reply_links_to_the_message_it_quotes(client, meta):
    deliver(client, meta, "text.json")
    deliver(client, meta, "reply_context.json")
    reply = Message.objects.get(text="Yes, that one")
    assert reply.reply_to == Message.objects.get(text="Olá! Can I change my delivery address?")


def test_reactions_link_to_the_message_they_react_to(client, meta):
    conversation = Conversation.objects.create(provider=meta, contact=Contact.objects.create(profile_name="x"))
    ours = Message.objects.create(provider=meta, conversation=conversation, direction="outbound", status="sent",
                                  provider_message_id="wamid.OUTBOUND0004", text="Your order shipped")
    deliver(client, meta, "reaction_added.json")
    deliver(client, meta, "reaction_removed.json")
    added, removed = Message.objects.filter(message_type="reaction").order_by("received_at")
    assert added.reply_to == ours and removed.reply_to == ours
    assert (added.content["removed"], removed.content["removed"]) == (False, True)


def test_sender_with_only_a_business_scoped_id_is_a_normal_contact(client, meta):
    event = deliver(client, meta, "bsuid_only.json")
    assert event.status == "processed"
    contact = Message.objects.get().conversation.contact
    identities = set(contact.identities.values_list("kind", "value", "scope"))
    assert identities == {("bsuid", "BR.1349887766554433", META_WABA_ID),
                          ("bsuid_parent", "BR.ENT.99887766", META_WABA_ID),
                          ("username", "@dani.r", "")}
    assert contact.profile_name == "Dani"


def test_number_change_links_the_new_number_to_the_same_contact(client, meta):
    deliver(client, meta, "text.json")
    deliver(client, meta, "system_number_changed.json")
    assert Contact.objects.count() == 1
    assert ContactIdentity.objects.filter(kind="phone", value="+5511912340009").exists()
    assert Message.objects.get(message_type="system").content["system"]["type"] == "user_changed_number"


def test_redelivered_post_changes_nothing_but_a_counter(client, meta):
    deliver(client, meta, "text.json")
    deliver(client, meta, "text.json")
    assert Message.objects.count() == 1 and Contact.objects.count() == 1
    assert Message.objects.get().duplicate_count == 1


# --- statuses ------------------------------------------------------------------------------------

@pytest.fixture
def sent_message(meta):
    contact = Contact.objects.create(profile_name="Beatriz Lima")
    conversation = Conversation.objects.create(provider=meta, contact=contact)
    return Message.objects.create(provider=meta, conversation=conversation, direction="outbound", status="sending",
                                  provider_message_id="wamid.OUT-STATUS-1", text="Your order shipped")


def test_out_of_order_statuses_end_as_read_with_every_timestamp(client, meta, sent_message):
    event = deliver(client, meta, "status_read_before_delivered.json")
    assert event.event_count == 3
    sent_message.refresh_from_db()
    assert sent_message.status == "read"
    assert sent_message.sent_at < sent_message.delivered_at < sent_message.read_at
    reports = list(MessageStatusEvent.objects.order_by("id").values_list("status", "applied"))
    assert reports == [("sent", True), ("read", True), ("delivered", False)]
    assert MessageStatusEvent.objects.get(status="sent").raw["pricing"]["type"] == "free_customer_service"


def test_failed_status_keeps_code_title_and_details(client, meta, sent_message):
    deliver(client, meta, "status_failed.json")
    sent_message.refresh_from_db()
    assert (sent_message.status, sent_message.error_code) == ("failed", "131047")
    assert "Re-engagement message" in sent_message.error_detail
    assert "more than 24 hours" in sent_message.error_detail
    report = MessageStatusEvent.objects.get()
    assert (report.error_code, report.error_title) == ("131047", "Re-engagement message")


def test_played_follows_delivered_and_the_legacy_deleted_status_is_noted(client, meta, sent_message):
    event = deliver(client, meta, "status_played.json")
    sent_message.refresh_from_db()
    assert sent_message.status == "played" and sent_message.played_at is not None
    assert "'deleted' ignored" in event.notes


def test_status_for_a_message_we_do_not_know_yet_is_kept_and_applied_when_it_appears(client, meta):
    deliver(client, meta, "status_read_before_delivered.json")
    assert MessageStatusEvent.objects.filter(message=None).count() == 3
    conversation = Conversation.objects.create(provider=meta, contact=Contact.objects.create())
    message = Message.objects.create(provider=meta, conversation=conversation, direction="outbound",
                                     status="sending", provider_message_id="wamid.OUT-STATUS-1")
    orphan_statuses_apply(message)
    message.refresh_from_db()
    assert message.status == "read"


def test_account_level_errors_are_kept_as_notes(client, meta):
    event = deliver(client, meta, "system_error.json")
    assert event.status == "processed" and "131000" in event.notes


# --- templates -----------------------------------------------------------------------------------

@pytest.fixture
def submitted_template(meta):
    return MessageTemplate.objects.create(provider=meta, name="order_ready", language="en_US", status="pending",
                                          provider_template_id="991100220033")


@pytest.mark.parametrize(("fixture", "status", "reason", "recommendation"), [
    ("template_approved.json", "approved", "", ""),
    ("template_rejected.json", "rejected", "The variable {{1}} is at the end of the body.",
     "Add text after the last variable."),
    ("template_paused.json", "paused", "FIRST_PAUSE: Paused for 3 hours", ""),
])
def test_template_status_updates_apply_to_the_template(client, meta, submitted_template, fixture, status, reason,
                                                       recommendation):
    deliver(client, meta, fixture)
    submitted_template.refresh_from_db()
    assert submitted_template.status == status
    assert reason in submitted_template.rejection_reason
    assert submitted_template.provider_recommendation == recommendation
    audit = AuditLog.objects.get(action="template.provider_update")
    assert (audit.actor_label, audit.before["status"], audit.after["status"]) == ("meta webhook", "pending", status)


def test_template_quality_update_changes_quality_only(client, meta, submitted_template):
    deliver(client, meta, "template_quality.json")
    submitted_template.refresh_from_db()
    assert (submitted_template.status, submitted_template.quality) == ("pending", "yellow")


def test_template_update_reaches_a_template_of_another_number_in_the_same_account(client, meta):
    other = make_meta(name="Meta second", phone_number_id="109900998877665")
    template = MessageTemplate.objects.create(provider=other, name="order_ready", language="en_US",
                                              status="pending")
    deliver(client, meta, "template_approved.json")
    template.refresh_from_db()
    assert template.status == "approved"


def test_fields_we_do_not_act_on_are_kept_as_notes(client, meta):
    event = deliver(client, meta, "account_update.json")
    assert event.status == "processed" and "account_update" in event.notes


# --- routing -------------------------------------------------------------------------------------

def test_one_post_for_several_numbers_is_routed_by_phone_number_id(client, meta):
    second = make_meta(name="Meta second", phone_number_id="109900998877665")
    event = deliver(client, meta, "batch_three_numbers.json")
    assert event.status == "processed" and event.event_count == 4
    assert set(Message.objects.filter(provider=meta).values_list("text", flat=True)) == {"first", "second"}
    assert list(Message.objects.filter(provider=second).values_list("text", flat=True)) == ["to the other number"]
    # The number nobody has is kept and flagged, never dropped...
    assert event.unrouted_to == "109900000000999"
    assert not Message.objects.filter(text="to a number nobody has").exists()
    # ...and applied once a provider with that number is added.
    third = make_meta(name="Meta third", phone_number_id="109900000000999")
    event = webhook_event_process(event.pk)
    assert event.unrouted_to == ""
    assert Message.objects.get(text="to a number nobody has").provider == third
    assert Message.objects.count() == 4


def test_verification_challenge_and_signature_rules(client, meta):
    path = webhook_path(meta)
    ok = client.get(path, {"hub.mode": "subscribe", "hub.verify_token": "meta-verify", "hub.challenge": "1158201444"})
    assert (ok.status_code, ok.content) == (200, b"1158201444")
    assert client.get(path, {"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"}
                      ).status_code == 403


def test_meta_verification_challenge(client):
    provider = provider_create(kind="meta", name="Meta verify", options={
        "phone_number_id": "1", "waba_id": "2", "access_token": "t", "app_secret": "s", "verify_token": "vt-123"})
    url = f"/webhooks/meta/{provider.public_id}/"
    ok = client.get(url, {"hub.mode": "subscribe", "hub.verify_token": "vt-123", "hub.challenge": "1158201444"})
    assert (ok.status_code, ok.content) == (200, b"1158201444")
    wrong = client.get(url, {"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"})
    assert wrong.status_code == 403 and "verify_token" in json_body(wrong)["error"]
    assert client.get(url, {"hub.mode": "unsubscribe", "hub.verify_token": "vt-123"}).status_code == 400


def test_updates_are_never_routed_to_a_provider_behind_another_app_secret(client, meta):
    """Whoever holds one tenant's app secret must not write into another tenant's number."""
    other_tenant = make_meta(name="Other tenant", phone_number_id="109900998877665", app_secret="their-own-secret")
    event = deliver(client, meta, "batch_three_numbers.json")
    assert not Message.objects.filter(provider=other_tenant).exists()
    assert "109900998877665" in event.unrouted_to.split()


def test_a_post_with_1000_updates_across_entries_and_changes_is_processed_whole(client, meta):
    def change(entry_index: int) -> dict:
        messages = [{"from": f"5511955{entry_index:02d}{i:04d}", "id": f"wamid.BULK-{entry_index}-{i}",
                     "timestamp": "1793000000", "type": "text", "text": {"body": f"bulk {entry_index}/{i}"}}
                    for i in range(125)]
        statuses = [{"id": f"wamid.SENT-{entry_index}-{i}", "status": "delivered", "timestamp": "1793000100",
                     "recipient_id": "5511900000001"} for i in range(125)]
        return {"field": "messages", "value": {
            "messaging_product": "whatsapp", "metadata": {"phone_number_id": meta.external_id},
            "contacts": [{"profile": {"name": "Bulk"}, "wa_id": m["from"]} for m in messages],
            "messages": messages, "statuses": statuses}}

    body = json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": META_WABA_ID, "changes": [change(e * 2), change(e * 2 + 1)]}
                                 for e in range(2)]}).encode()
    assert len(body) < 3 * 1024 * 1024
    response = post_meta(client, meta, body)
    assert response.status_code == 200
    event = webhook_event_process(json_body(response)["event"])
    assert (event.status, event.event_count) == ("processed", 1000)
    assert Message.objects.count() == 500 and Contact.objects.count() == 500
    assert MessageStatusEvent.objects.filter(message=None).count() == 500  # kept until their messages appear


def test_api_shows_a_message_with_its_media(client, meta, api_client):
    deliver(client, meta, "document.json")
    message = Message.objects.get()
    body = api_client.get(f"/api/v1/messages/{message.pk}/").json()
    assert body["media"][0]["filename"] == "invoice-2291.pdf" and body["media"][0]["state"] == "pending"
    assert body["content"] == {}


def test_overlong_profile_name_is_cut_not_refused(client, meta):
    body = fixture_bytes("meta", "text.json").replace(b'"Beatriz Lima"', b'"' + b"B" * 400 + b'"')
    response = post_meta(client, meta, body)
    assert webhook_event_process(json_body(response)["event"]).status == "processed"
    assert len(Contact.objects.get().profile_name) == 255
