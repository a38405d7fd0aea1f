"""
The contacts admin as its users meet it: the unmapped-contacts queue (rows, suggestions, a constant
number of queries per page), its actions and the map page, the contact page's actions (consent, merge,
unignore), the consent and verification pages, and the phone number on a user's page. Each action is
checked by the rows it leaves, the audit entry and what the page says.
"""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from contacts.models import ConsentEvent, Contact, ContactUserMapping, UserProfile, VerificationChallenge
from contacts.services.identities import contact_resolve
from contacts.services.mapping import contact_map_to_user, user_phone_set
from core.models import AuditLog
from tests.conftest import audit_actions, page
from whatsapp.models import Conversation, Message
from whatsapp.providers.events import Identity, IdentityKind
from whatsapp.services.providers import provider_create
from whatsapp.services.sessions import session_open_or_extend

pytestmark = pytest.mark.django_db

User = get_user_model()
QUEUE = reverse("admin:contacts_unmappedcontact_changelist")
CONTACTS = reverse("admin:contacts_contact_changelist")


def map_url(contact) -> str:
    return reverse("admin:contacts_unmappedcontact_map", args=[contact.pk])


def make_contact(provider, *, phone: str = "", name: str = "", email: str = "", bsuid: str = "",
                 texts: tuple[str, ...] = ("hello",)) -> Contact:
    """A contact as an inbound message makes it (contact_resolve, so the auto rules run), with its messages."""
    identities = [Identity(kind, value) for kind, value in ((IdentityKind.PHONE, phone), (IdentityKind.EMAIL, email),
                                                            (IdentityKind.BUSINESS_SCOPED_ID, bsuid)) if value]
    contact = contact_resolve(provider=provider, identities=identities, profile_name=name,
                              seen_at=timezone.now())
    conversation, _ = Conversation.objects.get_or_create(provider=provider, contact=contact)
    for text in texts:
        Message.objects.create(provider=provider, conversation=conversation, direction="inbound",
                               status="received", text=text)
    return contact


def make_user(username: str, *, first: str = "", last: str = "", email: str = "", phone: str = ""):
    user = User.objects.create_user(username, email, first_name=first, last_name=last)
    if phone:
        user_phone_set(user, phone)
    return user


def queue_names(client, **params) -> list[str]:
    """The contact names in the queue's rows, top to bottom."""
    html = page(client.get(QUEUE, params))
    return re.findall(r'<th class="field-name"><a href="[^"]+">([^<]+)</a>', html) or \
        re.findall(r'<td class="field-name"><a href="[^"]+">([^<]+)</a>', html)


# --- the queue ---------------------------------------------------------------------------------------

def test_queue_lists_unmapped_contacts_newest_first_with_counts_preview_and_provider(admin_client_logged,
                                                                                     sandbox_provider):
    older = make_contact(sandbox_provider, phone="+15551230001", name="Ana Older", texts=("one", "two"))
    newer = make_contact(sandbox_provider, phone="+15551230002", name="Bruno Newer",
                         texts=("first", "Is my order #1042 on its way? " + "x" * 80))
    mapped = make_contact(sandbox_provider, phone="+15551230003", name="Carla Mapped")
    contact_map_to_user(contact=mapped, user=make_user("carla"), actor=None)
    ignored = make_contact(sandbox_provider, phone="+15551230004", name="Dario Ignored")
    Contact.objects.filter(pk=ignored.pk).update(is_ignored=True)

    response = admin_client_logged.get(QUEUE)
    assert response.status_code == 200
    assert queue_names(admin_client_logged) == ["Bruno Newer", "Ana Older"]
    html = page(response)
    row = html[html.index("Bruno Newer"):html.index("Ana Older")]
    assert "+15551230002" in row and "Sandbox test" in row
    assert '<td class="field-message_total">2</td>' in row
    assert "Is my order #1042 on its way?" in row and "x" * 80 not in row  # truncated
    assert f'href="{map_url(newer)}"' in row
    assert f'href="{map_url(older)}"' in html


def test_queue_search_by_identity_and_filter_by_provider(admin_client_logged, sandbox_provider):
    other = provider_create(kind="sandbox", name="Other sandbox", options={})
    make_contact(sandbox_provider, phone="+15551230001", name="Ana")
    make_contact(other, phone="+15551230002", name="Bruno", bsuid="US.778899")
    assert queue_names(admin_client_logged, q="778899") == ["Bruno"]
    assert queue_names(admin_client_logged, q="Ana") == ["Ana"]
    assert queue_names(admin_client_logged, provider=other.pk) == ["Bruno"]


def test_suggestions_same_phone_same_email_and_similar_name(admin_client_logged, sandbox_provider):
    # Two users match one contact (one by phone, one by email): ambiguous, so not auto-mapped; both suggested.
    by_phone = make_user("phone.user", first="Pedro", last="Phone", phone="+15551239999")
    by_email = make_user("email.user", first="Erin", last="Mail", email="shared@example.com")
    ambiguous = make_contact(sandbox_provider, phone="+15551239999", email="Shared@Example.com", name="Someone")
    by_name = make_user("mgonzales", first="Maria", last="Gonzales")
    named = make_contact(sandbox_provider, phone="+15551230005", name="Maria Gonzalez")
    assert not ContactUserMapping.objects.exists()

    html = page(admin_client_logged.get(QUEUE))
    assert f'href="{map_url(ambiguous)}?user={by_phone.pk}">Pedro Phone &lt;phone.user&gt;</a> <small>(same phone)' \
        in html
    assert f'href="{map_url(ambiguous)}?user={by_email.pk}">Erin Mail &lt;email.user&gt;</a> <small>(same email)' \
        in html
    assert f'href="{map_url(named)}?user={by_name.pk}">Maria Gonzales &lt;mgonzales&gt;</a> <small>(similar name)' \
        in html
    assert "&lt;br&gt;" not in html


def test_queue_runs_the_same_number_of_queries_for_5_and_40_contacts(admin_client_logged, sandbox_provider):
    other = provider_create(kind="sandbox", name="Other sandbox", options={})
    for index in range(4):
        make_user(f"user{index}", first="Maria", last=f"Santos{index}", phone=f"+1555000{index:04d}")

    def fill(start, stop):
        for index in range(start, stop):
            contact = make_contact(sandbox_provider if index % 2 else other, phone=f"+1555123{index:04d}",
                                   name=f"Maria Santos{index % 4}", bsuid=f"US.{index}", texts=("a", "b"))
            if index % 3 == 0:
                make_contact(sandbox_provider, phone=f"+1555123{index:04d}", texts=("on the other number",))
            assert contact.pk

    def measured() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = admin_client_logged.get(QUEUE)
        assert response.status_code == 200
        return len(captured)

    fill(0, 5)
    small = measured()
    fill(5, 40)
    assert len(queue_names(admin_client_logged)) == 40
    large = measured()
    assert small == large, f"{small} queries for 5 contacts, {large} for 40"
    assert large <= 15
    print(f"\nunmapped queue: {small} queries for 5 contacts, {large} for 40")


def test_operators_see_the_queue_and_map_from_it(operator_client, sandbox_provider):
    contact = make_contact(sandbox_provider, phone="+15551230001", name="Ana")
    user = make_user("ana.user", first="Ana", last="User")
    assert queue_names(operator_client) == ["Ana"]
    assert operator_client.get(map_url(contact)).status_code == 200
    response = operator_client.post(map_url(contact), {"user": user.pk})
    assert response.status_code == 302
    mapping = ContactUserMapping.objects.get(contact=contact)
    assert (mapping.user, mapping.created_by.username, mapping.method) == (user, "op", "manual")
    assert ("contact.map", "op") in audit_actions(contact)
    # The queue has no add page and no delete: contacts come from messages, "Ignore" takes them out.
    assert operator_client.get(reverse("admin:contacts_unmappedcontact_add")).status_code == 403
    assert "delete_selected" not in page(operator_client.get(QUEUE))


def test_user_lookup_on_the_map_page_works_for_operators_and_only_for_users(operator_client, sandbox_provider):
    make_user("maria.s", first="Maria", last="Santos", email="maria@example.com")
    lookup = reverse("admin:contacts_unmappedcontact_user_lookup")
    params = {"term": "santos", "app_label": "contacts", "model_name": "contactusermapping", "field_name": "user"}
    response = operator_client.get(lookup, params)
    assert response.status_code == 200
    assert [row["text"] for row in response.json()["results"]] == ["Maria Santos <maria.s>"]
    # The same box cannot be pointed at another model's autocomplete.
    other = {**params, "app_label": "whatsapp", "model_name": "conversation", "field_name": "contact"}
    assert operator_client.get(lookup, other).status_code == 403


def test_users_without_contact_permissions_do_not_see_the_queue(client, sandbox_provider):
    user = User.objects.create_user("reviewer", "r@example.com", "pw-123456-strong", is_staff=True)
    user.groups.add(Group.objects.get(name="Template reviewer"))
    client.force_login(user)
    contact = make_contact(sandbox_provider, phone="+15551230001", name="Ana")
    assert client.get(QUEUE).status_code == 403
    assert client.get(map_url(contact)).status_code == 403


# --- the map page and the queue's actions --------------------------------------------------------------

def test_map_one_contact_from_its_page_with_a_suggested_user(admin_client_logged, sandbox_provider):
    user = make_user("mgonzales", first="Maria", last="Gonzales")
    contact = make_contact(sandbox_provider, phone="+15551230005", name="Maria Gonzalez")

    form = admin_client_logged.get(map_url(contact), {"user": user.pk})
    assert form.status_code == 200
    html = page(form)
    assert "Map Maria Gonzalez to a user" in html
    assert re.search(rf'<input type="radio" name="suggested_user" value="{user.pk}"[^>]*checked', html)
    assert "admin/js/autocomplete.js" in html  # the user search box

    response = admin_client_logged.post(map_url(contact), {"suggested_user": user.pk}, follow=True)
    assert response.redirect_chain[-1][0] == QUEUE
    assert "Mapped 1 contact(s) to Maria Gonzales &lt;mgonzales&gt;." in page(response)
    mapping = ContactUserMapping.objects.get(contact=contact)
    assert (mapping.user, mapping.method, mapping.created_by.username, mapping.notify_on_ready) == \
        (user, "manual", "root", False)
    entry = AuditLog.objects.get(action="contact.map", object_id=str(contact.pk))
    assert (entry.actor_label, entry.before, entry.after["user"]) == ("root", {"user": None}, user.pk)
    assert queue_names(admin_client_logged) == []


def test_map_page_without_a_choice_says_what_to_do(admin_client_logged, sandbox_provider):
    contact = make_contact(sandbox_provider, phone="+15551230005", name="Nobody Alike")
    response = admin_client_logged.post(map_url(contact), {})
    assert response.status_code == 200
    assert "Choose one of the suggested users, or find a user by name." in page(response)
    assert not ContactUserMapping.objects.exists()


def test_map_several_contacts_at_once(admin_client_logged, sandbox_provider):
    first = make_contact(sandbox_provider, phone="+15551230001", name="Ana")
    second = make_contact(sandbox_provider, phone="+15551230002", name="Ana B")
    untouched = make_contact(sandbox_provider, phone="+15551230003", name="Carla")
    user = make_user("ana.user", first="Ana", last="User")

    response = admin_client_logged.post(QUEUE, {"action": "map_to_user", "_selected_action": [first.pk, second.pk]})
    assert response.status_code == 302
    form_url = response["Location"]
    form = admin_client_logged.get(form_url)
    assert form.status_code == 200 and "Map 2 contacts to a user" in page(form)

    done = admin_client_logged.post(form_url, {"user": user.pk, "notify_on_ready": "on"}, follow=True)
    assert "Mapped 2 contact(s) to Ana User &lt;ana.user&gt;." in page(done)
    mappings = ContactUserMapping.objects.filter(user=user)
    assert sorted(mappings.values_list("contact_id", flat=True)) == sorted([first.pk, second.pk])
    assert all(mapping.notify_on_ready for mapping in mappings)
    assert ("contact.map", "root") in audit_actions(first) and ("contact.map", "root") in audit_actions(second)
    assert queue_names(admin_client_logged) == [untouched.profile_name]


def test_mapping_a_contact_mapped_to_someone_else_shows_the_conflict(admin_client_logged, sandbox_provider):
    contact = make_contact(sandbox_provider, phone="+15551230001", name="Ana")
    first_user, second_user = make_user("first"), make_user("second")
    contact_map_to_user(contact=contact, user=first_user, actor=None)

    form = admin_client_logged.get(map_url(contact))
    assert form.status_code == 200 and "mapped to first" in page(form)
    response = admin_client_logged.post(map_url(contact), {"user": second_user.pk})
    assert response.status_code == 200
    assert "Ana is already mapped to first; remove that mapping first" in page(response)
    assert ContactUserMapping.objects.get(contact=contact).user == first_user


def test_create_a_user_from_the_contact(admin_client_logged, sandbox_provider):
    contact = make_contact(sandbox_provider, phone="+15551230007", name="Paula Reyes")
    response = admin_client_logged.post(QUEUE, {"action": "create_user", "_selected_action": [contact.pk]},
                                        follow=True)
    user = User.objects.get(username="paula.reyes")
    assert (user.first_name, user.last_name, user.has_usable_password()) == ("Paula", "Reyes", False)
    assert UserProfile.objects.get(user=user).phone_number == "+15551230007"
    mapping = ContactUserMapping.objects.get(contact=contact)
    assert (mapping.user, mapping.rule) == (user, "user created from the contact")
    assert "Created user Paula Reyes &lt;paula.reyes&gt; and mapped Paula Reyes to it." in page(response)
    assert ("user.create_from_contact", "root") in audit_actions(user)
    assert ("contact.map", "root") in audit_actions(contact)
    assert queue_names(admin_client_logged) == []


def test_ignore_takes_contacts_out_of_the_queue_and_unignore_puts_them_back(admin_client_logged,
                                                                            sandbox_provider):
    spam = make_contact(sandbox_provider, phone="+15551230008", name="Spammy")
    kept = make_contact(sandbox_provider, phone="+15551230009", name="Kept")
    response = admin_client_logged.post(QUEUE, {"action": "ignore", "_selected_action": [spam.pk]}, follow=True)
    assert "1 contact(s) left the queue" in page(response)
    assert queue_names(admin_client_logged) == ["Kept"]
    spam.refresh_from_db()
    assert spam.is_ignored
    assert audit_actions(spam)[-1] == ("contact.ignore", "root")

    listed = page(admin_client_logged.get(CONTACTS, {"is_ignored__exact": "1"}))
    assert f"/contact/{spam.pk}/change/" in listed and f"/contact/{kept.pk}/change/" not in listed
    response = admin_client_logged.post(CONTACTS, {"action": "unignore", "_selected_action": [spam.pk]},
                                        follow=True)
    assert "1 contact(s) back in the unmapped queue." in page(response)
    assert queue_names(admin_client_logged) == ["Kept", "Spammy"]
    assert audit_actions(spam)[-1] == ("contact.unignore", "root")


# --- the contact pages -----------------------------------------------------------------------------

def test_opt_out_and_opt_in_actions_keep_a_history(admin_client_logged, sandbox_provider):
    contact = make_contact(sandbox_provider, phone="+15551230001", name="Ana")
    response = admin_client_logged.post(CONTACTS, {"action": "opt_out", "_selected_action": [contact.pk]},
                                        follow=True)
    assert "1 contact(s) opted out." in page(response)
    contact.refresh_from_db()
    assert (contact.consent, contact.consent_source) == ("opted_out", "admin")
    again = admin_client_logged.post(CONTACTS, {"action": "opt_out", "_selected_action": [contact.pk]}, follow=True)
    assert "0 contact(s) opted out (1 already were)." in page(again)
    admin_client_logged.post(CONTACTS, {"action": "opt_in", "_selected_action": [contact.pk]})
    contact.refresh_from_db()
    assert contact.consent == "opted_in"

    events = list(ConsentEvent.objects.filter(contact=contact).order_by("created_at", "id")
                  .values_list("previous_state", "state", "source", "actor__username"))
    assert events == [("unknown", "opted_out", "admin", "root"), ("opted_out", "opted_in", "admin", "root")]
    assert [action for action, _ in audit_actions(contact)].count("contact.consent") == 2
    assert page(admin_client_logged.get(CONTACTS, {"consent__exact": "opted_in"})).count(
        f"/contact/{contact.pk}/change/") == 1

    html = page(admin_client_logged.get(reverse("admin:contacts_contact_change", args=[contact.pk])))
    assert "Consent history" in html
    history = html[html.index("Consent history"):]
    assert "Opted out" in history and "Opted in" in history and "root" in history


def test_send_verification_code_action_queues_a_code_or_says_why_not(admin_client_logged, sandbox_provider):
    user = make_user("ana", first="Ana", last="Souza")
    contact = make_contact(sandbox_provider, phone="+15551230001", name="Ana")
    inbound = Message.objects.get(conversation__contact=contact)
    session_open_or_extend(conversation=inbound.conversation, inbound_at=timezone.now())
    contact_map_to_user(contact=contact, user=user, actor=None)
    action = {"action": "send_verification_code", "_selected_action": [contact.pk]}

    refused = page(admin_client_logged.post(CONTACTS, action, follow=True))
    assert "no code sent" in refused and "verification enabled" in refused
    sandbox_provider.contact_verification_enabled = True
    sandbox_provider.save()
    sent = page(admin_client_logged.post(CONTACTS, action, follow=True))
    code_message = Message.objects.get(conversation__contact=contact, purpose="verification")
    assert f"a code is on its way (message #{code_message.pk})" in sent
    assert re.search(r"\b\d{6}\b", code_message.text) and code_message.text not in sent
    challenge = VerificationChallenge.objects.get(contact=contact)
    assert (challenge.user, challenge.created_by.username) == (user, "root")
    assert "contact.verification_start" in [action for action, _ in audit_actions(contact)]


def test_contact_page_links_its_mapped_user_and_filters_by_mapping(admin_client_logged, sandbox_provider):
    mapped = make_contact(sandbox_provider, phone="+15551230001", name="Ana")
    unmapped = make_contact(sandbox_provider, phone="+15551230002", name="Bruno")
    user = make_user("ana.user", first="Ana", last="User")
    contact_map_to_user(contact=mapped, user=user, actor=None)

    html = page(admin_client_logged.get(reverse("admin:contacts_contact_change", args=[mapped.pk])))
    assert f'<a href="{reverse("admin:auth_user_change", args=[user.pk])}">Ana User &lt;ana.user&gt;</a>' in html
    assert "Manual" in html
    other = page(admin_client_logged.get(reverse("admin:contacts_contact_change", args=[unmapped.pk])))
    assert f'href="{map_url(unmapped)}">Map to a user…</a>' in other

    listed = page(admin_client_logged.get(CONTACTS, {"mapped": "no"}))
    assert f"/contact/{unmapped.pk}/change/" in listed and f"/contact/{mapped.pk}/change/" not in listed
    listed = page(admin_client_logged.get(CONTACTS, {"mapped": "yes"}))
    assert f"/contact/{mapped.pk}/change/" in listed and f"/contact/{unmapped.pk}/change/" not in listed


def test_merge_contacts_after_choosing_the_survivor(admin_client_logged, sandbox_provider):
    by_phone = make_contact(sandbox_provider, phone="+15551230001", name="Ana", texts=("from the phone",))
    by_bsuid = make_contact(sandbox_provider, bsuid="US.12345", texts=("from the business id",))
    selected = {"action": "merge_contacts", "_selected_action": [by_phone.pk, by_bsuid.pk]}

    form = admin_client_logged.post(CONTACTS, selected)
    assert form.status_code == 200
    html = page(form)
    assert "Keep this contact" in html and "+15551230001" in html and "US.12345" in html

    response = admin_client_logged.post(CONTACTS, {**selected, "apply": "1", "survivor": by_phone.pk}, follow=True)
    assert f"Merged 1 contact(s) into Ana (#{by_phone.pk})." in page(response)
    assert list(Contact.objects.values_list("pk", flat=True)) == [by_phone.pk]
    assert sorted(by_phone.identities.values_list("value", flat=True)) == ["+15551230001", "US.12345"]
    conversation = Conversation.objects.get()
    assert sorted(conversation.messages.values_list("text", flat=True)) == ["from the business id", "from the phone"]
    assert ("contact.merge", "root") in audit_actions(by_phone)


def test_merge_refused_for_contacts_mapped_to_different_users(admin_client_logged, sandbox_provider):
    first = make_contact(sandbox_provider, phone="+15551230001", name="Ana")
    second = make_contact(sandbox_provider, phone="+15551230002", name="Ana too")
    contact_map_to_user(contact=first, user=make_user("one"), actor=None)
    contact_map_to_user(contact=second, user=make_user("two"), actor=None)
    response = admin_client_logged.post(CONTACTS, {"action": "merge_contacts", "apply": "1", "survivor": first.pk,
                                                   "_selected_action": [first.pk, second.pk]}, follow=True)
    assert "Not merged: these contacts are mapped to different users" in page(response)
    assert Contact.objects.count() == 2


def test_merge_needs_two_contacts_and_is_not_offered_to_operators(admin_client_logged, operator_client,
                                                                    sandbox_provider):
    contact = make_contact(sandbox_provider, phone="+15551230001", name="Ana")
    response = admin_client_logged.post(CONTACTS, {"action": "merge_contacts", "_selected_action": [contact.pk]},
                                        follow=True)
    assert "Select at least two contacts to merge." in page(response)
    html = page(operator_client.get(CONTACTS))
    assert 'value="opt_out"' in html and 'value="merge_contacts"' not in html


# --- consent keywords, consent events, verification codes, user profiles -----------------------------

def test_consent_keywords_filter_by_language_and_edit_in_the_list(admin_client_logged):
    url = reverse("admin:contacts_consentkeyword_changelist")
    html = page(admin_client_logged.get(url, {"language": "es", "action__exact": "opt_out"}))
    listed = re.findall(r'<th class="field-keyword"><a href="[^"]+">([^<]+)</a>', html)
    assert sorted(listed) == ["ALTO", "BAJA", "CANCELAR", "DETENER", "PARAR"]

    from contacts.models import ConsentKeyword

    keyword = ConsentKeyword.objects.get(language="en", keyword="STOPALL")
    rows = list(ConsentKeyword.objects.filter(language="en", action="opt_out").order_by("keyword"))
    data = {"form-TOTAL_FORMS": len(rows), "form-INITIAL_FORMS": len(rows), "_save": "Save"}
    for index, row in enumerate(rows):
        data.update({f"form-{index}-id": row.pk, f"form-{index}-action": row.action})
        if row.is_active and row != keyword:
            data[f"form-{index}-is_active"] = "on"
    response = admin_client_logged.post(f"{url}?language=en&action__exact=opt_out", data)
    assert response.status_code == 302, page(response)[:2000]
    keyword.refresh_from_db()
    assert not keyword.is_active
    assert audit_actions(keyword)[-1] == ("admin.change", "root")


def test_consent_history_and_verification_pages_are_read_only_and_hide_the_digest(admin_client_logged,
                                                                                  sandbox_provider):
    contact = make_contact(sandbox_provider, phone="+15551230001", name="Ana")
    admin_client_logged.post(CONTACTS, {"action": "opt_out", "_selected_action": [contact.pk]})
    event = ConsentEvent.objects.get()
    html = page(admin_client_logged.get(reverse("admin:contacts_consentevent_change", args=[event.pk])))
    assert "Opted out" in html and 'name="_save"' not in html
    assert admin_client_logged.post(reverse("admin:contacts_consentevent_delete", args=[event.pk])).status_code == 403

    challenge = VerificationChallenge.objects.create(
        contact=contact, user=make_user("ana.user"), provider=sandbox_provider, code_digest="d1g3st-never-shown",
        expires_at=timezone.now() + timedelta(minutes=10))
    for url in (reverse("admin:contacts_verificationchallenge_changelist"),
                reverse("admin:contacts_verificationchallenge_change", args=[challenge.pk])):
        html = page(admin_client_logged.get(url))
        assert "ana.user" in html and "d1g3st-never-shown" not in html


def _user_change_data(user, phone: str) -> dict:
    return {"username": user.username, "first_name": user.first_name, "last_name": user.last_name,
            "email": user.email, "is_active": "on", "date_joined_0": "2026-01-01", "date_joined_1": "10:00:00",
            "whatsapp_profile-TOTAL_FORMS": "1", "whatsapp_profile-INITIAL_FORMS": "0",
            "whatsapp_profile-MIN_NUM_FORMS": "0", "whatsapp_profile-MAX_NUM_FORMS": "1",
            "whatsapp_profile-0-phone_number": phone, "whatsapp_profile-0-user": user.pk, "_save": "Save"}


def test_user_page_takes_a_phone_number_in_e164_and_maps_the_matching_contact(admin_client_logged,
                                                                              sandbox_provider):
    user = make_user("ana.user", first="Ana", last="User")
    url = reverse("admin:auth_user_change", args=[user.pk])
    assert "WhatsApp profile" in page(admin_client_logged.get(url))

    refused = admin_client_logged.post(url, _user_change_data(user, "12345"))
    assert refused.status_code == 200
    assert "is not a possible phone number" in page(refused)
    assert "Enter it with its country code, e.g. +15551230001." in page(refused)
    assert not UserProfile.objects.filter(user=user).exists()

    contact = make_contact(sandbox_provider, phone="+15551230001", name="Someone")
    saved = admin_client_logged.post(url, _user_change_data(user, "+1 (555) 123-0001"))
    assert saved.status_code == 302, page(saved)[:3000]
    assert UserProfile.objects.get(user=user).phone_number == "+15551230001"
    # The auto rule ran on the profile's save: the contact with that phone left the queue.
    assert ContactUserMapping.objects.get(contact=contact).user == user
    assert admin_client_logged.get(reverse("admin:auth_user_add")).status_code == 200
