"""requirements.txt alone (what the image installs) must bring every package that production imports:
the web server, the worker on a Redis broker, beat, and the storage backends. A library that imports a
package it does not declare (kombu's Redis transport and `packaging`) is caught here, because the test
environment would otherwise bring the package through a test tool and hide the gap."""

import json
import os
import re
import subprocess
import sys
from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO_ROOT

# What the three processes load beyond `django.setup()`: some of it only when a setting picks it (the
# Redis transport, the GCS backend) or when a worker starts (gthread, prefork, the beat scheduler).
RUNTIME_MODULES = [
    "config.celery", "config.wsgi", "config.urls",
    "kombu.transport.redis", "celery.concurrency.prefork", "celery.apps.worker", "celery.apps.beat",
    "django_celery_beat.schedulers", "gunicorn.app.wsgiapp", "gunicorn.workers.gthread",
    "whitenoise.middleware", "whitenoise.storage", "drf_spectacular_sidecar",
    "google.cloud.storage", "google.api_core.exceptions", "google.auth.credentials", "requests",
    "twilio.rest", "openai", "psycopg", "redis",
]

# Run in a fresh interpreter (this one already holds pytest's imports) where every installed distribution
# that requirements.txt does not bring cannot be imported, as if it were not installed. Optional imports
# (`try: import rich`) then fall back as they would in production; a required one fails the probe.
PROBE = """
import importlib, json, os, pkgutil, sys
from importlib import metadata
from importlib.machinery import PathFinder
from pathlib import Path

blocked = set(json.loads(os.environ["UNDECLARED_DISTRIBUTIONS"]))
owners = {}
for dist in metadata.distributions():
    for file in dist.files or ():
        owners[str(Path(dist.locate_file(file)).resolve())] = dist.metadata["Name"]


class NotInstalled:
    def find_spec(self, fullname, path=None, target=None):
        spec = PathFinder.find_spec(fullname, path)
        owner = spec and spec.origin and owners.get(str(Path(spec.origin).resolve()))
        if owner in blocked:
            raise ModuleNotFoundError(f"{fullname} (distribution {owner}) is not brought by requirements.txt",
                                      name=fullname)
        return None


sys.meta_path.insert(0, NotInstalled())
import django
django.setup()
for package in ("config", "whatsapp", "contacts", "templates_app", "analytics", "monitoring"):
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        importlib.import_module(info.name)
for name in sys.argv[1:]:
    importlib.import_module(name)
print("imported", len(sys.modules), "modules")
"""


def _declared_closure() -> set[str]:
    """Every distribution requirements.txt brings: its pins and what they declare, recursively."""
    pending: list[tuple[str, set[str]]] = []
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            pending.append((requirement.name, set(requirement.extras)))
    seen: set[str] = set()
    while pending:
        name, extras = pending.pop()
        key = canonicalize_name(name)
        if key in seen:
            continue
        seen.add(key)
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            wanted = requirement.marker is None or any(
                requirement.marker.evaluate({**default_environment(), "extra": extra}) for extra in extras | {""})
            if wanted:
                pending.append((requirement.name, set(requirement.extras)))
    return seen


def test_requirements_txt_brings_every_package_production_imports():
    declared = _declared_closure()
    installed = {dist.metadata["Name"] for dist in metadata.distributions()}
    undeclared = sorted(name for name in installed if canonicalize_name(name) not in declared)
    assert "pytest" in undeclared and "Django" not in undeclared
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONPATH": str(REPO_ROOT),
           "REDIS_URL": "redis://127.0.0.1:6379/15", "UNDECLARED_DISTRIBUTIONS": json.dumps(undeclared)}
    result = subprocess.run([sys.executable, "-c", PROBE, *RUNTIME_MODULES], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "imported" in result.stdout


def test_requirements_are_pinned():
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[a-z,]+\])?==[0-9][A-Za-z0-9.]*", line), line
