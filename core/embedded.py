"""
The embedded defaults (SQLite, the filesystem broker) keep their files under VAR_DIR. Their folders are
made when a process starts (app loading, a worker or beat starting), never by importing the settings.
"""

from pathlib import Path

from django.conf import settings

BROKER_FOLDER_OPTIONS = ("data_folder_in", "data_folder_out", "control_folder")


def embedded_dirs_create() -> None:
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3" and str(database["NAME"]) != ":memory:":
        Path(database["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {}
    for option in BROKER_FOLDER_OPTIONS:
        if option in options:
            Path(options[option]).mkdir(parents=True, exist_ok=True)
