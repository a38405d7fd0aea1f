"""What a deployment depends on besides the code: the API docs work offline, hosts follow the public
URL, gunicorn's threads, docker-compose.yml's shape."""

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser

import pytest

from tests.conftest import REPO_ROOT, free_port, wait_until


class _AssetLinks(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        self.urls += [value for name, value in attrs if name == wanted and value]


@pytest.mark.django_db
def test_swagger_ui_loads_only_our_own_static_files(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    links = _AssetLinks()
    links.feed(page)
    assert any(url.endswith("swagger-ui-bundle.js") for url in links.urls), links.urls
    assert "cdn." not in page and "unpkg" not in page
    for url in links.urls:
        # Without internet the page must still render: every asset is ours, and served. The start-up script
        # comes from the page's own address (?script), as the content security policy refuses inline ones.
        assert url.startswith("/static/") or url == "/api/docs/?script=", url
        asset = client.get(url)
        assert asset.status_code == 200, url
        asset.close()


def _settings_in_subprocess(env: dict, *names: str) -> list[str]:
    """Settings as a fresh process reads them from this environment (they are computed at import)."""
    code = "import sys; from config import settings; [print(repr(getattr(settings, n))) for n in sys.argv[1:]]"
    base = {key: value for key, value in os.environ.items()
            if key not in {"ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "PUBLIC_BASE_URL", "INTERNAL_BASE_URL"}}
    result = subprocess.run([sys.executable, "-c", code, *names], cwd=REPO_ROOT, env={**base, **env},
                            capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.splitlines()


def test_allowed_hosts_and_csrf_origins_follow_public_base_url():
    hosts, origins = _settings_in_subprocess({"PUBLIC_BASE_URL": "https://wa.example.com/"},
                                             "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS")
    assert hosts == repr(["localhost", "127.0.0.1", "[::1]", "wa.example.com"])
    assert origins == repr(["https://wa.example.com"])


def test_public_base_url_with_a_port_gives_its_host_name():
    (hosts,) = _settings_in_subprocess({"PUBLIC_BASE_URL": "http://10.0.0.5:8080"}, "ALLOWED_HOSTS")
    assert hosts == repr(["localhost", "127.0.0.1", "[::1]", "10.0.0.5"])


def test_internal_base_url_defaults_to_the_public_one_and_its_host_is_served():
    internal, hosts, origins = _settings_in_subprocess(
        {"PUBLIC_BASE_URL": "https://wa.example.com", "INTERNAL_BASE_URL": "http://web:8000/"},
        "INTERNAL_BASE_URL", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS")
    assert internal == repr("http://web:8000")
    assert hosts == repr(["localhost", "127.0.0.1", "[::1]", "wa.example.com", "web"])
    assert origins == repr(["https://wa.example.com"])  # workers post webhooks, not admin forms
    (internal,) = _settings_in_subprocess({"PUBLIC_BASE_URL": "https://wa.example.com/"}, "INTERNAL_BASE_URL")
    assert internal == repr("https://wa.example.com")


def test_allowed_hosts_and_csrf_origins_set_explicitly_win():
    hosts, origins = _settings_in_subprocess(
        {"PUBLIC_BASE_URL": "https://wa.example.com", "ALLOWED_HOSTS": "internal.example",
         "CSRF_TRUSTED_ORIGINS": "https://admin.example"},
        "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS")
    assert hosts == repr(["internal.example"])
    assert origins == repr(["https://admin.example"])


def test_gunicorn_uses_threads_so_an_idle_keep_alive_connection_does_not_block_a_worker(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("GUNICORN_THREADS", "5")
    # Loaded the way gunicorn loads it (-c config/gunicorn.py): a file, not a module of a package.
    spec = importlib.util.spec_from_file_location("gunicorn_conf", REPO_ROOT / "config" / "gunicorn.py")
    config = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(config)
    assert config.worker_class == "gthread"
    assert (config.workers, config.threads) == (3, 5)
    assert '"correlation_id"' in config.access_log_format


@pytest.mark.slow
def test_an_idle_connection_does_not_hold_the_only_web_worker(tmp_path):
    """A browser's idle keep-alive connection (here: one that sends nothing) must not keep the next
    request waiting: with sync workers it held the worker until its timeout."""
    port = free_port()
    env = {**os.environ, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "2",
           "VAR_DIR": str(tmp_path)}
    log_path = tmp_path / "web.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "config.wsgi:application", "-c",
                                    "config/gunicorn.py"], cwd=REPO_ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _answers(port, timeout=2) or process.poll() is not None, 30, message="gunicorn")
        assert process.poll() is None, log_path.read_text()
        with socket.create_connection(("127.0.0.1", port)) as idle:
            idle.sendall(b"GET /health/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the request never completes
            started = time.monotonic()
            assert _answers(port, timeout=8), log_path.read_text()[-2000:]
            assert time.monotonic() - started < 8
    finally:
        process.terminate()
        process.wait(timeout=20)


def _answers(port: int, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/schema/", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # any status: the server answered
    except (urllib.error.URLError, OSError):
        return False


@pytest.mark.parametrize(("variables", "complaint"), [
    ({"DJANGO_SECRET_KEY": ""}, "DJANGO_SECRET_KEY is not set"),
    ({"DJANGO_SECRET_KEY": "django-insecure-" + "x" * 60}, "DJANGO_SECRET_KEY is insecure"),
    ({"DJANGO_SECRET_KEY": "short-but-random-3f9a"}, "DJANGO_SECRET_KEY is insecure"),
    ({"FIELD_ENCRYPTION_KEYS": ""}, "FIELD_ENCRYPTION_KEYS is not set"),
])
def test_production_settings_refuse_missing_or_insecure_keys(variables, complaint):
    env = {**os.environ, "DJANGO_DEBUG": "false", **variables}
    result = subprocess.run([sys.executable, "-c", "from config import settings"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and complaint in result.stderr, result.stderr[-2000:]


def test_development_settings_load_without_keys():
    env = {key: value for key, value in os.environ.items()
           if key not in {"DJANGO_SECRET_KEY", "FIELD_ENCRYPTION_KEYS"}}
    code = "from config import settings; print(settings.SECRET_KEY)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env={**env, "DJANGO_DEBUG": "true"},
                            capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip().startswith("django-insecure")
