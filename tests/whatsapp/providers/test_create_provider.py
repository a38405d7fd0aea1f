"""`create_provider` for each kind prints the webhook URL as its last line."""

import io

import pytest
from django.core.management import CommandError, call_command

from whatsapp.models import Provider

pytestmark = pytest.mark.django_db

KIND_ARGS = {
    "meta": ["--phone-number-id", "109876543210", "--waba-id", "200000000001", "--access-token", "EAAG-tok",
             "--app-secret", "app-sec", "--verify-token", "verify-tok"],
    "twilio": ["--account-sid", "AC" + "1" * 32, "--auth-token", "twilio-auth", "--phone-number", "+14155238886"],
    "chatwoot": ["--base-url", "https://chat.example.com", "--account-id", "3", "--inbox-id", "7", "--api-token",
                 "cw-token", "--webhook-secret", "cw-secret"],
    "sandbox": [],
}


@pytest.mark.parametrize("kind", sorted(KIND_ARGS))
def test_create_provider_for_each_kind(kind, settings):
    settings.PUBLIC_BASE_URL = "https://wa.example.com"
    out = io.StringIO()
    call_command("create_provider", "--kind", kind, "--name", f"{kind} one", *KIND_ARGS[kind], stdout=out)
    provider = Provider.objects.get(name=f"{kind} one")
    last_line = out.getvalue().strip().splitlines()[-1]
    assert last_line == f"https://wa.example.com/webhooks/{kind}/{provider.public_id}/"
    assert provider.kind == kind and provider.credentials


def test_meta_options_land_in_the_right_places():
    call_command("create_provider", "--kind", "meta", "--name", "m", *KIND_ARGS["meta"], stdout=io.StringIO())
    provider = Provider.objects.get(name="m")
    assert (provider.external_id, provider.business_account_id) == ("109876543210", "200000000001")
    assert provider.credentials == {"access_token": "EAAG-tok", "app_secret": "app-sec", "verify_token": "verify-tok"}
    assert provider.rate_limit_per_second == 80


def test_missing_required_options_are_named():
    with pytest.raises(CommandError, match="a meta provider needs: phone_number_id, waba_id, access_token"):
        call_command("create_provider", "--kind", "meta", "--name", "m", stdout=io.StringIO())


def test_options_of_another_kind_are_refused():
    with pytest.raises(CommandError, match="--account-sid"):
        call_command("create_provider", "--kind", "sandbox", "--name", "s", "--account-sid", "AC1",
                     stdout=io.StringIO())


def test_duplicate_name_is_refused():
    call_command("create_provider", "--kind", "sandbox", "--name", "s", stdout=io.StringIO())
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_provider", "--kind", "sandbox", "--name", "s", stdout=io.StringIO())
