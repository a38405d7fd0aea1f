"""The README's run command, started from a clean copy of the repository, answers /health/ with 200."""

import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import REPO_ROOT, free_port

pytestmark = pytest.mark.slow

# Variables that would take the run command off its embedded defaults.
SERVICE_VARIABLES = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "VAR_DIR", "GCS_PROJECT",
                     "STORAGE_BACKEND", "DJANGO_SETTINGS_MODULE", "PUBLIC_BASE_URL", "DJANGO_SECRET_KEY",
                     "FIELD_ENCRYPTION_KEYS")


def _clean_copy(target):
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        source = REPO_ROOT / name
        if source.is_file():
            destination = target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


def _health(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/", timeout=3) as response:
            return response.status, response.read().decode()
    except OSError:
        return None, ""


def test_run_command_serves_health_from_a_clean_directory(tmp_path):
    checkout = tmp_path / "checkout"
    _clean_copy(checkout)
    assert not (checkout / ".venv").exists() and not (checkout / "var").exists()
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}
    env["PORT"] = str(port)
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(["bash", "scripts/run.sh"], cwd=checkout, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 420  # creates a virtualenv and installs everything first
        status, body = None, ""
        while time.monotonic() < deadline and process.poll() is None:
            status, body = _health(port)
            if status == 200:
                break
            time.sleep(2)
        output = (tmp_path / "run.log").read_text(errors="replace")
        assert status == 200, f"exit={process.poll()} body={body}\n{output[-4000:]}"
        assert '"database": {"status": "ok"}' in body
        deadline = time.monotonic() + 30
        banner = f"Admin:      http://127.0.0.1:{port}/admin/"
        while banner not in output and time.monotonic() < deadline:
            time.sleep(1)
            output = (tmp_path / "run.log").read_text(errors="replace")
        assert banner in output and "Demo login: admin / whatsapp-demo" in output, output[-4000:]
        assert (checkout / "var" / "db.sqlite3").exists()  # embedded defaults: SQLite under var/
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
