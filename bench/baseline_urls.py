"""
The application's URLs plus `bench/bare/`: the least a webhook receiver can do. It verifies the same
`X-Hub-Signature-256` HMAC as the Meta endpoint and inserts one row with a raw SQL INSERT, nothing
else (no provider lookup, no inbox model, no task enqueued). Its throughput is the yardstick the
real endpoint is compared with.
"""

import hashlib
import hmac
import os

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.urls import urlpatterns as app_urlpatterns

# The benchmark puts the provider's app secret in the server's environment.
APP_SECRET = os.environ.get("BENCH_APP_SECRET", "").encode()
SIGNATURE_HEADER = "X-Hub-Signature-256"


@csrf_exempt
def bare_webhook(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    body = request.body
    expected = "sha256=" + hmac.new(APP_SECRET, body, hashlib.sha256).hexdigest()
    received = request.headers.get(SIGNATURE_HEADER, "")
    if not APP_SECRET or not hmac.compare_digest(received.encode(), expected.encode()):
        return JsonResponse({"error": "signature does not match"}, status=403)
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_raw_webhook (body) VALUES (%s) RETURNING id", [body])
        (row_id,) = cursor.fetchone()
    return JsonResponse({"status": "accepted", "event": row_id})


urlpatterns = [path("bench/bare/", bare_webhook, name="bench-bare-webhook"), *app_urlpatterns]
