"""Meta webhook bodies of our own, in the documented shape, for the analytics tests."""

import json
import time

from tests.signing import META_PHONE_NUMBER_ID, META_WABA_ID


def _envelope(value: dict) -> bytes:
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550001111", "phone_number_id": META_PHONE_NUMBER_ID}, **value}
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": META_WABA_ID, "changes": [{"value": value, "field": "messages"}]}]}).encode()


def inbound_text(wa_id: str, message_id: str, text: str, at: float | None = None, name: str = "") -> bytes:
    return _envelope({
        "contacts": [{"profile": {"name": name or f"Customer {wa_id[-4:]}"}, "wa_id": wa_id}],
        "messages": [{"from": wa_id, "id": message_id, "timestamp": str(int(at or time.time())), "type": "text",
                      "text": {"body": text}}],
    })


def statuses(*reports: tuple) -> bytes:
    """Each report: (provider message id, status, unix time, wa_id[, error code])."""
    items = []
    for report in reports:
        message_id, status, at, wa_id = report[:4]
        item = {"id": message_id, "status": status, "timestamp": str(int(at)), "recipient_id": wa_id}
        if len(report) > 4:
            item["errors"] = [{"code": int(report[4]), "title": "Failed", "message": "Failed",
                               "error_data": {"details": "refused for the test"}}]
        items.append(item)
    return _envelope({"statuses": items})
