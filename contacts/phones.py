"""Phone numbers in E.164, the form every identity and send address is stored in."""

import phonenumbers


def phone_to_e164(raw: str) -> str:
    """'+1 (555) 123-0001' or '15551230001' -> '+15551230001'; unparseable input is kept digits-only."""
    text = raw.strip()
    candidate = text if text.startswith("+") else "+" + text
    try:
        number = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException:
        digits = "".join(ch for ch in text if ch.isdigit())
        return "+" + digits if digits else text
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_parse_e164(raw: str) -> str:
    """A phone number someone asks us to send to, strictly: E.164 back, or ValueError saying why.
    Only the number's shape is checked (is_possible_number): WhatsApp itself says whether it exists."""
    text = raw.strip()
    try:
        number = phonenumbers.parse(text if text.startswith("+") else "+" + text, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{raw!r} is not a phone number ({exc})") from None
    if not phonenumbers.is_possible_number(number):
        raise ValueError(f"{raw!r} is not a possible phone number (wrong length for its country code)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
