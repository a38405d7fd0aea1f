"""The campaign pages in the admin: a draft written with its variant, launched, paused, resumed and cancelled by
its buttons, its live progress, results and CSV; lists imported from the admin; segments checked on save."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from campaigns.models import AudienceImport, Campaign, CampaignRecipient, Segment
from campaigns.services import dispatch as dispatching
from tests.campaigns.conftest import NEW_YORK, approved_template, people
from tests.conftest import audit_actions, page

pytestmark = pytest.mark.django_db


def draft_form(meta, segment, template, **fields):
    return {"name": "Spring", "provider": meta.pk, "segment": segment.pk, "audience": "", "start_at_0": "",
            "start_at_1": "", "recurrence": "once", "recurrence_until_0": "", "recurrence_until_1": "",
            "send_window_start": "09:00", "send_window_end": "20:00", "send_days": ["0", "1", "2", "3", "4"],
            "default_time_zone": "", "holdout_percent": "0", "test_percent": "100", "conversion_keyword": "YES",
            "sms_fallback_provider": "", "sms_fallback_text": "", "sms_fallback_after_minutes": "",
            "variants-TOTAL_FORMS": "1", "variants-INITIAL_FORMS": "0", "variants-MIN_NUM_FORMS": "1",
            "variants-MAX_NUM_FORMS": "1000", "variants-0-name": "A", "variants-0-split_percent": "100",
            "variants-0-template": template.pk,
            "variants-0-variables": '{"body": {"1": "{contact.first_name|there}", "2": "20%"}}',
            "variants-0-text": "", **fields}


def test_a_draft_written_in_the_admin_is_previewed_launched_paused_resumed_and_cancelled(admin_client_logged, meta,
                                                                                        settings):
    settings.CAMPAIGN_BACKLOG_SECONDS = 100
    people(meta, NEW_YORK, 3)
    segment = Segment.objects.create(name="Everyone", filters={})
    template = approved_template(meta)
    added = admin_client_logged.post(reverse("admin:campaigns_campaign_add"), draft_form(meta, segment, template))
    assert added.status_code == 302, page(added)
    campaign = Campaign.objects.get()
    assert (campaign.send_days, campaign.variants.get().name) == ("01234", "A")
    change = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    draft_page = page(admin_client_logged.get(change))
    assert "Hi Person, spring sale: 20% off today." in draft_page and ">Launch</button>" in draft_page

    admin_client_logged.post(reverse("admin:campaigns_campaign_launch", args=[campaign.pk]))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.RUNNING and CampaignRecipient.objects.count() == 3
    running = page(admin_client_logged.get(change))
    assert "Progress" in running and ">Pause</button>" in running and "Results per variant" in running
    progress = admin_client_logged.get(reverse("admin:campaigns_campaign_progress", args=[campaign.pk])).json()
    assert progress["status"] == "running" and progress["counts"]["recipients"] == 3

    dispatching.campaign_dispatch(campaign.pk)
    admin_client_logged.post(reverse("admin:campaigns_campaign_pause", args=[campaign.pk]))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    admin_client_logged.post(reverse("admin:campaigns_campaign_resume", args=[campaign.pk]))
    admin_client_logged.post(reverse("admin:campaigns_campaign_cancel", args=[campaign.pk]))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED
    refusal = admin_client_logged.post(reverse("admin:campaigns_campaign_pause", args=[campaign.pk]), follow=True)
    assert "Not done: only a running campaign can be paused" in page(refusal)
    exported = admin_client_logged.get(reverse("admin:campaigns_campaign_csv", args=[campaign.pk]))
    assert b"".join(exported.streaming_content).decode().count("\n") == 4
    assert [action for action, _who in audit_actions(campaign)] == [
        "campaign.create", "campaign.launch", "campaign.pause", "campaign.resume", "campaign.cancel"]
    assert admin_client_logged.get(reverse("admin:campaigns_campaignrecipient_changelist")).status_code == 200
    assert admin_client_logged.get(reverse("admin:campaigns_campaign_changelist")).status_code == 200


def test_an_operator_without_the_control_permission_cannot_launch(operator_client, meta):
    campaign = Campaign.objects.create(name="Spring", provider=meta)
    response = operator_client.post(reverse("admin:campaigns_campaign_launch", args=[campaign.pk]))
    assert response.status_code in (302, 403)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_a_list_with_bad_rows_imported_from_the_admin_shows_each_refused_line(admin_client_logged, meta):
    upload = SimpleUploadedFile("list.csv", b"phone,name,opt_in\n+12125550101,Ana,web\nnope,Bob,web\n")
    response = admin_client_logged.post(reverse("admin:campaigns_audienceimport_add"), {
        "name": "List", "provider": meta.pk, "file": upload, "require_opt_in": "on"}, follow=True)
    shown = page(response)
    assert "Nothing imported: 1 bad row(s)" in shown and "not a phone number" in shown
    assert AudienceImport.objects.get().status == AudienceImport.Status.REFUSED


def test_a_segment_with_an_unknown_filter_is_refused_with_the_reason(admin_client_logged):
    response = admin_client_logged.post(reverse("admin:campaigns_segment_add"), {
        "name": "Bad", "description": "", "filters": '{"langs": ["pt"]}'})
    assert response.status_code == 200 and "unknown filter(s): langs" in page(response)
    assert not Segment.objects.exists()
