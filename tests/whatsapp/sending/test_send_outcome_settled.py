"""A send whose outcome was unknown, later settled by the provider's status report, no longer carries the error."""

import json

import pytest
from django.utils import timezone

from contacts.services.identities import contact_resolve
from tests.conftest import event_id
from tests.fakes import FakeServer
from tests.signing import META_PHONE_NUMBER_ID, META_WABA_ID, make_meta, post_meta
from whatsapp.models import Message
from whatsapp.providers.events import Identity, IdentityKind, MessageStatus
from whatsapp.services.delivery import OUTCOME_UNKNOWN, message_deliver
from whatsapp.services.inbound import conversation_get_or_create
from whatsapp.services.outbound import message_send_text
from whatsapp.services.sessions import session_open_or_extend
from whatsapp.services.webhooks import webhook_event_process

pytestmark = pytest.mark.django_db


def _status_report(message: Message, status: str, provider_message_id: str) -> bytes:
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": META_WABA_ID, "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": META_PHONE_NUMBER_ID},
            # Meta echoes our reference (biz_opaque_callback_data): it names the message whose id we never recorded.
            "statuses": [{"id": provider_message_id, "status": status, "recipient_id": "16505551234",
                          "timestamp": str(int(timezone.now().timestamp())),
                          "biz_opaque_callback_data": str(message.pk)}]}}]}]}).encode()


@pytest.mark.parametrize("reported", ["sent", "delivered", "read"])
def test_a_status_report_settling_an_unknown_send_clears_its_error(client, settings, reported):
    with FakeServer() as graph:
        settings.META_GRAPH_BASE_URL = graph.url
        provider = make_meta()
        contact = contact_resolve(provider=provider, identities=[Identity(IdentityKind.PHONE, "+16505551234")],
                                  profile_name="Ana")
        session_open_or_extend(conversation=conversation_get_or_create(provider=provider, contact=contact),
                               inbound_at=timezone.now())
        message = message_send_text(provider=provider, contact=contact, text="Exactly once")
        # The worker died during the provider call an hour ago: the outcome is unknown.
        an_hour_ago = timezone.now() - timezone.timedelta(hours=1)
        Message.objects.filter(pk=message.pk).update(status=MessageStatus.SENDING, attempts=1, updated_at=an_hour_ago)
        message = message_deliver(message.pk)
        assert (message.status, message.error_code) == ("dead_letter", OUTCOME_UNKNOWN)
        assert message.error_detail and graph.requests == []

        webhook_event_process(event_id(post_meta(client, provider, _status_report(message, reported, "wamid.x1"))))
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (reported, "wamid.x1")
    assert (message.error_code, message.error_title, message.error_detail) == ("", "", "")
