"""
Response headers on every kind of answer (admin pages, the API, its docs, webhooks, health), a fresh
script nonce per response, and the endpoint where browsers report what the policy blocked.
"""

import json
import logging
import re
import secrets

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.template import engines
from django.test import Client, RequestFactory

from core.security_headers import SecurityHeadersMiddleware, content_security_policy
from monitoring.csp_reports import MAX_REPORT_BYTES
from tests.conftest import json_body

CSP = "Content-Security-Policy"
CSP_REPORT_ONLY = "Content-Security-Policy-Report-Only"


def directives(response, header: str = CSP) -> dict[str, list[str]]:
    policy = {}
    for part in response[header].split(";"):
        name, *sources = part.split()
        policy[name] = sources
    return policy


def script_nonce(response) -> str:
    (nonce,) = [source[len("'nonce-"):-1] for source in directives(response)["script-src"]
                if source.startswith("'nonce-")]
    return nonce


def assert_security_headers(response) -> None:
    policy = directives(response)
    assert policy["default-src"] == ["'self'"]
    assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", script_nonce(response))
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"] and policy["form-action"] == ["'self'"]
    assert policy["report-uri"] == ["/csp-report/"]
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "camera=()" in response["Permissions-Policy"]
    assert "microphone=()" in response["Permissions-Policy"]


@pytest.mark.parametrize("path", ["/admin/", "/admin/whatsapp/", "/admin/whatsapp/conversation/",
                                  "/api/v1/", "/api/docs/", "/api/docs/?script=", "/api/schema/"])
def test_pages_carry_the_policy(admin_client_logged, path):
    response = admin_client_logged.get(path)
    assert response.status_code == 200, path
    assert_security_headers(response)


def test_api_answers_to_token_clients_carry_the_policy(api_client):
    response = api_client.get("/api/v1/contacts/")
    assert response.status_code == 200
    assert_security_headers(response)


def test_webhook_and_health_answers_carry_the_policy(sandbox_provider, post_sandbox, client):
    webhook = post_sandbox(sandbox_provider, b'{"events": []}')
    assert webhook["Content-Type"].startswith("application/json")
    assert_security_headers(webhook)
    assert_security_headers(client.get("/health/"))


def test_the_login_page_and_an_error_page_carry_the_policy(client, db):
    assert_security_headers(client.get("/admin/login/"))
    assert_security_headers(client.get("/no-such-page/"))


def test_every_response_has_a_nonce_of_its_own(admin_client_logged):
    nonces = {script_nonce(admin_client_logged.get("/admin/")) for _ in range(5)}
    assert len(nonces) == 5


def test_swagger_ui_has_no_inline_script(admin_client_logged):
    page = admin_client_logged.get("/api/docs/").content.decode()
    scripts = re.findall(r"<script([^>]*)>", page)
    assert scripts and all("src=" in attributes for attributes in scripts), scripts
    assert 'src="/api/docs/?script="' in page
    init = admin_client_logged.get("/api/docs/?script=")
    assert init["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle(" in init.content


def test_the_nonce_reaches_templates():
    template = engines["django"].from_string('<script nonce="{{ csp_nonce }}">start()</script>')
    middleware = SecurityHeadersMiddleware(lambda request: HttpResponse(template.render({}, request)))
    response = middleware(RequestFactory().get("/"))
    assert response.content.decode() == f'<script nonce="{script_nonce(response)}">start()</script>'


def test_report_only_mode_sends_the_other_header(client, db, settings):
    settings.CSP_REPORT_ONLY = True
    response = client.get("/admin/login/")
    assert CSP not in response
    assert "'nonce-" in response[CSP_REPORT_ONLY]


def test_configured_sources_are_sent(settings):
    settings.CSP_DIRECTIVES = {**settings.CSP_DIRECTIVES, "img-src": ["'self'", "https://storage.googleapis.com"]}
    response = SecurityHeadersMiddleware(lambda request: HttpResponse())(RequestFactory().get("/"))
    assert "img-src 'self' https://storage.googleapis.com;" in response[CSP]


def test_a_response_keeps_a_policy_of_its_own():
    own = SecurityHeadersMiddleware(lambda request: _with_header(CSP, "default-src 'none'; sandbox"))
    assert own(RequestFactory().get("/"))[CSP] == "default-src 'none'; sandbox"


def _with_header(name: str, value: str) -> HttpResponse:
    response = HttpResponse()
    response[name] = value
    return response


@pytest.mark.parametrize("source", ["https://a.example.com; script-src *", "https://a.example.com https://b", ""])
def test_a_malformed_source_is_refused(source):
    with pytest.raises(ImproperlyConfigured):
        content_security_policy({"img-src": ["'self'", source]}, nonce="n")


# --- the report endpoint ------------------------------------------------------------------------------

CSP_REPORT = {"csp-report": {
    "document-uri": "https://wa.example.com/admin/whatsapp/conversation/3/change/?token=secret#frag",
    "referrer": "", "violated-directive": "script-src-elem", "effective-directive": "script-src-elem",
    "original-policy": "default-src 'self'", "disposition": "enforce",
    "blocked-uri": "https://user:hunter2@evil.example.net/x.js?session=abc", "line-number": 12,
    "source-file": "https://wa.example.com/static/a.js", "status-code": 200, "script-sample": ""}}
REPORTING_API_BATCH = [
    {"type": "csp-violation", "age": 3, "url": "https://wa.example.com/admin/", "user_agent": "Chrome",
     "body": {"documentURL": "https://wa.example.com/admin/", "effectiveDirective": "img-src",
              "blockedURL": "https://tracker.example.org/pixel.gif", "disposition": "report",
              "sourceFile": None, "lineNumber": None, "statusCode": 200, "sample": ""}},
    {"type": "deprecation", "age": 1, "url": "https://wa.example.com/admin/", "body": {"id": "x", "message": "m"}},
]


def post_report(client, body, content_type="application/csp-report", **extra):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/csp-report/", data=data, content_type=content_type, **extra)


def test_a_report_is_logged_without_query_strings(client, caplog):
    with caplog.at_level(logging.WARNING, logger="security.csp"):
        response = post_report(client, CSP_REPORT, HTTP_COOKIE="sessionid=top-secret")
    assert response.status_code == 204
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.document_uri == "https://wa.example.com/admin/whatsapp/conversation/3/change/"
    assert record.violated_directive == "script-src-elem"
    assert record.blocked_uri == "https://evil.example.net/x.js"
    logged = record.getMessage() + json.dumps({key: str(value) for key, value in vars(record).items()})
    assert "secret" not in logged and "session=abc" not in logged and "hunter2" not in logged


def test_a_reporting_api_batch_logs_its_csp_violations(client, caplog):
    with caplog.at_level(logging.WARNING, logger="security.csp"):
        response = post_report(client, REPORTING_API_BATCH, content_type="application/reports+json")
    assert response.status_code == 204
    (record,) = caplog.records
    assert (record.violated_directive, record.blocked_uri) == ("img-src", "https://tracker.example.org/pixel.gif")


def test_past_the_rate_an_address_is_answered_but_not_logged(client, caplog, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    settings.CSP_REPORT_RATE = "2/min"
    address = f"2001:db8:c5:{secrets.token_hex(2)}::1"  # a /64 of its own: counts outlive a test in Redis
    with caplog.at_level(logging.WARNING, logger="security.csp"):
        statuses = [post_report(client, CSP_REPORT, HTTP_X_FORWARDED_FOR=address).status_code for _ in range(4)]
    assert statuses == [204] * 4
    assert len(caplog.records) == 2


def test_reports_never_touch_the_database(client):
    # Without the db fixture pytest-django makes any query fail: an unauthenticated post must cost no write.
    assert post_report(client, CSP_REPORT).status_code == 204


@pytest.mark.parametrize("body", [b"  ", b"not json", b"[1, 2]", b'{"csp-report": "x"}', b"[]", b"\xff\xfe",
                                  b"[" * 8000 + b"]" * 8000, json.dumps([{"type": "csp-violation"}]).encode(),
                                  json.dumps({"csp-report": {"document-uri": "http://[::1"}}).encode()[:-3]])
def test_malformed_reports_are_refused_with_a_reason(client, body):
    response = post_report(client, body)
    assert response.status_code == 400
    assert json_body(response)["code"] == "malformed_report"


def test_a_report_with_a_broken_url_or_lone_surrogate_is_still_logged(client, caplog):
    report = {"csp-report": {"document-uri": "http://[::1/?token=secret", "blocked-uri": "inline",
                             "violated-directive": "\ud800"}}
    with caplog.at_level(logging.WARNING, logger="security.csp"):
        assert post_report(client, report).status_code == 204
    assert caplog.records[0].blocked_uri == "inline"
    assert caplog.records[0].document_uri == "http://[::1/"
    assert caplog.records[0].violated_directive == "\\ud800"


def test_an_oversized_report_is_refused(client):
    body = json.dumps({"csp-report": {"document-uri": "x" * MAX_REPORT_BYTES}}).encode()
    response = post_report(client, body)
    assert response.status_code == 413
    assert json_body(response)["code"] == "too_large"


def test_other_content_types_and_methods_are_refused(client):
    assert post_report(client, CSP_REPORT, content_type="text/plain").status_code == 415
    assert client.get("/csp-report/").status_code == 405


def test_the_report_endpoint_needs_no_csrf_token(db):
    strict = Client(enforce_csrf_checks=True)
    assert post_report(strict, CSP_REPORT).status_code == 204
