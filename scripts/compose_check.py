#!/usr/bin/env python3
"""
Checks docker-compose.yml as Docker Compose renders it (`config`, no engine needed):

- every setting in `.env` reaches web, worker, beat and migrate, not only the ones the file names;
- a one-shot `migrate` service runs first: web, worker and beat wait until it completed successfully;
- web, worker and beat have health checks;
- INTERNAL_BASE_URL names the web service at the port it serves, so workers post the simulators'
  webhooks to it (PUBLIC_BASE_URL may be localhost, inside a worker's container the worker itself);
- no password is written in the file: PostgreSQL's comes from POSTGRES_PASSWORD, which is required, and
  DATABASE_URL is built from it;
- the file documents how to mount a GCS key file (GCS_CREDENTIALS_FILE).

Usage: python3 scripts/compose_check.py PATH_TO_DOCKER_COMPOSE_BINARY
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
APP_SERVICES = ("migrate", "web", "worker", "ai-worker", "beat")
DOT_ENV = {
    "POSTGRES_PASSWORD": "pw-from-dot-env",
    "DJANGO_SECRET_KEY": "check-secret",
    "FIELD_ENCRYPTION_KEYS": "check-keys",
    # A setting docker-compose.yml does not name: it must reach the containers all the same.
    "OPENAI_MODEL": "model-from-dot-env",
}


def render(compose: str, folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    # Only PATH and HOME from outside: the caller's own variables must not stand in for .env.
    return subprocess.run([compose, "-f", str(folder / "docker-compose.yml"), "config", "--format", "json"],
                          cwd=folder, capture_output=True, text=True, check=False,
                          env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/"), **env})


def main() -> int:
    compose = sys.argv[1]
    problems: list[str] = []
    text = (REPO / "docker-compose.yml").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy(REPO / "docker-compose.yml", folder)
        shutil.copy(REPO / "Dockerfile", folder)

        missing = render(compose, folder, {key: value for key, value in DOT_ENV.items() if key != "POSTGRES_PASSWORD"})
        if missing.returncode == 0 or "POSTGRES_PASSWORD" not in missing.stderr:
            problems.append("compose renders without POSTGRES_PASSWORD (it must be required)")

        (folder / ".env").write_text("".join(f"{key}={value}\n" for key, value in DOT_ENV.items()))
        result = render(compose, folder, {})
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr)
            return 1
        services = json.loads(result.stdout)["services"]

    for name in APP_SERVICES:
        service = services.get(name)
        if service is None:
            problems.append(f"no {name} service")
            continue
        environment = service.get("environment") or {}
        if environment.get("OPENAI_MODEL") != DOT_ENV["OPENAI_MODEL"]:
            problems.append(f"{name}: a setting from .env (OPENAI_MODEL) does not reach it")
        if DOT_ENV["POSTGRES_PASSWORD"] not in environment.get("DATABASE_URL", ""):
            problems.append(f"{name}: DATABASE_URL is not built from POSTGRES_PASSWORD")
        if name != "migrate":
            condition = (service.get("depends_on") or {}).get("migrate", {}).get("condition")
            if condition != "service_completed_successfully":
                problems.append(f"{name}: does not wait for migrate to complete (condition {condition!r})")
            if not service.get("healthcheck", {}).get("test"):
                problems.append(f"{name}: no health check")
        internal = urlsplit(environment.get("INTERNAL_BASE_URL", ""))
        web_ports = {int(port.get("target", 0)) for port in (services.get("web") or {}).get("ports") or []}
        if internal.hostname != "web" or internal.port not in web_ports:
            problems.append(f"{name}: INTERNAL_BASE_URL ({internal.geturl()!r}) is not the web service's port")
    if "migrate" in services:
        if "migrate" not in " ".join(services["migrate"].get("command") or []):
            problems.append("migrate: does not run the migrations")
        if services["migrate"].get("restart") not in (None, "no"):
            problems.append("migrate: a one-shot service must not restart")
    if services.get("postgres", {}).get("environment", {}).get("POSTGRES_PASSWORD") != DOT_ENV["POSTGRES_PASSWORD"]:
        problems.append("postgres: its password does not come from POSTGRES_PASSWORD")
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        if "PASSWORD:" in code and "${" not in code:
            problems.append(f"a password is written in the file: {line.strip()}")
    if "GCS_CREDENTIALS_FILE" not in text:
        problems.append("no documented GCS key file mount (GCS_CREDENTIALS_FILE)")

    for problem in problems:
        print(f"docker-compose.yml: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
