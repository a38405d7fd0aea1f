"""
What the provider wire tests share (test_send_wire.py, test_template_wire.py): provider rows built in
memory with known credentials, and a check that an error never quotes them. The servers the providers
call are `fake` and `graph` (tests/conftest.py); the bodies they answer with are in fixtures/<kind>/.
"""

import pytest

from whatsapp.models import Provider
from whatsapp.providers import backend_for
from whatsapp.providers.base import ProviderError

META_TOKEN = "tok-meta-SECRET"
TWILIO_SID = "AC" + "1f" * 16
TWILIO_TOKEN = "tok-twilio-SECRET"
TWILIO_MESSAGES = f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
CHATWOOT_TOKEN = "tok-chatwoot-SECRET"
SECRETS = (META_TOKEN, TWILIO_TOKEN, CHATWOOT_TOKEN)


def raised(call) -> ProviderError:
    """The ProviderError the call raises; neither its message nor its raw answer quotes a credential."""
    with pytest.raises(ProviderError) as info:
        call()
    for secret in SECRETS:
        assert secret not in str(info.value)
        assert secret not in repr(info.value.raw)
    return info.value


def twilio_provider():
    row = Provider(kind="twilio", name="t", business_account_id=TWILIO_SID, phone_number="+14155238886",
                   credentials={"auth_token": TWILIO_TOKEN})
    return backend_for(row)


def chatwoot_provider(base_url: str):
    row = Provider(kind="chatwoot", name="c", external_id="7", business_account_id="3",
                   config={"base_url": base_url + "/"}, credentials={"api_token": CHATWOOT_TOKEN})
    return backend_for(row)
