import os

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from contacts.models import Contact
from whatsapp.models import Provider
from whatsapp.providers import provider_for
from whatsapp.providers.base import WebhookRequest
from whatsapp.services.outbound import message_send_text
from whatsapp.services.providers import provider_create, provider_webhook_url
from whatsapp.services.webhooks import webhook_event_process, webhook_event_record

DEMO_PROVIDER = "Sandbox demo"
DEMO_CHATS = [
    ("+15551230001", "Ana Souza", ["Hi! Is my order #1042 on its way?", "Thanks, and can I change the address?"]),
    ("+15551230002", "Ben Okafor", ["Hello, I'd like to book a table for Friday."]),
    ("+4915112345678", "Clara Weiß", ["Guten Tag, haben Sie noch Termine frei?"]),
]
DEMO_REPLIES = {"+15551230001": "Yes, it ships today. Send the new address here and we'll update it."}


class Command(BaseCommand):
    help = "Load demo data: an admin user, a sandbox provider, contacts, conversations and messages."

    def handle(self, *args, **opts):
        username = os.environ.get("DEMO_ADMIN_USERNAME", "admin")
        password = os.environ.get("DEMO_ADMIN_PASSWORD", "whatsapp-demo")
        self._admin(username, password)
        provider = Provider.objects.filter(name=DEMO_PROVIDER).first()
        if provider is None:
            provider = provider_create(kind="sandbox", name=DEMO_PROVIDER, options={})
            self._conversations(provider)
        self.stdout.write(f"Demo login: {username} / {password}")
        self.stdout.write(f"Sandbox webhook: {provider_webhook_url(provider)}")

    def _admin(self, username: str, password: str) -> None:
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is None:
            user = user_model.objects.create_superuser(username, f"{username}@example.com", password)
            user.groups.add(*Group.objects.filter(name="Admin"))

    def _conversations(self, provider: Provider) -> None:
        # Inbound messages go through the real inbox (signed, stored, parsed, applied), synchronously.
        for phone, name, texts in DEMO_CHATS:
            for text in texts:
                body, signed = provider_for(provider).simulated_inbound(from_phone=phone, name=name, text=text)
                headers = {key.lower(): value for key, value in signed.items()}
                request = WebhookRequest(method="POST", public_url=provider_webhook_url(provider), body=body,
                                         headers=headers, content_type="application/json")
                with transaction.atomic():
                    event, _ = webhook_event_record(kind=provider.kind, provider=provider, request=request,
                                                    remote_addr=None, signature_valid=True)
                webhook_event_process(event.pk)
        # Replies are queued: the worker sends them and the simulated phone reports sent, delivered, read.
        for phone, reply in DEMO_REPLIES.items():
            contact = Contact.objects.get(identities__kind="phone", identities__value=phone)
            message_send_text(provider=provider, contact=contact, text=reply)
