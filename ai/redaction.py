"""
Personal data taken out of text before it is sent to an AI model, and put back into what the model writes.

A prompt leaves the building: it is processed, and may be logged or kept, by the AI provider. The customer's
contact details and payment data have no business there, and the model does not need them to classify a
message, summarise a conversation or suggest a reply. `redact` swaps each of them for a placeholder such as
`[PHONE_1]`; `restore` swaps the placeholders in the model's answer back for the originals, so an agent reads
the real values in a suggestion, a summary or an extracted field.

Covered, in this order (earlier kinds win where two could match the same characters):

- EMAIL: e-mail addresses.
- IBAN: a country code, two check digits and up to 30 letters or digits, written as one block or in groups
  of four separated by single spaces, in any letter case; only when the country uses IBANs, the length is
  the one that country's IBANs have, and the ISO 13616 mod-97 check passes.
- CARD: 13 to 19 digits, as one block or in groups separated by single spaces or dashes (every group but
  the last of three or more digits, so a list of small numbers is not read as one); only when the Luhn
  check passes, the number does not start with 0 and is not written after a "+" (those are phone numbers).
- PHONE: a "+" followed by 7 to 15 digits, a "00" international prefix followed by 7 to 15 digits, or a
  national number of 7 to 13 digits; groups may be separated by single spaces, dashes or dots, and an area
  code may be in parentheses ("+1 (650) 555-1234", "+34 612 34 56 78", "0049 30 1234567", "612345678").
  Digits that fail the Luhn check are judged by these phone rules like any other digits: a mistyped
  13-digit card number is still hidden as a phone number, a 16-digit one is left as it is. A string shaped
  like an IBAN that fails its check is left as it is, digits included: they are an account or reference
  code, not a card or phone number.
  Numbers that read as something else are left alone: dates (2026-12-02, 02.12.2026, with or without a time
  after), times and opening hours (9.00-17.00), year ranges and references numbered by year (2025-2026,
  2026-0042), amounts (12.50, 1,234.56, 1.234.567, a number next to a currency sign or code), percentages,
  postal codes written 1000-001 or 01310-100, numbers glued to a letter (1234567kg), references written
  "#12345678", and anything shorter than seven digits (order #1234).

Not covered: names, street addresses, postal codes, dates of birth, national ID and tax numbers, and phone
numbers written in words ("six one two...") or run together with another number (two formatted numbers with
only a space between them, "612 345 678 612 345 679", are too long to be one phone number). These reach the
model as written.

Placeholders are numbered per kind in order of appearance; the same value written again gets the same
placeholder, and several texts sent in one call (the conversation so far and the new message) share one
numbering through `into=`. Text that already contains something `restore` would read as a placeholder (a
customer typing "[PHONE_1]") is itself replaced by a `[LITERAL_n]` placeholder whose original is the text
as typed, so redacting and restoring always gives back the exact text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EMAIL = "EMAIL"
PHONE = "PHONE"
CARD = "CARD"
IBAN = "IBAN"
LITERAL = "LITERAL"
KINDS = (EMAIL, PHONE, CARD, IBAN, LITERAL)


@dataclass
class Redaction:
    text: str  # the text with placeholders
    replacements: dict[str, str]  # placeholder -> original, e.g. {"[PHONE_1]": "+34 612 345 678"}


# What `restore` reads as a placeholder: "[PHONE_1]" and the small changes a model makes when it copies one
# ("[phone_1]", "[PHONE 1]", "[ PHONE_1 ]", "[PHONE_01]"). `redact` escapes exactly what this matches.
_PLACEHOLDER = re.compile(
    r"\[\s*(" + "|".join(KINDS) + r")[ _-]?([0-9]+)\s*\]",
    re.IGNORECASE | re.ASCII,
)

_EMAIL = re.compile(r"(?<![\w.%+\-])[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[^\W\d_]{2,}(?![\w\-])")

# Two letters, two digits, then blocks of four (the last one shorter), with or without single spaces.
# The match may run past the IBAN's end (into the next word); `_iban_end` finds where it really ends.
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?:\ ?[A-Za-z0-9]{4}){2,7}(?:\ ?[A-Za-z0-9]{1,3})?(?![A-Za-z0-9])"
)
# Where an IBAN may start, found by its check digits: a scan for digits is faster than one for letters.
_IBAN_CHECK_DIGITS = re.compile(r"[0-9]{2}(?<=(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2})")

# A run of digit groups joined by single separators, maybe after a "+" and with an area code in
# parentheses. Cards and phones are looked for inside each run; every separator is a non-digit, so the
# pattern cannot backtrack badly. The lookahead skips, cheaply, the many runs too short to matter.
_NUMBER_RUN = re.compile(
    r"(?=[\d+(][\d ().+\-]{6})(?<!\w)"  # seven characters that could be a number, not glued to a word
    r"(?:\+\ ?)?(?:\(\d{1,5}\)\ ?)?\d+"  # "+", "(650) ", the first digits
    r"(?:(?:[ .\-]|\ ?\(\d{1,5}\)\ ?)\d+)*"  # more digits after a separator or an area code
)
_DIGITS = re.compile(r"\d+")
_HAS_DIGIT = re.compile(r"\d")

_CURRENCY = r"(?:[$€£¥₹₽₺₩¢]|R\$|US\$|(?<![^\W\d_])(?:EUR|USD|GBP|BRL|CHF|MXN|ARS|COP|CLP)(?![^\W\d_]))"
_CURRENCY_BEFORE = re.compile(_CURRENCY + r"\s?$", re.IGNORECASE)
_CURRENCY_AFTER = re.compile(
    r"^\s?(?:" + _CURRENCY + r"|(?:euros?|reais|real|d[oó]lar(?:es)?|dollars?|pesos?|libras?|pounds?)(?!\w))",
    re.IGNORECASE,
)
_REFERENCE_BEFORE = re.compile(r"[#№]\s?$")
# The start of an IBAN-shaped string ("ES00 2100 "), which a run of digits may continue.
_IBAN_HEAD_BEFORE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?: [A-Za-z0-9]{4})* $")
# Right after the number: a time (":30"), a decimal comma (",50"), a percentage, or a letter (a unit or a code).
_NOT_PHONE_AFTER = re.compile(r"^(?::\d|,\d{1,2}(?!\d)|\s?%|[^\W\d_])")
_TIME_RANGE = re.compile(r"^([01]?\d|2[0-4])[.:]([0-5]\d)-([01]?\d|2[0-4])[.:]([0-5]\d)$")
_POSTAL_CODE = re.compile(r"^(?:\d{4}-\d{3}|\d{5}-\d{3})$")

_CONTEXT = 16  # characters either side of a number that its context rules look at

# IBAN length per country (ISO 13616 registry).
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def redact(text: str, *, into: Redaction | None = None) -> Redaction:
    """`text` with e-mail addresses, IBANs, card and phone numbers replaced by placeholders.
    With `into`, placeholders continue that redaction's numbering, a value it already replaced gets the
    same placeholder, and the result's replacements hold both its own and `into`'s (`into` is not changed)."""
    numbering = _Numbering(into.replacements if into is not None else {})
    if "[" in text:
        text = _PLACEHOLDER.sub(lambda m: numbering.placeholder(LITERAL, m.group(0)), text)
    if "@" in text:
        text = _EMAIL.sub(lambda m: numbering.placeholder(EMAIL, m.group(0)), text)
    if _HAS_DIGIT.search(text):
        text = _replace_ibans(text, numbering)
        text = _NUMBER_RUN.sub(lambda m: _redact_number_run(m, numbering), text)
    return Redaction(text=text, replacements=numbering.replacements)


def redact_all(texts: list[str], *, into: Redaction | None = None) -> tuple[list[str], Redaction]:
    """Several texts of one call redacted with one numbering, so a value repeated across them keeps its
    placeholder. Returns the redacted texts and the redaction that restores them."""
    redaction = into or Redaction(text="", replacements={})
    redacted = []
    for text in texts:
        redaction = redact(text, into=redaction)
        redacted.append(redaction.text)
    return redacted, redaction


def restore(text: str, replacements: dict[str, str]) -> str:
    """`text` (a model's answer) with the placeholders of `replacements` put back to their originals, also
    when the model changed their letter case or spacing a little. Placeholders not in `replacements` stay."""
    if not replacements or "[" not in text:
        return text
    originals = {_canonical(key): value for key, value in replacements.items()}

    def original(match: re.Match[str]) -> str:
        return originals.get(_placeholder(match.group(1), match.group(2)), match.group(0))

    return _PLACEHOLDER.sub(original, text)


class _Numbering:
    """The placeholders handed out so far, and the next number for each kind."""

    def __init__(self, replacements: dict[str, str]) -> None:
        self.replacements = dict(replacements)
        self._by_value: dict[tuple[str, str], str] = {}
        self._count = dict.fromkeys(KINDS, 0)
        for key, value in replacements.items():
            match = _PLACEHOLDER.fullmatch(key)
            if match is None:
                continue
            kind, number = match.group(1).upper(), int(match.group(2).lstrip("0") or "0")
            self._by_value.setdefault((kind, value), key)
            self._count[kind] = max(self._count[kind], number)

    def placeholder(self, kind: str, value: str) -> str:
        known = self._by_value.get((kind, value))
        if known is not None:
            return known
        self._count[kind] += 1
        key = f"[{kind}_{self._count[kind]}]"
        self.replacements[key] = value
        self._by_value[(kind, value)] = key
        return key


def _placeholder(kind: str, number: str) -> str:
    return f"[{kind.upper()}_{number.lstrip('0') or '0'}]"


def _canonical(key: str) -> str:
    match = _PLACEHOLDER.fullmatch(key)
    return _placeholder(match.group(1), match.group(2)) if match else key


# IBANs


def _replace_ibans(text: str, numbering: _Numbering) -> str:
    parts: list[str] = []
    done = 0
    position = 0
    while (found := _IBAN_CHECK_DIGITS.search(text, position)) is not None:
        start = found.start() - 2
        match = _IBAN.match(text, start)
        end = _iban_end(match.group(0)) if match is not None else None
        if end is None:
            position = found.start() + 1
            continue
        parts.append(text[done:start])
        parts.append(numbering.placeholder(IBAN, text[start : start + end]))
        done = position = start + end
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def _iban_end(candidate: str) -> int | None:
    """Where the IBAN at the start of `candidate` ends (the match may run on into the next words), or None."""
    length = _IBAN_LENGTHS.get(candidate[:2].upper())
    if length is None:
        return None
    compact = 0
    for offset, char in enumerate(candidate):
        if char != " ":
            compact += 1
            continue
        if compact == length:
            return offset if _iban_valid(candidate[:offset]) else None
    return len(candidate) if compact == length and _iban_valid(candidate) else None


def _iban_valid(iban: str) -> bool:
    """The ISO 13616 check: the country and check digits moved to the end, letters as 10-35, mod 97 is 1."""
    compact = iban.replace(" ", "").upper()
    if not "02" <= compact[2:4] <= "98":
        return False
    remainder = 0
    for char in compact[4:] + compact[:4]:
        value = int(char, 36)
        remainder = (remainder * (100 if value > 9 else 10) + value) % 97
    return remainder == 1


# Cards and phone numbers


def _redact_number_run(match: re.Match[str], numbering: _Numbering) -> str:
    run = match.group(0)
    if len(run) < 7:
        return run
    if _IBAN_HEAD_BEFORE.search(match.string, max(0, match.start() - 40), match.start()):
        return run
    groups = [(group.start(), group.end()) for group in _DIGITS.finditer(run)]
    if sum(end - start for start, end in groups) < 7:
        return run
    found: list[tuple[int, int, str]] = []  # (start, end, kind) within the run, in order
    first = 0
    for card_first, card_last in _card_spans(run, groups):
        found += _phone_spans(match, groups, first, card_first - 1)
        found.append((groups[card_first][0], groups[card_last][1], CARD))
        first = card_last + 1
    found += _phone_spans(match, groups, first, len(groups) - 1)
    if not found:
        return run
    parts = []
    done = 0
    for start, end, kind in found:
        parts += [run[done:start], numbering.placeholder(kind, run[start:end])]
        done = end
    parts.append(run[done:])
    return "".join(parts)


def _card_spans(run: str, groups: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The card numbers in a run, as (first group, last group), taking the earliest start, then the longest."""
    lengths = [end - start for start, end in groups]
    if sum(lengths) < 13:
        return []
    # Whether a card number can go on from group i to group i + 1: every group but the last has 3+ digits.
    joined = [
        lengths[index] >= 3 and run[groups[index][1] : groups[index + 1][0]] in (" ", "-")
        for index in range(len(groups) - 1)
    ]
    spans = []
    first = 1 if run.startswith("+") else 0  # digits after a "+" are a phone number
    while first < len(groups):
        last = _card_last(run, groups, lengths, joined, first)
        if last is None:
            first += 1
        else:
            spans.append((first, last))
            first = last + 1
    return spans


def _card_last(
    run: str, groups: list[tuple[int, int]], lengths: list[int], joined: list[bool], first: int
) -> int | None:
    """The last group of the longest card number starting at group `first`, or None."""
    if run[groups[first][0]] == "0":
        return None
    candidates = []  # the last groups at which 13 to 19 digits have been read
    size = 0
    last = first
    while True:
        size += lengths[last]
        if size > 19:
            break
        if size >= 13:
            candidates.append(last)
        if last == len(joined) or not joined[last]:
            break
        last += 1
    for last in reversed(candidates):
        if _luhn_valid("".join(run[start:end] for start, end in groups[first : last + 1])):
            return last
    return None


def _luhn_valid(digits: str) -> bool:
    if not digits.isascii():  # digits of another script, e.g. Arabic-Indic
        digits = "".join(str(int(char)) for char in digits)
    digits = digits[::-1]
    doubled = digits[1::2].translate(_LUHN_DOUBLED)
    return (sum(map(int, digits[0::2])) + sum(map(int, doubled))) % 10 == 0


# A digit doubled, as the Luhn check counts it (the digits of the product added up).
_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")


def _phone_spans(match: re.Match[str], groups: list[tuple[int, int]], first: int, last: int) -> list:
    """[(start, end, PHONE), ...] for the phone numbers among groups first..last of the run. Two blocks of
    seven or more digits with a space between them are two numbers ("612345678 612345679")."""
    if first > last:
        return []
    run = match.group(0)
    spans = []
    splits = [
        index
        for index in range(first, last)
        if groups[index][1] - groups[index][0] >= 7
        and groups[index + 1][1] - groups[index + 1][0] >= 7
        and run[groups[index][1] : groups[index + 1][0]] == " "
    ]
    for end_group in [*splits, last]:
        start = 0 if first == 0 else groups[first][0]
        if first > 0 and run[start - 1] == "(":
            start -= 1
        end = groups[end_group][1]
        text, offset = match.string, match.start()
        before = text[max(0, offset + start - _CONTEXT) : offset + start]
        after = text[offset + end : offset + end + _CONTEXT]
        if _is_phone(run[start:end], before, after):
            spans.append((start, end, PHONE))
        first = end_group + 1
    return spans


def _is_phone(number: str, before: str, after: str) -> bool:
    digit_groups = _DIGITS.findall(number)
    digits = "".join(digit_groups)
    if number.startswith("+"):
        international, count = True, len(digits)
    elif digits.startswith("00"):
        international, count = True, len(digits) - 2
    else:
        international, count = False, len(digits)
    if not (7 <= count <= 15 if international else 7 <= count <= 13):
        return False
    if _NOT_PHONE_AFTER.search(after):
        return False
    if number.startswith("+"):
        return True
    if _REFERENCE_BEFORE.search(before) or _CURRENCY_BEFORE.search(before) or _CURRENCY_AFTER.search(after):
        return False
    separators = _DIGITS.split(number)[1:-1]
    return not (
        _reads_as_date(digit_groups, separators)
        or _reads_as_amount(digit_groups, separators)
        or _TIME_RANGE.match(number)
        or _POSTAL_CODE.match(number)
        or (len(digit_groups) == 2 and separators == ["-"] and _is_year(digit_groups[0]))
    )


def _is_year(group: str) -> bool:
    return len(group) == 4 and "1900" <= group <= "2099"


def _reads_as_date(groups: list[str], separators: list[str]) -> bool:
    """A date (maybe followed by a time after a different separator): 2026-12-02, 02.12.2026, 2.12.26 10.30."""
    if len(groups) < 3 or separators[0] != separators[1] or separators[0] not in (" ", ".", "-"):
        return False
    if len(groups) > 3 and separators[2] == separators[0]:
        return False  # 06.12.34.56.78 is a phone number written in pairs, not a date
    first, second, third = groups[:3]
    if _is_year(first) and len(second) <= 2 and len(third) <= 2:
        return 1 <= int(second) <= 12 and 1 <= int(third) <= 31
    if len(first) > 2 or len(second) > 2:
        return False
    if not (_is_year(third) or (len(third) == 2 and separators[0] != " ")):
        return False
    day, month = int(first), int(second)
    return (1 <= day <= 31 and 1 <= month <= 12) or (1 <= month <= 31 and 1 <= day <= 12)


def _reads_as_amount(groups: list[str], separators: list[str]) -> bool:
    """1.234.567 or 1 234 567 (thousands), 1234567.89 (a decimal point)."""
    if separators and separators[-1] == "." and len(groups[-1]) <= 2 and separators.count(".") == 1:
        return True
    return (
        len(groups) >= 3
        and len(set(separators)) == 1
        and separators[0] in (".", " ")
        and len(groups[0]) <= 2
        and groups[0][0] != "0"
        and all(len(group) == 3 for group in groups[1:])
    )
