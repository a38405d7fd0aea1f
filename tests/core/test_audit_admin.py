"""An audit entry's page: one table of what changed, the rest folded away, nested values as text."""

import re

import pytest
from django.urls import reverse

from core.admin.changes import audit_changes_html
from core.audit import audit_record
from tests.conftest import page

pytestmark = pytest.mark.django_db


def rows(html: str) -> list[tuple[str, ...]]:
    """Each body row of the tables: its class, then its cells' text."""
    found = []
    for row_class, cells in re.findall(r'<tr class="([^"]*)">(.*?)</tr>', html, re.S):
        texts = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", cells, re.S)]
        found.append((row_class, *texts))
    return found


def test_a_change_shows_the_changed_fields_first_and_folds_the_rest():
    before = {"name": "Shop", "rate_limit_per_second": 80, "is_paused": False, "kind": "meta",
              "config": {"base_url": "https://a.example.com", "hosts": ["a", "b"]}}
    after = {**before, "rate_limit_per_second": 20, "is_paused": True,
             "config": {"base_url": "https://b.example.com", "hosts": ["a", "b"]}, "notes": [{"by": "ops", "n": 1}]}
    html = str(audit_changes_html(before, after))

    changed_table, unchanged = html.split("<details", 1)
    assert rows(changed_table) == [
        ("audit-changed", "rate limit per second", "80", "20"),
        ("audit-changed", "is paused", "no", "yes"),
        ("audit-changed", "config › base url", "https://a.example.com", "https://b.example.com"),
        ("audit-changed", "notes", "not set", "by: ops; n: 1"),
    ]
    assert "<summary>3 unchanged fields</summary>" in unchanged
    assert rows(unchanged) == [("", "name", "Shop", "Shop"), ("", "kind", "meta", "meta"),
                               ("", "config › hosts", "a, b", "a, b")]
    assert "{" not in html and "'" not in html  # no dict or list literals


def test_a_creation_or_a_deletion_shows_its_one_side():
    created = str(audit_changes_html({}, {"name": "Shop", "phone": None}))
    assert "<th scope=\"col\">After</th>" in created and "Before" not in created
    assert rows(created) == [("", "name", "Shop"), ("", "phone", "empty")]
    deleted = str(audit_changes_html({"name": "Shop"}, {}))
    assert "<th scope=\"col\">Before</th>" in deleted and rows(deleted) == [("", "name", "Shop")]
    assert "No values were recorded" in str(audit_changes_html({}, {}))


def test_the_audit_entry_page_shows_the_table_and_links_the_object(admin_client_logged, sandbox_provider):
    entry = audit_record(action="admin.change", obj=sandbox_provider, actor=None,
                         before={"name": "Old name", "kind": "sandbox"},
                         after={"name": "Sandbox test", "kind": "sandbox"})
    html = page(admin_client_logged.get(reverse("admin:whatsapp_auditlog_change", args=[entry.pk])))
    assert ("audit-changed", "name", "Old name", "Sandbox test") in rows(html)
    assert "1 unchanged field" in html
    assert reverse("admin:whatsapp_provider_change", args=[sandbox_provider.pk]) in html
    assert "core/admin.css" in html

    listing = page(admin_client_logged.get(reverse("admin:whatsapp_auditlog_changelist")))
    assert "Provider: Sandbox test (Sandbox (local simulator))" in listing


def test_an_empty_setting_that_gets_values_shows_only_the_values():
    before, after = {"config": {}, "name": "Shop"}, {"config": {"base_url": "https://x"}, "name": "Shop"}
    html = str(audit_changes_html(before, after))
    assert rows(html.split("<details", 1)[0]) == [("audit-changed", "config › base url", "not set", "https://x")]
