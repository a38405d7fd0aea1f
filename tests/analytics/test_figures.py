"""The figures as the API and the dashboard give them: equal to the rollups, filtered, as CSV too."""

import csv
import io
import time

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from analytics.services.rollups import counts_squash
from tests.conftest import json_body, token_client, user_with_perms
from whatsapp.models import Message
from whatsapp.services.outbound import message_send_text
from whatsapp.services.providers import provider_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def traffic(say, sandbox_provider, superuser):
    """Three customers write (one of them twice); two get an answer, one of which is read."""
    contacts = [say(f"+3460030000{n}", "hello", at=time.time() - 120) for n in range(3)]
    say("+34600300000", "anyone there?")
    for contact in contacts[:2]:
        message_send_text(provider=sandbox_provider, contact=contact, text="Here!", actor=superuser)
    now = timezone.now()
    Message.objects.filter(direction="outbound").update(status="sent", sent_at=now)
    first = Message.objects.filter(direction="outbound").order_by("pk").first()
    first.status, first.delivered_at, first.read_at = "read", now, now
    first.save(update_fields=["status", "delivered_at", "read_at"])
    return sandbox_provider


def _reader():
    return token_client(user_with_perms("analyst", "analytics.view_hourlycount"))


def test_summary_series_and_funnel_agree_with_each_other(traffic):
    client = _reader()
    summary = json_body(client.get("/api/v1/analytics/summary/"))["rows"][0]
    assert (summary["received"], summary["sent"], summary["delivered"], summary["read"]) == (4, 2, 1, 1)
    assert summary["contacts"] == 3 and summary["new_contacts"] == 3 and summary["first_responses"] == 2
    assert summary["delivery_rate"] == 0.5 and summary["read_rate"] == 1.0
    assert summary["first_response_avg_seconds"] == pytest.approx(120, abs=10)

    answer = json_body(client.get("/api/v1/analytics/series/", {"grain": "hour"}))
    assert answer["filters"]["grain"] == "hour" and len(answer["rows"]) == 24
    assert sum(row["received"] for row in answer["rows"]) == 4
    assert sum(row["sent"] for row in answer["rows"]) == 2
    funnel = {row["step"]: row["count"] for row in json_body(client.get("/api/v1/analytics/funnel/"))["rows"]}
    assert funnel == {"sent": 2, "delivered": 1, "read": 1, "failed": 0}

    # Folded into the hourly rows, the answers stay the same.
    counts_squash()
    assert json_body(client.get("/api/v1/analytics/summary/"))["rows"][0] == summary


def test_a_provider_filter_keeps_only_its_figures(traffic):
    other = provider_create(kind="sandbox", name="Other sandbox", options={})
    client = _reader()
    mine = json_body(client.get("/api/v1/analytics/summary/", {"provider": traffic.pk}))["rows"][0]
    theirs = json_body(client.get("/api/v1/analytics/summary/", {"provider": other.pk}))["rows"][0]
    assert mine["received"] == 4 and theirs["received"] == 0


def test_every_figure_downloads_as_csv(traffic):
    client = _reader()
    response = client.get("/api/v1/analytics/series/", {"format": "csv", "grain": "day"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 7 and sum(int(row["received"]) for row in rows) == 4
    for figure in ("summary", "funnel", "errors", "templates", "intents", "sentiments", "message-types",
                   "attention"):
        assert client.get(f"/api/v1/analytics/{figure}/", {"format": "csv"}).status_code == 200, figure
    attention = {row["figure"]: row["value"] for row in json_body(client.get("/api/v1/analytics/attention/"))["rows"]}
    assert attention["unmapped_contacts"] == 3 and attention["oldest_queued_seconds"] is None
    types = list(csv.DictReader(io.StringIO(client.get("/api/v1/analytics/message-types/",
                                                       {"format": "csv"}).content.decode())))
    assert types == [{"message_type": "text", "received": "4", "sent": "2"}]


@pytest.mark.parametrize("query, reason", [
    ({"grain": "month"}, "grain must be one of hour, day, week"),
    ({"since": "yesterday"}, "since must be a date"),
    ({"since": "2026-05-02", "until": "2026-05-01"}, "since must be before until"),
    ({"grain": "hour", "since": "2025-01-01"}, "a hour grain covers at most"),
    ({"provider": "abc"}, "provider must be a provider id"),
    ({"provider": "999999"}, "there is no provider 999999"),
])
def test_a_filter_that_cannot_be_answered_gets_a_reason(query, reason):
    response = _reader().get("/api/v1/analytics/series/", query)
    assert response.status_code == 400
    assert json_body(response)["code"] == "invalid_filter" and reason in json_body(response)["detail"]


def test_the_figures_need_the_analytics_permission(traffic):
    assert token_client(user_with_perms("nobody")).get("/api/v1/analytics/summary/").status_code == 403
    assert _reader().get("/api/v1/analytics/summary/").status_code == 200


def test_the_admin_index_opens_with_the_dashboard(admin_client_logged, traffic):
    page = admin_client_logged.get(reverse("admin:index"), {"grain": "hour"})
    html = page.content.decode()
    assert page.status_code == 200 and 'id="wa-dashboard-data"' in html and "chart-volume" in html
    charts = page.context["dashboard"]["charts"]
    assert sum(row["received"] for row in charts["series"]) == 4
    tiles = {tile["key"]: tile["value"] for tile in page.context["dashboard"]["attention"]}
    assert tiles["unmapped_contacts"] == 3 and tiles["dead_letters"] == 0
    # The messaging pages come first, the scheduler and accounts after them.
    labels = [app["app_label"] for app in page.context["app_list"]]
    assert labels[:3] == ["whatsapp", "contacts", "templates_app"] and labels.index("auth") > labels.index("whatsapp")
    # A bad filter: the reason, and the default range instead of an error page.
    page = admin_client_logged.get(reverse("admin:index"), {"since": "soon"})
    assert page.status_code == 200 and "since must be a date" in page.content.decode()


def test_staff_without_the_permission_see_the_plain_index(client):
    user = get_user_model().objects.create_user("plain", password="pw-123456-strong", is_staff=True)
    client.force_login(user)
    page = client.get(reverse("admin:index"))
    assert page.status_code == 200 and "wa-dashboard-data" not in page.content.decode()


@pytest.mark.parametrize("until", ["9999-12-31", "0001-01-01"])
def test_dates_out_of_range_are_refused_not_crashed_on(until, admin_client_logged):
    response = _reader().get("/api/v1/analytics/summary/", {"until": until})
    assert response.status_code == 400 and "between the years" in json_body(response)["detail"]
    page = admin_client_logged.get(reverse("admin:index"), {"until": until})
    assert page.status_code == 200 and "between the years" in page.content.decode()
