"""
The contacts API: filters and search, consent changes and their history, verification by a one-time
code (sent through the sandbox provider, answered by the contact through its signed webhook), contact
to user mappings, and the unmapped queue with its suggestions, at a fixed number of queries per page.
"""

import json
import re
import time

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from contacts.models import ConsentEvent, Contact, ContactUserMapping, VerificationChallenge
from contacts.services.mapping import contact_map_to_user, user_phone_set
from core.models import AuditLog
from tests.conftest import refused, token_client
from whatsapp.models import Message, Provider
from whatsapp.services.delivery import message_deliver

pytestmark = pytest.mark.django_db

ANA_PHONE = "+15551230001"
BEN_PHONE = "+15551230002"


# --- helpers ---------------------------------------------------------------------------------------

@pytest.fixture
def ana(say) -> Contact:
    return say(ANA_PHONE, "Hi! Is my order #1042 on its way?", name="Ana Souza")


@pytest.fixture
def ben(say) -> Contact:
    return say(BEN_PHONE, "Hello there", name="Ben Okafor")


def make_user(username: str, *, first: str = "", last: str = "", perms: tuple[str, ...] = ()):
    user = get_user_model().objects.create_user(username, password="pw-123456-strong", first_name=first,
                                                last_name=last)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


# --- list, filters and search ----------------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["+1 (555) 123-0001", "15551230001", "+1-555-123-0001", "1 555 123 0001",
                                      " +15551230001 "])
def test_phone_filter_takes_any_spelling(api_client, ana, ben, spelling):
    assert ids(api_client.get("/api/v1/contacts/", {"phone": spelling})) == [ana.pk]


def test_phone_filter_unencoded_plus_in_the_query_string(api_client, ana, ben):
    # "+1 555..." typed straight into a URL arrives as " 1 555...": still the same number.
    assert ids(api_client.get("/api/v1/contacts/?phone=+1 555 123 0002")) == [ben.pk]


def test_phone_filter_unknown_number_and_nonsense(api_client, ana):
    assert ids(api_client.get("/api/v1/contacts/", {"phone": "+44 20 7946 0958"})) == []
    body = refused(api_client.get("/api/v1/contacts/", {"phone": "call me"}), 400, "invalid_request")
    assert "phone" in body["errors"] and "not a phone number" in body["detail"]


def test_name_filter_and_search(api_client, ana, ben):
    assert ids(api_client.get("/api/v1/contacts/", {"name": "souz"})) == [ana.pk]
    assert ids(api_client.get("/api/v1/contacts/", {"search": "OKAFOR"})) == [ben.pk]
    assert ids(api_client.get("/api/v1/contacts/", {"search": "1230001"})) == [ana.pk]  # identity values too
    assert ids(api_client.get("/api/v1/contacts/", {"search": "ben", "name": "souza"})) == []


def test_mapped_user_and_mapped_filters(api_client, superuser, ana, ben):
    someone = make_user("ana.souza")
    contact_map_to_user(contact=ana, user=someone, actor=superuser)
    assert ids(api_client.get("/api/v1/contacts/", {"user": someone.pk})) == [ana.pk]
    assert ids(api_client.get("/api/v1/contacts/", {"mapped": "true"})) == [ana.pk]
    assert ids(api_client.get("/api/v1/contacts/", {"mapped": "false"})) == [ben.pk]
    refused(api_client.get("/api/v1/contacts/", {"mapped": "maybe"}), 400, "invalid_request")
    refused(api_client.get("/api/v1/contacts/", {"user": "ana"}), 400, "invalid_request")


def test_consent_and_ignored_filters(api_client, ana, ben):
    api_client.post(f"/api/v1/contacts/{ben.pk}/consent/", {"state": "opted_out"}, format="json")
    api_client.post(f"/api/v1/contacts/{ana.pk}/ignore/")
    assert ids(api_client.get("/api/v1/contacts/", {"consent": "opted_out"})) == [ben.pk]
    assert ids(api_client.get("/api/v1/contacts/", {"ignored": "true"})) == [ana.pk]
    body = refused(api_client.get("/api/v1/contacts/", {"consent": "whatever"}), 400, "invalid_request")
    assert "consent" in body["errors"]


def test_detail_shows_identities_mapping_and_consent(api_client, superuser, ana):
    someone = make_user("ana.souza")
    contact_map_to_user(contact=ana, user=someone, actor=superuser, notify_on_ready=True)
    api_client.post(f"/api/v1/contacts/{ana.pk}/consent/", {"state": "opted_in", "note": "signed the form"},
                    format="json")
    detail = api_client.get(f"/api/v1/contacts/{ana.pk}/").json()
    assert detail["identities"] == [{"kind": "phone", "value": ANA_PHONE, "scope": ""}]
    mapping = detail["mapping"]
    assert (mapping["user"], mapping["username"], mapping["method"], mapping["notify_on_ready"],
            mapping["verified_at"]) == (someone.pk, "ana.souza", "manual", True, None)
    assert detail["consent"] == "opted_in" and detail["consent_source"] == "api" and detail["consent_changed_at"]


def test_unknown_contact_and_anonymous(api_client, client):
    refused(api_client.get("/api/v1/contacts/999999/"), 404, "not_found")
    refused(api_client.get("/api/v1/contacts/abc/"), 404, "not_found")
    refused(APIClient().get("/api/v1/contacts/unmapped/"), 401, "not_authenticated")


def test_list_query_count_does_not_grow_with_the_page(api_client, superuser, say):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert api_client.get("/api/v1/contacts/", {"page_size": 100}).status_code == 200
        return len(captured)

    for n in range(3):
        contact_map_to_user(contact=say(f"+1555123{n:04d}", "hi", name=f"Person {n}"),
                            user=make_user(f"person{n}"), actor=superuser)
    api_client.get("/api/v1/contacts/")  # the token's last-used time is written once, here
    few = queries()
    for n in range(3, 20):
        contact_map_to_user(contact=say(f"+1555123{n:04d}", "hi", name=f"Person {n}"),
                            user=make_user(f"person{n}"), actor=superuser)
    assert queries() == few


# --- consent ---------------------------------------------------------------------------------------

def test_consent_change_is_recorded_with_history_and_audit(ana):
    clerk = make_user("clerk", perms=("contacts.view_contact", "contacts.change_contact"))
    api = token_client(clerk)
    response = api.post(f"/api/v1/contacts/{ana.pk}/consent/", {"state": "opted_out", "note": "asked by phone"},
                        format="json")
    assert response.status_code == 200, response.content
    assert response.json()["consent"] == "opted_out" and response.json()["consent_source"] == "api"
    api.post(f"/api/v1/contacts/{ana.pk}/consent/", {"state": "opted_in"}, format="json")

    history = api.get(f"/api/v1/contacts/{ana.pk}/consent-history/").json()
    assert [(e["previous_state"], e["state"], e["source"], e["actor_username"]) for e in history["results"]] == [
        ("opted_out", "opted_in", "api", "clerk"), ("unknown", "opted_out", "api", "clerk")]
    assert history["results"][1]["detail"] == "asked by phone"
    audit = AuditLog.objects.filter(action="contact.consent", object_id=str(ana.pk)).order_by("created_at", "id")
    assert [(row.actor, row.before, row.after["consent"]) for row in audit] == [
        (clerk, {"consent": "unknown"}, "opted_out"), (clerk, {"consent": "opted_out"}, "opted_in")]


def test_consent_change_needs_the_change_permission_and_a_valid_state(api_client, ana):
    reader = token_client(make_user("reader", perms=("contacts.view_contact",)))
    assert reader.get(f"/api/v1/contacts/{ana.pk}/").status_code == 200
    refused(reader.post(f"/api/v1/contacts/{ana.pk}/consent/", {"state": "opted_out"}, format="json"), 403,
            "permission_denied")
    body = refused(api_client.post(f"/api/v1/contacts/{ana.pk}/consent/", {"state": "maybe"}, format="json"), 400,
                   "invalid_request")
    assert "state" in body["errors"]
    refused(api_client.post(f"/api/v1/contacts/{ana.pk}/consent/", {}, format="json"), 400, "invalid_request")
    refused(api_client.post(f"/api/v1/contacts/{ana.pk}/consent/", "{not json", content_type="application/json"),
            400, "parse_error")
    ana.refresh_from_db()
    assert ana.consent == "unknown" and not ConsentEvent.objects.exists()


def test_send_to_an_opted_out_contact_is_refused(api_client, sandbox_provider, ana):
    api_client.post(f"/api/v1/contacts/{ana.pk}/consent/", {"state": "opted_out"}, format="json")
    response = api_client.post("/api/v1/messages/", {"provider": sandbox_provider.pk, "contact": ana.pk,
                                                     "text": "Your order shipped"}, format="json")
    refused(response, 422, "opted_out")
    assert not Message.objects.filter(direction="outbound").exists()


# --- verification ----------------------------------------------------------------------------------

@pytest.fixture
def verifying(sandbox_provider):
    Provider.objects.filter(pk=sandbox_provider.pk).update(contact_verification_enabled=True)
    return sandbox_provider


def test_verification_code_goes_to_the_contact_never_to_the_caller(api_client, verifying, ana, say):
    user = make_user("ana.souza")
    response = api_client.post(f"/api/v1/contacts/{ana.pk}/verify/", {"user": user.pk}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == {"challenge", "user", "expires_at", "message"} and body["user"] == user.pk

    message = Message.objects.get(pk=body["message"])
    assert (message.direction, message.purpose, message.status) == ("outbound", "verification", "queued")
    code = re.search(r"\b(\d{6})\b", message.text).group(1)
    assert code not in json.dumps({key: value for key, value in body.items() if key != "expires_at"})
    assert code not in api_client.get(f"/api/v1/contacts/{ana.pk}/").content.decode()
    delivered = message_deliver(message.pk)  # the send task's body: the sandbox takes the message
    assert delivered.status == "sent" and delivered.provider_message_id.startswith("sbx-")
    assert AuditLog.objects.filter(action="contact.verification_start", object_id=str(ana.pk)).exists()

    say(ANA_PHONE, f" {code} ")  # the contact answers with the code
    mapping = ContactUserMapping.objects.get(contact=ana)
    assert (mapping.user, mapping.method) == (user, "verified") and mapping.verified_at is not None
    assert VerificationChallenge.objects.get(pk=body["challenge"]).verified_at is not None
    detail = api_client.get(f"/api/v1/contacts/{ana.pk}/").json()
    assert detail["mapping"]["method"] == "verified" and detail["mapping"]["verified_at"]


def test_verification_wrong_code_verifies_nothing(api_client, verifying, ana, say):
    user = make_user("ana.souza")
    contact_map_to_user(contact=ana, user=user, actor=None)
    response = api_client.post(f"/api/v1/contacts/{ana.pk}/verify/", {}, format="json")  # as the mapped user
    assert response.status_code == 202, response.content
    code = re.search(r"\d{6}", Message.objects.get(pk=response.json()["message"]).text).group(0)
    say(ANA_PHONE, f"{(int(code) + 1) % 1_000_000:06d}")
    assert ContactUserMapping.objects.get(contact=ana).method == "manual"


def test_verification_refusals(api_client, sandbox_provider, verifying, ana, ben, say):
    user, other = make_user("ana.souza"), make_user("other")
    refused(api_client.post(f"/api/v1/contacts/{ana.pk}/verify/", {}, format="json"), 409, "no_user")
    contact_map_to_user(contact=ana, user=other, actor=None)
    refused(api_client.post(f"/api/v1/contacts/{ana.pk}/verify/", {"user": user.pk}, format="json"), 409,
            "mapped_elsewhere")
    refused(api_client.post(f"/api/v1/contacts/{ben.pk}/verify/", {"user": 999999}, format="json"), 400,
            "invalid_request")
    refused(api_client.post(f"/api/v1/contacts/{ben.pk}/verify/", {"user": "ben"}, format="json"), 400,
            "invalid_request")

    api_client.post(f"/api/v1/contacts/{ben.pk}/consent/", {"state": "opted_out"}, format="json")
    refused(api_client.post(f"/api/v1/contacts/{ben.pk}/verify/", {"user": user.pk}, format="json"), 422,
            "opted_out")
    two_days_ago = say("+15551230003", "hello", name="Cleo", at=time.time() - 2 * 86400)
    refused(api_client.post(f"/api/v1/contacts/{two_days_ago.pk}/verify/", {"user": user.pk}, format="json"), 422,
            "outside_window")

    Provider.objects.filter(pk=sandbox_provider.pk).update(contact_verification_enabled=False)
    body = refused(api_client.post(f"/api/v1/contacts/{two_days_ago.pk}/verify/", {"user": user.pk}, format="json"),
                   409, "verification_disabled")
    assert "Contact verification enabled" in body["detail"]
    assert not Message.objects.filter(purpose="verification").exists()
    assert not VerificationChallenge.objects.exists()


def test_verification_needs_permission(verifying, ana):
    reader = token_client(make_user("reader", perms=("contacts.view_contact", "contacts.change_contact")))
    user = make_user("ana.souza")
    refused(reader.post(f"/api/v1/contacts/{ana.pk}/verify/", {"user": user.pk}, format="json"), 403,
            "permission_denied")
    assert not VerificationChallenge.objects.exists()
    assert not Message.objects.filter(purpose="verification").exists()


# --- mappings --------------------------------------------------------------------------------------

def test_mapping_create_conflict_update_and_delete(api_client, superuser, ana):
    user, other = make_user("ana.souza"), make_user("other")
    created = api_client.post("/api/v1/contact-mappings/", {"contact": ana.pk, "user": user.pk,
                                                            "notify_on_ready": True}, format="json")
    assert created.status_code == 201, created.content
    mapping = created.json()
    assert (mapping["contact"], mapping["user"], mapping["username"], mapping["method"], mapping["notify_on_ready"],
            mapping["created_by"]) == (ana.pk, user.pk, "ana.souza", "manual", True, superuser.pk)
    audit = AuditLog.objects.get(action="contact.map", object_id=str(ana.pk))
    assert audit.actor == superuser and audit.after["user"] == user.pk

    again = api_client.post("/api/v1/contact-mappings/", {"contact": ana.pk, "user": user.pk}, format="json")
    assert again.status_code == 200 and again.json()["id"] == mapping["id"]
    conflict = refused(api_client.post("/api/v1/contact-mappings/", {"contact": ana.pk, "user": other.pk},
                                       format="json"), 409, "mapping_conflict")
    assert "already mapped" in conflict["detail"]
    assert ContactUserMapping.objects.get(contact=ana).user == user

    url = f"/api/v1/contact-mappings/{mapping['id']}/"
    patched = api_client.patch(url, {"notify_on_ready": False}, format="json")
    assert patched.status_code == 200 and patched.json()["notify_on_ready"] is False
    assert AuditLog.objects.filter(action="contact.mapping_notify", object_id=str(ana.pk)).count() == 1
    body = refused(api_client.patch(url, {"user": other.pk, "notify_on_ready": True}, format="json"), 400,
                   "invalid_request")
    assert "user" in body["errors"]
    assert api_client.put(url, {"notify_on_ready": True}, format="json").status_code == 405

    listed = api_client.get("/api/v1/contact-mappings/", {"user": user.pk, "method": "manual"}).json()
    assert [row["id"] for row in listed["results"]] == [mapping["id"]]
    assert api_client.get("/api/v1/contact-mappings/", {"contact": ana.pk + 1000}).json()["count"] == 0

    assert api_client.delete(url).status_code == 204
    assert not ContactUserMapping.objects.exists()
    assert AuditLog.objects.filter(action="contact.unmap", object_id=str(ana.pk)).exists()
    assert ids(api_client.get("/api/v1/contacts/unmapped/")) == [ana.pk]
    refused(api_client.delete(url), 404, "not_found")


def test_mapping_bad_input_and_permissions(api_client, ana):
    user = make_user("ana.souza")
    body = refused(api_client.post("/api/v1/contact-mappings/", {"contact": 999999, "user": user.pk},
                                   format="json"), 400, "invalid_request")
    assert "contact" in body["errors"]
    refused(api_client.post("/api/v1/contact-mappings/", {"contact": ana.pk}, format="json"), 400, "invalid_request")
    viewer = token_client(make_user("viewer", perms=("contacts.view_contactusermapping",)))
    assert viewer.get("/api/v1/contact-mappings/").status_code == 200
    refused(viewer.post("/api/v1/contact-mappings/", {"contact": ana.pk, "user": user.pk}, format="json"), 403,
            "permission_denied")
    assert not ContactUserMapping.objects.exists()


# --- the unmapped queue ----------------------------------------------------------------------------

def test_unmapped_queue_with_counts_previews_and_suggestions(api_client, superuser, say):
    # Two users with Ana's phone before she writes: ambiguous, so never auto-mapped, both suggested.
    first, second = make_user("ana.work", first="Ana", last="Souza"), make_user("ana.home")
    user_phone_set(first, ANA_PHONE)
    user_phone_set(second, ANA_PHONE)
    namesake = make_user("bokafor", first="Ben", last="Okafor")
    ana = say(ANA_PHONE, "Hi! Is my order #1042 on its way?", name="Ana Souza")
    ben = say(BEN_PHONE, "Hello there", name="Ben Okafor")
    say(ANA_PHONE, "Also: can I change the address?")
    mapped = say("+15551230003", "hi", name="Cleo")
    contact_map_to_user(contact=mapped, user=make_user("cleo"), actor=superuser)
    ignored = say("+15551230004", "spam", name="Spam")
    api_client.post(f"/api/v1/contacts/{ignored.pk}/ignore/")

    queue = api_client.get("/api/v1/contacts/unmapped/").json()
    assert queue["count"] == 2
    rows = {row["id"]: row for row in queue["results"]}
    assert [row["id"] for row in queue["results"]] == [ben.pk, ana.pk]  # newest first
    assert rows[ana.pk]["message_count"] == 2
    assert rows[ana.pk]["last_message_preview"] == "Also: can I change the address?"
    assert rows[ana.pk]["last_message_at"]
    assert rows[ana.pk]["providers"] == [{"id": ana.conversations.get().provider_id, "kind": "sandbox",
                                          "name": "Sandbox test"}]
    assert rows[ana.pk]["suggested_users"] == [
        {"user": first.pk, "username": "ana.work", "name": "Ana Souza", "reasons": ["same phone", "similar name"]},
        {"user": second.pk, "username": "ana.home", "name": "", "reasons": ["same phone"]}]
    assert rows[ben.pk]["suggested_users"] == [
        {"user": namesake.pk, "username": "bokafor", "name": "Ben Okafor", "reasons": ["similar name"]}]

    # Ignoring takes a contact out, unignoring puts it back; the filters work inside the queue.
    api_client.post(f"/api/v1/contacts/{ignored.pk}/unignore/")
    assert ignored.pk in ids(api_client.get("/api/v1/contacts/unmapped/"))
    assert ids(api_client.get("/api/v1/contacts/unmapped/", {"phone": "1 555 123 0001"})) == [ana.pk]
    assert [row.action for row in AuditLog.objects.filter(object_id=str(ignored.pk), action__contains="ignore")
            .order_by("id")] == ["contact.ignore", "contact.unignore"]


def test_ignore_needs_the_change_permission(ana):
    reader = token_client(make_user("reader", perms=("contacts.view_contact",)))
    refused(reader.post(f"/api/v1/contacts/{ana.pk}/ignore/"), 403, "permission_denied")
    assert ids(reader.get("/api/v1/contacts/unmapped/")) == [ana.pk]


def test_unmapped_queue_query_count_is_the_same_for_5_and_30_contacts(superuser, say):
    api = APIClient()
    api.force_authenticate(superuser)

    def arrive(numbers: range) -> None:
        for n in numbers:
            say(f"+1555987{n:04d}", f"message from {n}", name=f"Customer{n} Lastname")
            make_user(f"customer{n}", first=f"Customer{n}", last="Lastname")

    def queries() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as captured:
            response = api.get("/api/v1/contacts/unmapped/", {"page_size": 100})
        rows = response.json()["results"]
        assert all(row["suggested_users"] and row["message_count"] == 1 for row in rows)
        return len(rows), len(captured)

    arrive(range(5))
    rows_few, few = queries()
    arrive(range(5, 30))
    rows_many, many = queries()
    assert (rows_few, rows_many) == (5, 30)
    assert many == few, f"{few} queries for 5 contacts, {many} for 30"


# --- robustness ------------------------------------------------------------------------------------

ODD_QUERIES = [{"user": "1e400"}, {"user": "99999999999999999999"}, {"user": "-1"}, {"user": "1.5"},
               {"phone": "+" + "9" * 300}, {"phone": "\x00"}, {"name": "a\x00b"}, {"search": "\x00"},
               {"last_seen_at__gte": "yesterday"}, {"page": "0"}, {"page": "abc"}, {"page_size": "-5"},
               {"ordering": "secret"}, {"consent": ""}, {"mapped": ""}]


@pytest.mark.parametrize("params", ODD_QUERIES)
@pytest.mark.parametrize("path", ["/api/v1/contacts/", "/api/v1/contacts/unmapped/", "/api/v1/contact-mappings/"])
def test_odd_queries_never_fail_the_server(api_client, ana, path, params):
    response = api_client.get(path, params)
    assert response.status_code in (200, 400, 404), (response.status_code, response.content[:300])
    if response.status_code != 200:
        assert response.json()["code"] and response.json()["detail"]


ODD_POSTS = [("contacts/{contact}/consent/", {"state": "opted_out", "note": "x" * 1000}),
             ("contacts/{contact}/consent/", {"state": "opted_out", "note": "a\x00b"}),
             ("contacts/{contact}/consent/", ["opted_out"]),
             ("contacts/{contact}/consent/", {"state": ["opted_out"]}),
             ("contacts/{contact}/verify/", {"user": 99999999999999999999}),
             ("contacts/{contact}/verify/", {"user": [1]}),
             ("contacts/{contact}/verify/", "just text"),
             ("contacts/99999999999999999999/consent/", {"state": "opted_out"}),
             ("contact-mappings/", {"contact": 99999999999999999999, "user": 1}),
             ("contact-mappings/", {"contact": "{contact}", "user": None}),
             ("contact-mappings/", {"contact": "{contact}", "user": "{user}", "notify_on_ready": "perhaps"})]


@pytest.mark.parametrize(("path", "body"), ODD_POSTS)
def test_odd_bodies_never_fail_the_server(api_client, superuser, ana, path, body):
    def fill(value):
        return value.replace("{contact}", str(ana.pk)).replace("{user}", str(superuser.pk)) \
            if isinstance(value, str) else value

    if isinstance(body, dict):
        body = {key: fill(value) for key, value in body.items()}
    response = api_client.post("/api/v1/" + fill(path), body, format="json")
    assert response.status_code in (400, 404), (response.status_code, response.content[:300])
    assert response.json()["code"] and response.json()["detail"]
