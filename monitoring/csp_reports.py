"""
Where browsers report what the content security policy blocked (``report-uri`` in the policy). Anyone can
post here, so nothing is stored: each violation is one WARNING log line (logger ``security.csp``), counted
by whatever reads the logs, up to CSP_REPORT_RATE reports per client address (the rest are answered and
dropped). URLs are logged without their query string and fragment, which may carry
tokens; cookies and headers are never logged.
"""

import json
import logging
import re
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from core.client_address import client_address, rate_limit_subject
from core.rate_limits import hit, parse_rate

logger = logging.getLogger("security.csp")

# A report is well under a kilobyte; a few reports batched by the Reporting API stay far below this.
MAX_REPORT_BYTES = 16 * 1024
# report-uri sends application/csp-report, the Reporting API (report-to) application/reports+json; some
# browsers have sent report-uri bodies as plain JSON.
REPORT_CONTENT_TYPES = ("application/csp-report", "application/reports+json", "application/json")
# A batch of more violations than this is not a browser's.
MAX_VIOLATIONS_PER_BODY = 20
MAX_FIELD_CHARS = 300


class MalformedReport(ValueError):
    pass


def _problem(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail}, status=status)


def _printable(value: object) -> str:
    # A lone surrogate ("\\ud800" in the JSON) cannot be encoded in a log line: escape it.
    return str(value if value is not None else "").encode("utf-8", "backslashreplace").decode("utf-8")


def _without_secrets(uri: object) -> str:
    """A URL without its query, fragment and user name or password; keywords ("inline", "eval") as they are."""
    text = _printable(uri)[:2000].split("#", 1)[0].split("?", 1)[0]
    try:
        parts = urlsplit(text)
    except ValueError:  # say, an unclosed IPv6 bracket: still never the user name or password
        return re.sub(r"//[^/@]*@", "//", text)[:MAX_FIELD_CHARS]
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))[:MAX_FIELD_CHARS]


def _short(value: object) -> str:
    return _printable(value)[:MAX_FIELD_CHARS]


def _violation_from_csp_report(report: dict) -> dict[str, str]:
    """The body of report-uri: {"csp-report": {"document-uri": …, "violated-directive": …, …}}."""
    return {
        "document_uri": _without_secrets(report.get("document-uri")),
        "violated_directive": _short(report.get("effective-directive") or report.get("violated-directive")),
        "blocked_uri": _without_secrets(report.get("blocked-uri")),
        "source_file": _without_secrets(report.get("source-file")),
        "line_number": _short(report.get("line-number")),
        "disposition": _short(report.get("disposition")),
    }


def _violation_from_reporting_api(body: dict) -> dict[str, str]:
    """The body of one Reporting API entry of type "csp-violation"."""
    return {
        "document_uri": _without_secrets(body.get("documentURL")),
        "violated_directive": _short(body.get("effectiveDirective")),
        "blocked_uri": _without_secrets(body.get("blockedURL")),
        "source_file": _without_secrets(body.get("sourceFile")),
        "line_number": _short(body.get("lineNumber")),
        "disposition": _short(body.get("disposition")),
    }


def violations_from_payload(payload: object) -> list[dict[str, str]]:
    """The violations in a decoded report body, of either format; MalformedReport when it is neither."""
    if isinstance(payload, dict) and isinstance(payload.get("csp-report"), dict):
        return [_violation_from_csp_report(payload["csp-report"])]
    if isinstance(payload, list) and 0 < len(payload) <= MAX_VIOLATIONS_PER_BODY:
        entries = [entry for entry in payload if isinstance(entry, dict)]
        if len(entries) == len(payload) and all(isinstance(entry.get("body"), dict) for entry in entries):
            # Other report types (deprecation, intervention) may share the endpoint: they are not ours.
            return [_violation_from_reporting_api(entry["body"]) for entry in entries
                    if entry.get("type") == "csp-violation"]
    raise MalformedReport('expected {"csp-report": {...}} or a list of Reporting API reports')


def _declared_length(request: HttpRequest) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None


@csrf_exempt
@require_POST
def csp_report(request: HttpRequest) -> HttpResponse:
    """204 for a report that was logged; 400, 413 or 415 (with the reason) for anything else."""
    rate = parse_rate(settings.CSP_REPORT_RATE)
    sender = rate_limit_subject(client_address(request))
    if rate is not None and hit(f"csp-reports:{sender}", rate, count_refused=True).refused:
        return HttpResponse(status=204)  # this address was heard enough for now: neither read nor logged
    if request.content_type not in REPORT_CONTENT_TYPES:
        return _problem(415, "unsupported_media_type", "Send application/csp-report or application/reports+json.")
    length = _declared_length(request)
    if length is None:
        return _problem(400, "bad_content_length", "Content-Length is not a number.")
    if length > MAX_REPORT_BYTES:
        return _problem(413, "too_large", f"A report is at most {MAX_REPORT_BYTES} bytes.")
    try:
        payload = json.loads(request.read(MAX_REPORT_BYTES))
        violations = violations_from_payload(payload)
    except (UnicodeDecodeError, ValueError) as exc:  # json.JSONDecodeError and MalformedReport are ValueErrors
        return _problem(400, "malformed_report", f"Not a CSP report: {exc}"[:200])
    except RecursionError:
        return _problem(400, "malformed_report", "Not a CSP report: JSON nested too deeply.")
    for violation in violations:
        logger.warning("CSP violation: %s blocked %s on %s", violation["violated_directive"],
                       violation["blocked_uri"], violation["document_uri"],
                       extra={"event": "csp_violation", **violation})
    return HttpResponse(status=204)
