"""What the assistant keeps for a user goes into the user's data export."""

import io
import json
import zipfile

import pytest

from assistant.models import Note, Task
from contacts.services.export import data_export_build, data_export_open, data_export_request

pytestmark = pytest.mark.django_db


def test_a_users_export_holds_their_tasks_notes_and_preferences(assistant_user, django_user_model):
    Task.objects.create(owner=assistant_user, title="Review marketing budget", priority="high")
    Note.objects.create(owner=assistant_user, text="call the printer", tags=["invoice"])
    other = django_user_model.objects.create_user("ben")
    Note.objects.create(owner=other, text="not Ana's")

    export = data_export_build(data_export_request(user=assistant_user).pk)
    with data_export_open(export) as stored:
        archive = zipfile.ZipFile(io.BytesIO(stored.read()))
    files = {name: archive.read(name) for name in archive.namelist()}

    [task] = json.loads(files["tasks.json"])
    assert (task["title"], task["priority"], task["status"]) == ("Review marketing budget", "high", "open")
    assert [note["text"] for note in json.loads(files["notes.json"])] == ["call the printer"]
    assert json.loads(files["assistant_preferences.json"])[0]["time_zone"] == "Europe/Madrid"
    manifest = json.loads(files["manifest.json"])
    assert (manifest["counts"]["tasks"], manifest["counts"]["notes"]) == (1, 1)
