"""
A real browser (headless chromium) under the content security policy: a superuser opens every admin page
(the index, each app, each model's list, add and change pages, and the custom pages), Swagger UI at
/api/docs/ and the browsable API, and the browser's console must show no policy violation and no error.
An inline script added to a page is refused, which shows that the policy the browser got is enforced.
A screenshot of /api/docs/ goes to /tmp/shots/.
"""

import io
import logging
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import RequestFactory
from django.urls import URLPattern, URLResolver, reverse
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from ai.models import AiRequest, ConversationSummary, IntentCategory, ProviderAiSettings
from analytics.models import HourlyCount, TemplateDailyCount
from assistant.models import (
    AssistantPolicy,
    AssistantProfile,
    ContentRequest,
    Goal,
    Note,
    Project,
    Reminder,
    Task,
    Turn,
)
from campaigns.models import Campaign, CampaignRecipient, MarketingSuppression
from campaigns.services.audiences import audience_import
from campaigns.services.launch import campaign_launch
from contacts.models import ConsentEvent, ConsentKeyword, Contact, DataExport, UserProfile, VerificationChallenge
from core.api_tokens import api_token_create
from monitoring.models import AlertIncident, AlertKind, AlertRule
from tests.ai.test_browser_ai import ledger, stored_ai
from tests.conftest import admin_log_in, default_group, wait_until
from tests.whatsapp.inbox.test_sandbox_phone_services import png_bytes, wav_bytes
from whatsapp.models import (
    ArchiveBucket,
    ArchiveBundle,
    Conversation,
    Label,
    Media,
    Message,
    MessageStatusEvent,
    Provider,
    SavedReply,
    SendAttempt,
    StorageDeletion,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")
DEMO_ADMIN, DEMO_PASSWORD = "admin", "whatsapp-demo"
ERROR_TITLES = ("Server Error", "Page not found", "403 Forbidden", "Bad Request")

# The admin's own URLs that are not pages to look at: they act on a POST, answer JSON or a file, redirect,
# or are fragments that their page fetches (and so are loaded when that page is opened). Every other
# named admin URL must be opened below: a new custom page cannot be left out by accident.
NOT_PAGES = {
    "logout", "autocomplete", "jsi18n", "view_on_site", "password_change_done", "app_list",
    "whatsapp_conversation_send", "whatsapp_conversation_media", "whatsapp_conversation_assign",
    "whatsapp_conversation_labels", "whatsapp_conversation_send_fields", "whatsapp_conversation_transcript",
    "whatsapp_conversation_status",
    "whatsapp_provider_test_connection", "whatsapp_provider_pause", "whatsapp_provider_resume",
    "whatsapp_provider_reset_circuit", "whatsapp_provider_sandbox_phone_screen",
    "whatsapp_provider_sandbox_phone_send", "whatsapp_provider_sandbox_phone_tap",
    "contacts_dataexport_download", "contacts_unmappedcontact_map_several", "contacts_unmappedcontact_user_lookup",
    "templates_app_messagetemplate_sync", "templates_app_messagetemplate_submit_for_review",
    "templates_app_messagetemplate_withdraw", "templates_app_messagetemplate_approve",
    "templates_app_messagetemplate_resubmit",
    "ai_airequest_suggest", "ai_airequest_summarise", "ai_airequest_panel", "assistant_conversation_resume",
    "campaigns_campaign_launch", "campaigns_campaign_pause", "campaigns_campaign_resume", "campaigns_campaign_cancel",
    "campaigns_campaign_send_winner", "campaigns_campaign_progress", "campaigns_campaign_csv",
}
MODEL_PAGE_SUFFIXES = ("_changelist", "_add", "_change", "_delete", "_history")
# Browsers ask for /favicon.ico by themselves; no page links to it, and its 404 is no page's error.
FAVICON_MISSING = "/favicon.ico - Failed to load resource"


class Collected(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def csp_log() -> list[logging.LogRecord]:
    """What the report endpoint logs, collected on its own logger: pytest's capture sits on the root logger,
    which loses it when Celery sets Django up again (django-celery-beat's task form makes it do so)."""
    handler, logger = Collected(), logging.getLogger("security.csp")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


def named_admin_urls(patterns) -> set[str]:
    names = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            names |= named_admin_urls(pattern.url_patterns)
        elif isinstance(pattern, URLPattern) and pattern.name:
            names.add(pattern.name)
    return names


def custom_pages(provider: Provider, contact: Contact) -> dict[str, str]:
    """The admin's own pages beyond Django's model pages, by URL name."""
    template = provider.templates.order_by("pk").first()
    number = contact.identities.get(kind="phone").value
    return {
        "index": reverse("admin:index"),
        "login": reverse("admin:login"),
        "password_change": reverse("admin:password_change"),
        "whatsapp_provider_simulate_inbound": reverse("admin:whatsapp_provider_simulate_inbound", args=[provider.pk]),
        "whatsapp_provider_test_send": reverse("admin:whatsapp_provider_test_send", args=[provider.pk]),
        "whatsapp_provider_sandbox_phone_start": reverse("admin:whatsapp_provider_sandbox_phone_start",
                                                         args=[provider.pk]),
        "whatsapp_provider_sandbox_phone": reverse("admin:whatsapp_provider_sandbox_phone",
                                                   args=[provider.pk, number]),
        "contacts_unmappedcontact_map": reverse("admin:contacts_unmappedcontact_map", args=[contact.pk]),
        "templates_app_messagetemplate_reject": reverse("admin:templates_app_messagetemplate_reject",
                                                        args=[template.pk]),
        "ai_aicall_usage": reverse("admin:ai_aicall_usage"),
        "ai_setup_guide": reverse("admin:ai_setup_guide"),
        # The signed-in user's own two-factor pages (beside the admin site, in its frame).
        "two_factor": reverse("accounts:two_factor"),
        "two_factor_enrol": reverse("accounts:two_factor_enrol"),
    }


def model_pages(user) -> list[str]:
    """Each app's index, and each registered model's list, add page (where allowed) and first object."""
    request = RequestFactory().get("/admin/")
    request.user = user
    pages, app_labels, empty = [], [], []
    for model, model_admin in sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label):
        info = model._meta.app_label, model._meta.model_name
        if info[0] not in app_labels:
            app_labels.append(info[0])
            pages.append(reverse("admin:app_list", args=[info[0]]))
        pages.append(reverse("admin:{}_{}_changelist".format(*info)))
        if model_admin.has_add_permission(request):
            pages.append(reverse("admin:{}_{}_add".format(*info)))
        first = model_admin.get_queryset(request).order_by("pk").first()
        if first is None:
            empty.append(model._meta.label)
        else:
            pages.append(reverse("admin:{}_{}_change".format(*info), args=[first.pk]))
    assert not empty, f"no row to open: add one of each to demo_data: {empty}"
    return pages


def console_problems(browser, page: str) -> list[str]:
    """Console messages of the page that are errors or policy violations (reading them empties the log)."""
    return [f"{page}: {entry['level']} {entry['message']}" for entry in browser.get_log("browser")
            if (entry["level"] == "SEVERE" or "Content Security Policy" in entry["message"]
                or "Refused to" in entry["message"]) and FAVICON_MISSING not in entry["message"]]


def open_page(browser, base_url: str, page: str) -> list[str]:
    browser.get(base_url + page)
    title = browser.title
    problems = [f"{page}: answered {title!r}"] if any(error in title for error in ERROR_TITLES) else []
    return problems + console_problems(browser, page)


def demo_data(live_server, settings):
    """seed_demo's data, and a row of each model it leaves empty, so that every model has a change page."""
    settings.PUBLIC_BASE_URL = settings.INTERNAL_BASE_URL = live_server.url
    for group in ("Admin", "Template reviewer", "Operator"):  # as the migration made them (a flush empties them)
        default_group(group)
    call_command("seed_demo", stdout=io.StringIO())
    provider = Provider.objects.get(name="Sandbox demo")
    conversation = Conversation.objects.filter(provider=provider).order_by("pk").first()
    user = get_user_model().objects.get(username=DEMO_ADMIN)
    messaging_rows(provider, conversation)
    people_rows(provider, conversation, user)
    ai_rows(provider, conversation, user)
    schedule_rows()
    sign_in_rows()
    campaign_rows(provider, user)
    return provider, conversation.contact


def messaging_rows(provider: Provider, conversation: Conversation) -> None:
    """An image and a voice note the pages show inline, a dead letter with its attempt, storage rows."""
    now = timezone.now()
    for kind, mime_type, data in (("image", "image/png", png_bytes()), ("audio", "audio/wav", wav_bytes())):
        message = Message.objects.create(provider=provider, conversation=conversation, direction="inbound",
                                         message_type=kind, status="received", provider_message_id=f"sbx-{kind}")
        Media.objects.create(message=message, state="fetched", mime_type=mime_type, size_bytes=len(data),
                             pending_content=data, archive_status="pending")
    conversation.labels.add(Label.objects.get_or_create(name="vip", defaults={"colour": "#7e22ce"})[0])
    SavedReply.objects.get_or_create(title="Opening hours", defaults={"text": "We are open 9 to 6."})
    dead = Message.objects.create(provider=provider, conversation=conversation, direction="outbound",
                                  status="dead_letter", text="Your order has shipped.", error_code="131026")
    SendAttempt.objects.create(message=dead, number=1, started_at=now, finished_at=now, outcome="dead_letter")
    MessageStatusEvent.objects.create(provider=provider, provider_message_id="sbx-status", status="delivered",
                                      occurred_at=now)
    ArchiveBucket.objects.create(backend="gcs", owner_key="user-1", name="wa-archive-u-demo")
    ArchiveBundle.objects.create(backend="gcs", location="wa-archive-u-demo/whatsapp-messages/b.jsonl.gz",
                                 bucket="wa-archive-u-demo", window_start=now, members=3, size_bytes=900,
                                 body_bytes=4000, rewrite_next_at=now, rewrite_error="attempt 1: HTTP 503")
    StorageDeletion.objects.create(backend="gcs", target="object", name="wa-archive-u-demo/a.json",
                                   reason="erasure", next_attempt_at=now)
    HourlyCount.objects.create(provider=provider, hour=now.replace(minute=0, second=0, microsecond=0), metric="read",
                               count=1)
    TemplateDailyCount.objects.create(provider=provider, day=now.replace(hour=0, minute=0, second=0, microsecond=0),
                                      metric="sent", count=1)
    rule = AlertRule.objects.create(name="Error rate", kind=AlertKind.ERROR_RATE, threshold=5,
                                    email_recipients="ops@example.com")
    AlertIncident.objects.create(rule=rule, opened_at=now, figure=7.5, summary="7.5% of 40 sends failed")


def ai_rows(provider: Provider, conversation: Conversation, user) -> None:
    """Insights, suggestions and a summary on the conversation (the AI panel shows them), and the usage ledger."""
    ProviderAiSettings.objects.create(provider=provider)
    # Data migrations add the intents; an earlier test that flushed the database took them away.
    IntentCategory.objects.get_or_create(name="order_status", defaults={"description": "Asks where an order is."})
    message, _ = stored_ai(conversation, user)
    request = AiRequest.objects.create(conversation=conversation, kind="summary", status="done", trigger="manual",
                                       created_by=user, finished_at=timezone.now())
    ConversationSummary.objects.create(conversation=conversation, request=request, first_message=message,
                                       last_message=message, message_count=1, trigger="manual", created_by=user,
                                       text="Ana asks whether order #1042 is on its way.")
    ledger(provider)


def people_rows(provider: Provider, conversation: Conversation, user) -> None:
    """The assistant's and the contacts' rows of the demo admin."""
    now = timezone.now()
    contact = conversation.contact
    api_token_create(user=user, name="CRM")
    # Added by a data migration; an earlier test that flushed the database took them away.
    ConsentKeyword.objects.get_or_create(language="en", keyword="STOP", defaults={
        "action": "opt_out", "confirmation": "You will get no more messages from us."})
    ConsentEvent.objects.create(contact=contact, state="opted_in", previous_state="unknown", source="admin")
    DataExport.objects.create(user=user)
    UserProfile.objects.get_or_create(user=user)
    VerificationChallenge.objects.create(contact=contact, user=user, provider=provider, code_digest="0" * 64,
                                         expires_at=now + timedelta(minutes=10))
    AssistantPolicy.objects.create(provider=provider)
    AssistantProfile.objects.create(user=user)
    project = Project.objects.create(owner=user, name="Website")
    Goal.objects.create(owner=user, title="Answer every customer within an hour")
    Note.objects.create(owner=user, text="Call the printer about the flyers")
    task = Task.objects.create(owner=user, title="Review the spring menu", project=project)
    Reminder.objects.create(owner=user, task=task, text="Review the spring menu", due_at=now + timedelta(days=1))
    ContentRequest.objects.create(owner=user, brief="A post about the spring opening hours")
    Turn.objects.create(message=conversation.messages.filter(direction="inbound").earliest("pk"), owner=user)


def campaign_rows(provider: Provider, user) -> None:
    """The demo campaign launched (its page then shows its progress and results), a list and a suppression."""
    campaign = Campaign.objects.get(name="Shipping update")
    campaign_launch(campaign, actor=user)
    audience_import(name="Spring list", provider=provider, actor=user,
                    data=b"phone,name,opt_in,coupon\n+15551230001,Ana,web form,SPRING-1\n")
    MarketingSuppression.objects.create(contact=CampaignRecipient.objects.filter(campaign=campaign).first().contact,
                                        provider=provider, until=timezone.now() + timedelta(days=2),
                                        error_code="marketing_cap")


def sign_in_rows() -> None:
    """A lockout record and an authenticator app, where the sign-in security apps are installed. They belong
    to another user, from another address, so that the demo admin signs in as usual."""
    visitor = {"user_agent": "Firefox", "ip_address": "203.0.113.7", "username": "demo-author",
               "http_accept": "text/html", "path_info": "/admin/login/"}
    if apps.is_installed("axes"):
        from axes.models import AccessAttempt, AccessFailureLog

        AccessAttempt.objects.create(**visitor, get_data="", post_data="", failures_since_start=1)
        AccessFailureLog.objects.create(**visitor)
    if apps.is_installed("django_otp.plugins.otp_totp"):
        from django_otp.plugins.otp_totp.models import TOTPDevice

        TOTPDevice.objects.create(user=get_user_model().objects.get(username="demo-author"), name="Phone")


def schedule_rows() -> None:
    every_minute = IntervalSchedule.objects.create(every=60, period="seconds")
    PeriodicTask.objects.create(name="Requeue due messages", task="whatsapp.tasks.requeue_due_messages_task",
                                interval=every_minute)
    CrontabSchedule.objects.create(minute="0", hour="6")
    ClockedSchedule.objects.create(clocked_time=timezone.now() + timedelta(days=1))
    SolarSchedule.objects.create(event="sunrise", latitude=52.52, longitude=13.40)


def test_every_page_runs_under_the_policy_without_a_console_error(browser, live_server, settings, csp_log):
    started = time.monotonic()
    browser.implicitly_wait(0)  # pages are waited for explicitly; an absent element must not cost seconds
    wait = WebDriverWait(browser, 15)
    provider, contact = demo_data(live_server, settings)
    user = get_user_model().objects.get(username=DEMO_ADMIN)
    pages = custom_pages(provider, contact)
    unlisted = {name for name in named_admin_urls(admin.site.get_urls())
                if not name.endswith(MODEL_PAGE_SUFFIXES)} - NOT_PAGES - set(pages)
    assert not unlisted, f"admin URLs neither opened here nor listed in NOT_PAGES: {sorted(unlisted)}"

    admin_log_in(browser, live_server, DEMO_ADMIN, DEMO_PASSWORD)
    problems = console_problems(browser, "login")
    pages_opened = [*pages.values(), *model_pages(user)]
    for page in pages_opened:
        problems += open_page(browser, live_server.url, page)

    # Stored media show under the policy: the sandbox phone's image is drawn, its voice note loads.
    browser.get(live_server.url + pages["whatsapp_provider_sandbox_phone"])
    wait.until(lambda driver: driver.execute_script(
        "const image = document.querySelector('img.sbx-image'), audio = document.querySelector('audio.sbx-audio');"
        "return image && image.complete && image.naturalWidth > 0 && audio && audio.readyState >= 1;"))
    problems += console_problems(browser, pages["whatsapp_provider_sandbox_phone"])

    browser.get(live_server.url + "/api/docs/")
    # Swagger UI draws the operations tag by tag: wait until more than the first few are there.
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#swagger-ui .opblock")))
    # Swagger UI draws the operations near the viewport only: scroll down the page and count them all.
    drawn: set[str] = set()
    for _ in range(40):
        # Read in one script: Swagger UI replaces elements while the page scrolls (no stale references).
        drawn |= set(browser.execute_script(
            "return Array.from(document.querySelectorAll('#swagger-ui .opblock'), element => element.id);"))
        if browser.execute_script("window.scrollBy(0, window.innerHeight * 0.8);"
                                  "return window.innerHeight + window.scrollY >= document.body.scrollHeight;"):
            break
    assert len(drawn) > 10, drawn
    browser.execute_script("window.scrollTo(0, 0)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "api_docs.png"))
    problems += console_problems(browser, "/api/docs/")
    browser.get(live_server.url + "/api/v1/")
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".response-info")))
    problems += console_problems(browser, "/api/v1/")
    assert not problems, "\n".join(problems)

    # The policy the pages got is enforced: an inline script added to the page does not run.
    received = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/admin/').then(answer => done(answer.headers.get('Content-Security-Policy')));")
    script_sources = next(part.split()[1:] for part in received.split(";") if part.split()[0] == "script-src")
    assert any(source.startswith("'nonce-") for source in script_sources) and "'unsafe-inline'" not in script_sources
    browser.execute_script("const script = document.createElement('script');"
                           "script.textContent = 'window.inlineScriptRan = true';"
                           "document.body.appendChild(script);")
    assert browser.execute_script("return window.inlineScriptRan === undefined")
    refused = browser.get_log("browser")
    assert any("Content Security Policy" in entry["message"] for entry in refused), refused
    # ... and the browser reported it to /csp-report/, which logged it.
    wait_until(lambda: [record for record in csp_log if record.blocked_uri == "inline"
                        and record.document_uri.endswith("/api/v1/")], 10, message="the violation report")
    print(f"{len(pages_opened)} pages checked in {time.monotonic() - started:.1f}s")
