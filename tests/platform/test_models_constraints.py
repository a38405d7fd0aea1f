"""The invariants the database itself enforces."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from analytics.models import HourlyCount
from contacts.models import Contact, ContactIdentity
from templates_app.models import MessageTemplate
from whatsapp.models import Conversation, Message, Session

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(sandbox_provider):
    contact = Contact.objects.create(profile_name="Ana")
    return Conversation.objects.create(provider=sandbox_provider, contact=contact)


def _message(conversation, provider_message_id):
    return Message.objects.create(provider=conversation.provider, conversation=conversation, direction="inbound",
                                  status="received", provider_message_id=provider_message_id)


def test_duplicate_provider_message_id_is_refused(conversation):
    _message(conversation, "wamid.1")
    with pytest.raises(IntegrityError), transaction.atomic():
        _message(conversation, "wamid.1")


def test_messages_without_provider_id_do_not_collide(conversation):
    _message(conversation, None)
    _message(conversation, None)
    assert Message.objects.filter(provider_message_id__isnull=True).count() == 2


def test_same_provider_message_id_on_two_providers_is_allowed(conversation, db):
    from whatsapp.services.providers import provider_create

    other = provider_create(kind="sandbox", name="Other sandbox", options={})
    other_conversation = Conversation.objects.create(provider=other, contact=conversation.contact)
    _message(conversation, "sbx-1")
    _message(other_conversation, "sbx-1")
    assert Message.objects.filter(provider_message_id="sbx-1").count() == 2


def test_only_one_open_session_per_conversation(conversation):
    now = timezone.now()
    Session.objects.create(conversation=conversation, opened_at=now, last_inbound_at=now,
                           expires_at=now + timedelta(hours=24))
    with pytest.raises(IntegrityError), transaction.atomic():
        Session.objects.create(conversation=conversation, opened_at=now, last_inbound_at=now,
                               expires_at=now + timedelta(hours=24))
    Session.objects.create(conversation=conversation, opened_at=now, last_inbound_at=now, expires_at=now,
                           state="closed")


def test_identity_unique_per_kind_value_scope(db):
    first, second = Contact.objects.create(), Contact.objects.create()
    ContactIdentity.objects.create(contact=first, kind="bsuid", value="US.1", scope="waba-1")
    ContactIdentity.objects.create(contact=second, kind="bsuid", value="US.1", scope="waba-2")
    with pytest.raises(IntegrityError), transaction.atomic():
        ContactIdentity.objects.create(contact=second, kind="bsuid", value="US.1", scope="waba-1")


def test_template_unique_per_provider_name_language_version(sandbox_provider):
    MessageTemplate.objects.create(provider=sandbox_provider, name="order_update", language="en_US", version=1)
    MessageTemplate.objects.create(provider=sandbox_provider, name="order_update", language="en_US", version=2)
    with pytest.raises(IntegrityError), transaction.atomic():
        MessageTemplate.objects.create(provider=sandbox_provider, name="order_update", language="en_US", version=2)


def test_hourly_counts_unique_per_provider_hour_and_metric_even_without_provider(sandbox_provider):
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    for provider in (sandbox_provider, None):
        HourlyCount.objects.create(provider=provider, hour=hour, metric="opt_outs", count=1)
        with pytest.raises(IntegrityError), transaction.atomic():
            HourlyCount.objects.create(provider=provider, hour=hour, metric="opt_outs", count=1)
