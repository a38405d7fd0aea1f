"""
The campaigns API: CSV lists imported whole or refused by line, campaigns written, launched, paused, resumed and
cancelled, results and recipients (JSON and CSV), conversions, and who may do what.
"""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns.models import AudienceImport, Campaign, CampaignRecipient
from campaigns.services import dispatch as dispatching
from contacts.models import ConsentEvent, Contact, ContactIdentity
from templates_app.models import MessageTemplate
from tests.campaigns.conftest import approved_template, person
from tests.conftest import audit_actions, refused, token_client, user_with_perms
from whatsapp.models import Message

pytestmark = pytest.mark.django_db


def upload(api, provider, text: str, **fields):
    return api.post("/api/v1/audiences/", {
        "name": "Spring list", "provider": provider.pk,
        "file": SimpleUploadedFile("list.csv", text.encode(), content_type="text/csv"), **fields}, format="multipart")


GOOD = ("phone,name,opt_in,coupon\n"
        "+1 212 555 0101,Ana Lima,web form 2026-11-02,SPRING-1\n"
        "13105550102,Bob,shop counter 2026-11-03,SPRING-2\n"
        "+55 11 95500-0103,Carla,web form 2026-11-04,SPRING-3\n")


def test_a_list_with_bad_rows_is_refused_by_line_and_nothing_is_imported(api_client, meta):
    response = upload(api_client, meta, GOOD + "not-a-number,Dan,web,X\n"
                                              "+12125550101,Ana again,web,Y\n"
                                              "+12125550199,Eve,,Z\n")
    body = refused(response, 400, "import_refused")
    assert [row["line"] for row in body["rows"]] == [5, 6, 7]
    assert "not a phone number" in body["rows"][0]["reason"]
    assert "the same number as line 2" in body["rows"][1]["reason"]
    assert "no opt-in proof" in body["rows"][2]["reason"]
    assert Contact.objects.count() == 0 and ContactIdentity.objects.count() == 0
    kept = AudienceImport.objects.get(pk=body["import"])
    assert kept.status == AudienceImport.Status.REFUSED and kept.rows_imported == 0 and len(kept.errors) == 3

    refused(upload(api_client, meta, "name,email\nAna,a@example.com\n"), 400, "invalid_file")
    refused(upload(api_client, meta, "\xff\xfe not text"), 400, "invalid_file")


def test_a_good_list_is_imported_normalised_and_opted_in_with_its_proof(api_client, meta):
    stopped = person(meta, "+13105550102", "Bob", consent=Contact.Consent.OPTED_OUT)
    response = upload(api_client, meta, GOOD)
    assert response.status_code == 201, response.content
    assert response.json()["rows_imported"] == 3 and response.json()["columns"] == ["coupon"]
    phones = set(ContactIdentity.objects.values_list("value", flat=True))
    assert phones == {"+12125550101", "+13105550102", "+5511955000103"}
    ana = ContactIdentity.objects.get(value="+12125550101").contact
    assert (ana.profile_name, ana.consent) == ("Ana Lima", Contact.Consent.OPTED_IN)
    assert ConsentEvent.objects.get(contact=ana).detail == "Spring list: web form 2026-11-02"
    stopped.refresh_from_db()
    assert stopped.consent == Contact.Consent.OPTED_OUT  # a list never overrides a person's own stop
    assert audit_actions(AudienceImport.objects.get())[0][0] == "campaigns.audience_import"


def campaign_payload(meta, audience=None, **fields):
    template = MessageTemplate.objects.filter(provider=meta, name="spring_sale").first() or approved_template(meta)
    return {"name": "Spring", "provider": meta.pk, "audience": audience, "send_days": "0123456",
            "variants": [{"name": "A", "split_percent": 100, "template": template.pk,
                          "variables": {"body": {"1": "{contact.first_name}", "2": "{row.coupon}"}}}], **fields}


def test_a_campaign_from_a_list_is_written_launched_and_reported(api_client, meta, settings):
    settings.CAMPAIGN_BACKLOG_SECONDS = 100
    person(meta, "+13105550102", "Bob", consent=Contact.Consent.OPTED_OUT)
    audience = upload(api_client, meta, GOOD).json()["id"]
    created = api_client.post("/api/v1/campaigns/", campaign_payload(meta, audience), format="json")
    assert created.status_code == 201, created.content
    campaign = created.json()["id"]
    assert created.json()["status"] == "draft" and len(created.json()["variants"]) == 1

    launched = api_client.post(f"/api/v1/campaigns/{campaign}/launch/")
    assert launched.status_code == 200, launched.content
    assert launched.json()["campaign"]["status"] == "running" and launched.json()["result"] == 3
    refused(api_client.patch(f"/api/v1/campaigns/{campaign}/", {"name": "Renamed"}, format="json"), 409,
            "campaign_refused")
    dispatching.campaign_dispatch(campaign)
    texts = sorted(Message.objects.filter(purpose="campaign").values_list("text", flat=True))
    assert texts == ["Hi Ana, spring sale: SPRING-1 off today.", "Hi Carla, spring sale: SPRING-3 off today."]

    recipients = api_client.get(f"/api/v1/campaigns/{campaign}/recipients/?status=skipped").json()["results"]
    assert [(row["contact_name"], row["skip_reason"]) for row in recipients] == [("Bob", "opted out")]
    results = api_client.get(f"/api/v1/campaigns/{campaign}/results/").json()
    assert results["counts"]["queued"] == 2 and results["counts"]["skipped"] == 1
    exported = api_client.get(f"/api/v1/campaigns/{campaign}/recipients-csv/")
    assert exported.status_code == 200 and exported["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert {row["phone"]: row["status"] for row in rows} == {
        "+12125550101": "queued", "+13105550102": "skipped", "+5511955000103": "queued"}

    ana = ContactIdentity.objects.get(value="+12125550101").contact
    converted = api_client.post(f"/api/v1/campaigns/{campaign}/conversions/", {"contact": ana.pk}, format="json")
    assert converted.status_code == 200 and converted.json()["converted_at"]
    refused(api_client.post(f"/api/v1/campaigns/{campaign}/conversions/", {"contact": 999999}, format="json"), 404,
            "not_found")

    assert api_client.post(f"/api/v1/campaigns/{campaign}/pause/").json()["result"] == 2
    refused(api_client.post(f"/api/v1/campaigns/{campaign}/pause/"), 409, "campaign_refused")
    assert api_client.post(f"/api/v1/campaigns/{campaign}/resume/").status_code == 200
    cancelled = api_client.post(f"/api/v1/campaigns/{campaign}/cancel/").json()
    assert cancelled["campaign"]["status"] == "cancelled"
    assert CampaignRecipient.objects.filter(campaign_id=campaign, status="cancelled").count() == 2
    assert [action for action, _actor in audit_actions(Campaign.objects.get(pk=campaign))] == [
        "campaign.create", "campaign.launch", "campaign.pause", "campaign.resume", "campaign.cancel"]


def test_bad_campaigns_and_segments_get_readable_refusals(api_client, meta):
    body = refused(api_client.post("/api/v1/segments/", {"name": "Bad", "filters": {"langs": ["pt"]}},
                                   format="json"), 400, "invalid_request")
    assert "unknown filter" in body["detail"]
    segment = api_client.post("/api/v1/segments/", {"name": "Portuguese", "filters": {"languages": ["pt"]}},
                              format="json")
    assert segment.status_code == 201
    person(meta, "+5511955000001", language="pt_BR")
    assert api_client.get(f"/api/v1/segments/{segment.json()['id']}/count/").json()["matches"] == 1

    payload = campaign_payload(meta, send_days="89", default_time_zone="Mars/Olympus")
    body = refused(api_client.post("/api/v1/campaigns/", payload, format="json"), 400, "invalid_request")
    assert set(body["errors"]) == {"send_days", "default_time_zone"}
    draft = api_client.post("/api/v1/campaigns/", campaign_payload(meta), format="json").json()["id"]
    body = refused(api_client.post(f"/api/v1/campaigns/{draft}/launch/"), 409, "campaign_refused")
    assert "choose an audience" in body["detail"]
    refused(api_client.post(f"/api/v1/campaigns/{draft}/send-winner/", {"variant": 0}, format="json"), 400,
            "invalid_request")


def test_launching_needs_the_control_permission(meta):
    writer = token_client(user_with_perms("writer", "campaigns.add_campaign", "campaigns.view_campaign"))
    created = writer.post("/api/v1/campaigns/", campaign_payload(meta), format="json")
    assert created.status_code == 201
    refused(writer.post(f"/api/v1/campaigns/{created.json()['id']}/launch/"), 403, "permission_denied")


def test_two_rows_of_one_person_and_two_variants_of_one_name_are_refused(api_client, meta):
    ana = person(meta, "+12125550101", "Ana")
    ContactIdentity.objects.create(contact=ana, kind="phone", value="+12125550102")
    body = refused(upload(api_client, meta, "phone,opt_in\n+12125550101,web\n+12125550102,web\n"), 400,
                   "import_refused")
    assert body["rows"] == [{"line": 3, "reason": "the same person as line 2 (one contact has both numbers)"}]

    payload = campaign_payload(meta)
    payload["variants"] = [{**payload["variants"][0], "split_percent": 50}] * 2
    assert "a name of its own" in refused(api_client.post("/api/v1/campaigns/", payload, format="json"), 400,
                                          "invalid_request")["detail"]
    segment = api_client.post("/api/v1/segments/", {"name": "All", "filters": {}}, format="json").json()["id"]
    api_client.post("/api/v1/campaigns/", {**campaign_payload(meta), "segment": segment}, format="json")
    refused(api_client.delete(f"/api/v1/segments/{segment}/"), 409, "segment_in_use")
