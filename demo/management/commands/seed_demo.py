import os

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from campaigns.services.editing import campaign_write, segment_write
from contacts.models import Contact
from contacts.services.mapping import contact_map_to_user
from templates_app.models import MessageTemplate
from templates_app.services.provider_submission import template_submit
from templates_app.services.workflow import template_approve, template_create, template_submit_for_review
from whatsapp.models import Conversation, Label, Provider, SavedReply, Team
from whatsapp.providers import backend_for
from whatsapp.providers.base import WebhookRequest
from whatsapp.services.lifecycle import conversation_set_status
from whatsapp.services.outbound import message_send_text
from whatsapp.services.providers import provider_create, provider_webhook_url
from whatsapp.services.webhooks import webhook_event_process, webhook_event_record

DEMO_PROVIDER = "Sandbox demo"
DEMO_SALES_PROVIDER = "Sandbox sales"
DEMO_OPERATOR = "support"
DEMO_CHATS = [
    ("+15551230001", "Ana Souza", ["Hi! Is my order #1042 on its way?", "Thanks, and can I change the address?"]),
    ("+15551230002", "Ben Okafor", ["Hello, I'd like to book a table for Friday."]),
    ("+4915112345678", "Clara Weiß", ["Guten Tag, haben Sie noch Termine frei?"]),
]
# Written by a demo author: one approved (sendable from a conversation page), one waiting in
# "Templates awaiting review" for the admin to approve.
DEMO_TEMPLATES = [
    ("order_shipped", "Hi {{1}}, your order {{2}} has shipped. Reply here with any question.",
     {"body": {"1": "Ana", "2": "#1042"}}, True),
    ("table_reminder", "Hello {{1}}, a reminder of your table for {{2}} tonight. See you soon!",
     {"body": {"1": "Ben", "2": "four"}}, False),
]
# The admin's own number: mapped to the admin user, so the assistant (with AI configured) turns what is
# written from it, in the sandbox phone, into notes, tasks and content requests.
DEMO_ASSISTANT_PHONE = "+15551230099"
DEMO_REPLIES = {"+15551230001": "Yes, it ships today. Send the new address here and we'll update it."}
# The inbox's shared vocabulary: labels on two conversations, and saved replies for the send box.
DEMO_LABELS = {"orders": ("#1d4ed8", "+15551230001"), "bookings": ("#15803d", "+15551230002"), "vip": ("#7e22ce", "")}
DEMO_SAVED_REPLIES = [
    ("Shipping times", "Orders ship within two working days; you get the tracking link here as soon as it leaves."),
    ("Opening hours", "We are open Monday to Saturday, 9:00 to 18:00."),
]


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
            self._templates(provider, reviewer=get_user_model().objects.get(username=username))
            self._inbox_vocabulary(provider)
            self._assistant_user(provider, get_user_model().objects.get(username=username))
            self._campaign(provider, get_user_model().objects.get(username=username))
            self._teams(provider, get_user_model().objects.get(username=username), password)
        self.stdout.write(f"Demo login: {username} / {password}")
        self.stdout.write(f"Sandbox webhook: {provider_webhook_url(provider)}")

    def _admin(self, username: str, password: str) -> None:
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is None:
            user = user_model.objects.create_superuser(username, f"{username}@example.com", password)
            user.groups.add(*Group.objects.filter(name="Admin"))

    def _assistant_user(self, provider: Provider, user) -> None:
        self._inbound(provider, DEMO_ASSISTANT_PHONE, "Demo user (you)", "Hi, it's me.")
        contact = Contact.objects.get(identities__kind="phone", identities__value=DEMO_ASSISTANT_PHONE)
        contact_map_to_user(contact=contact, user=user, actor=None, notify_on_ready=True)

    def _inbound(self, provider: Provider, phone: str, name: str, text: str) -> None:
        body, signed, *_ = backend_for(provider).simulated_inbound(from_phone=phone, name=name, text=text)
        headers = {key.lower(): value for key, value in signed.items()}
        request = WebhookRequest(method="POST", public_url=provider_webhook_url(provider), body=body,
                                 headers=headers, content_type="application/json")
        with transaction.atomic():
            event, _ = webhook_event_record(kind=provider.kind, provider=provider, request=request,
                                            remote_addr=None, signature_valid=True)
        webhook_event_process(event.pk)

    def _conversations(self, provider: Provider) -> None:
        # Inbound messages go through the real inbox (signed, stored, parsed, applied), synchronously.
        for phone, name, texts in DEMO_CHATS:
            for text in texts:
                self._inbound(provider, phone, name, text)
        # Replies are queued: the worker sends them and the simulated phone reports sent, delivered, read.
        for phone, reply in DEMO_REPLIES.items():
            contact = Contact.objects.get(identities__kind="phone", identities__value=phone)
            message_send_text(provider=provider, contact=contact, text=reply)

    def _inbox_vocabulary(self, provider: Provider) -> None:
        for name, (colour, phone) in DEMO_LABELS.items():
            label = Label.objects.get_or_create(name=name, defaults={"colour": colour})[0]
            if phone:
                Conversation.objects.get(provider=provider, contact__identities__value=phone).labels.add(label)
        for title, text in DEMO_SAVED_REPLIES:
            SavedReply.objects.get_or_create(title=title, defaults={"text": text})

    def _teams(self, provider: Provider, admin, password: str) -> None:
        """Two teams: Support answers the demo number (and asks for a rating on resolving), Sales a second
        sandbox number. The operator "support" (same password) and the template author see Support's number only. Ben's
        booking is resolved and rated 5 from the sandbox phone."""
        sales_number = provider_create(kind="sandbox", name=DEMO_SALES_PROVIDER, options={})
        self._inbound(sales_number, "+15551230003", "Dana Ruiz", "Hi, do you offer group discounts?")
        operator = get_user_model().objects.create_user(DEMO_OPERATOR, f"{DEMO_OPERATOR}@example.com", password,
                                                        is_staff=True)
        operator.groups.add(*Group.objects.filter(name="Operator"))
        support = Team.objects.create(name="Support", description="Answers the demo number", csat_survey=True)
        support.members.add(admin, operator, *get_user_model().objects.filter(username="demo-author"))
        support.providers.add(provider)
        sales = Team.objects.create(name="Sales", description="Answers the sales number")
        sales.members.add(admin)
        sales.providers.add(sales_number)
        booking = Conversation.objects.get(provider=provider, contact__identities__value="+15551230002")
        conversation_set_status(booking, Conversation.Status.RESOLVED, actor=admin)
        self._inbound(provider, "+15551230002", "Ben Okafor", "5")

    def _campaign(self, provider: Provider, admin) -> None:
        """A draft campaign to everyone who wrote to the demo number, with the approved template: launch it from
        its page and watch the sandbox phone get it."""
        segment = segment_write(None, {"name": "Everyone who wrote", "filters": {"providers": [provider.pk]},
                                       "description": "Contacts with a conversation on the demo number"}, actor=admin)
        template = MessageTemplate.objects.get(provider=provider, name="order_shipped")
        campaign_write(None, {"name": "Shipping update", "provider": provider, "segment": segment,
                              "conversion_keyword": "THANKS"},
                       [{"name": "A", "split_percent": 100, "template": template,
                         "variables": {"body": {"1": "{contact.first_name|there}", "2": "#SPRING"}}}], actor=admin)

    def _templates(self, provider: Provider, *, reviewer) -> None:
        author, created = get_user_model().objects.get_or_create(username="demo-author",
                                                                 defaults={"email": "demo-author@example.com"})
        if created:
            author.set_unusable_password()
            author.save(update_fields=["password"])
        author.groups.add(*Group.objects.filter(name="Template reviewer"))
        for name, body, examples, approve in DEMO_TEMPLATES:
            template = template_create(provider=provider, actor=author, name=name, language="en",
                                       category="utility", parameter_format="positional",
                                       components=[{"type": "BODY", "text": body}], examples=examples)
            template_submit_for_review(template, actor=author)
            if approve:
                template_approve(template, reviewer=reviewer)
                # The sandbox approves at once; submitted here so the demo does not wait for the worker.
                template_submit(template.pk)
