"""
Local HTTP servers that play a provider's side in tests: they answer with scripted responses and
record what they received, so a test asserts what the provider saw.
"""

import base64
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    at: float = 0.0  # arrival time (time.time())


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds to wait before answering (to make a client time out).
    delay: float = 0.0

    @classmethod
    def json(cls, payload, status: int = 200) -> "Reply":
        return cls(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})


class FakeServer:
    """`routes[path]` is a list of replies used in turn (the last one repeats); a reply may also be a
    function of the recorded request that returns one (e.g. a fresh message id per request). `host` is the
    loopback address it listens on: Linux answers on all of 127/8, so 127.0.0.2 can play another machine."""

    def __init__(self, host: str = "127.0.0.1"):
        self.routes: dict[str, list[Reply]] = {}
        self.requests: list[Recorded] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                recorded = Recorded(self.command, parts.path, parts.query,
                                    {k.lower(): v for k, v in self.headers.items()},
                                    self.rfile.read(length) if length else b"", time.time())
                server.requests.append(recorded)
                replies = server.routes.get(parts.path) or [Reply(404, b'{"error": "no route"}')]
                if not callable(replies):
                    replies = replies.pop(0) if len(replies) > 1 else replies[0]
                reply = replies(recorded) if callable(replies) else replies
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def hits(self, path: str) -> list[Recorded]:
        return [request for request in self.requests if request.path == path]


# --- what a fake received -------------------------------------------------------------------------

def json_of(request: Recorded) -> dict:
    return json.loads(request.body)


def form_of(request: Recorded) -> dict[str, list[str]]:
    return parse_qs(request.body.decode(), keep_blank_values=True)


def multipart_of(request: Recorded) -> dict[str, tuple[str | None, str, bytes]]:
    """name -> (filename, content type, bytes) of a multipart/form-data body."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + request.body)
    return {part.get_param("name", header="content-disposition"):
            (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
            for part in message.iter_parts()}


# --- Meta's Graph API answers to a send -------------------------------------------------------------

_message_ids = itertools.count(1)


def meta_accepted(request: Recorded) -> Reply:
    """Meta accepts the send: a new message id each time."""
    to = json.loads(request.body)["to"]
    return Reply.json({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
                       "messages": [{"id": f"wamid.test-{next(_message_ids)}"}]})


def meta_error(code: int, status: int, message: str = "error") -> Reply:
    """Meta refuses the send with this error code and HTTP status."""
    return Reply.json({"error": {"message": f"(#{code}) {message}", "type": "OAuthException", "code": code,
                                 "error_data": {"messaging_product": "whatsapp", "details": message},
                                 "fbtrace_id": "Atest"}}, status=status)


# --- Twilio's answers (REST API and Content API) -----------------------------------------------------

def _twilio_account(request: Recorded) -> str:
    """The account SID the twilio SDK authenticated with (HTTP Basic: account SID and auth token)."""
    credentials = request.headers.get("authorization", "").removeprefix("Basic ")
    return base64.b64decode(credentials).decode().partition(":")[0] if credentials else ""


def twilio_content_created(request: Recorded) -> Reply:
    """Twilio's Content API creates the Content it was sent (POST /v1/Content, JSON): a new HX sid each
    time, the request's fields echoed in the shape the twilio SDK's ContentInstance reads."""
    sent = json.loads(request.body)
    sid = "HX" + uuid.uuid4().hex
    url = f"https://content.twilio.com/v1/Content/{sid}"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return Reply.json({"account_sid": _twilio_account(request), "date_created": now, "date_updated": now,
                       "friendly_name": sent.get("friendly_name"), "language": sent.get("language"),
                       "links": {"approval_create": f"{url}/ApprovalRequests/whatsapp",
                                 "approval_fetch": f"{url}/ApprovalRequests"},
                       "sid": sid, "types": sent.get("types") or {}, "url": url,
                       "variables": sent.get("variables") or {}}, status=201)


def twilio_message_created(request: Recorded) -> Reply:
    """Twilio's REST API accepts a message (a form POST to .../Messages.json): a new SM sid each time."""
    form = {name: values[0] for name, values in form_of(request).items()}
    account = _twilio_account(request)
    sid = "SM" + uuid.uuid4().hex
    return Reply.json({"sid": sid, "account_sid": account, "api_version": "2010-04-01", "body": form.get("Body", ""),
                       "from": form.get("From"), "to": form.get("To"), "status": "queued",
                       "direction": "outbound-api", "num_segments": "1", "num_media": "0", "error_code": None,
                       "error_message": None, "messaging_service_sid": None,
                       "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json", "subresource_uris": {}},
                      status=201)
