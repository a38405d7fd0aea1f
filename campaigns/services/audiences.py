"""
Importing a list of people from CSV: all of it or nothing.

Columns: `phone` (required; also `phone_number`, `number`, `whatsapp`), optional `name`, `language`,
`time_zone`, `opt_in` (the proof of consent: where and when the person agreed), and any others, which become
the row's values for the messages ({row.<column>}). Phone numbers are normalised to E.164. Every bad row is
reported with its line number and reason, and then nothing is imported; the refused import is kept, so that
what was rejected stays visible. A row with opt-in proof opts its contact in (an earlier opt-out stays: a list
never overrides a person's own "stop").
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns.models import AudienceImport, AudienceMember
from campaigns.services.scheduling import zone_named
from contacts.models import ConsentEvent, ConsentSource, Contact, ContactIdentity
from contacts.phones import phone_parse_e164
from core.audit import audit_record
from whatsapp.models import Provider
from whatsapp.providers.events import IdentityKind

PHONE_COLUMNS = ("phone", "phone_number", "number", "whatsapp", "mobile")
KNOWN_COLUMNS = {"name", "language", "time_zone", "opt_in"}
VALUE_MAX = 1024


class ImportRefused(ValueError):
    """The file itself cannot be read (not CSV, no phone column, too large)."""


@dataclass
class _Row:
    line: int
    phone: str
    name: str = ""
    language: str = ""
    time_zone: str = ""
    opt_in: str = ""
    values: dict[str, Any] = field(default_factory=dict)


def _read(data: bytes) -> tuple[list[str], list[tuple[int, list[str]]]]:
    if len(data) > settings.CAMPAIGN_IMPORT_MAX_BYTES:
        raise ImportRefused(f"the file is {len(data)} bytes; the limit is {settings.CAMPAIGN_IMPORT_MAX_BYTES}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportRefused(f"the file is not UTF-8 text (byte {exc.start}); save it as CSV UTF-8") from None
    if "\x00" in text:
        raise ImportRefused("the file holds NUL bytes: it is not a CSV text file")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        header = [column.strip().lower() for column in next(reader, [])]
        rows = []
        for cells in reader:
            if len(rows) >= settings.CAMPAIGN_IMPORT_MAX_ROWS:
                raise ImportRefused(f"more than {settings.CAMPAIGN_IMPORT_MAX_ROWS} rows; split the file")
            if any(cell.strip() for cell in cells):
                rows.append((reader.line_num, cells))
    except csv.Error as exc:
        raise ImportRefused(f"line {reader.line_num}: {exc}") from None
    if not any(column in PHONE_COLUMNS for column in header):
        raise ImportRefused(f"no phone column: name one of {', '.join(PHONE_COLUMNS)} in the first line")
    if len(set(header)) != len(header):
        raise ImportRefused("two columns have the same name")
    return header, rows


def _parse(header: list[str], rows: list[tuple[int, list[str]]], *,
           require_opt_in: bool) -> tuple[list[_Row], list[dict[str, Any]]]:
    phone_column = next(column for column in header if column in PHONE_COLUMNS)
    parsed, errors, seen = [], [], {}
    for line, row_cells in rows:
        problems = []
        if len(row_cells) > len(header):
            problems.append("more cells than columns")
        cells = dict(zip(header, row_cells, strict=False))
        raw = (cells.get(phone_column) or "").strip()
        phone = ""
        try:
            phone = phone_parse_e164(raw) if raw else ""
        except ValueError as exc:
            problems.append(str(exc))
        if not raw:
            problems.append("no phone number")
        elif phone and phone in seen:
            problems.append(f"the same number as line {seen[phone]}")
        zone = (cells.get("time_zone") or "").strip()
        if zone and zone_named(zone) is None:
            problems.append(f"{zone!r} is not a time zone (e.g. America/Sao_Paulo)")
        opt_in = (cells.get("opt_in") or "").strip()
        if require_opt_in and not opt_in:
            problems.append("no opt-in proof (the opt_in column: where and when they agreed)")
        values = {column: value.strip() for column, value in cells.items()
                  if column not in KNOWN_COLUMNS and column != phone_column and value is not None}
        if any(len(value) > VALUE_MAX for value in values.values()):
            problems.append(f"a value longer than {VALUE_MAX} characters")
        if problems:
            errors.append({"line": line, "reason": "; ".join(problems)})
            continue
        seen[phone] = line
        parsed.append(_Row(line, phone, (cells.get("name") or "").strip()[:255],
                           (cells.get("language") or "").strip()[:16], zone, opt_in[:500], values))
    return parsed, errors


def audience_import(*, name: str, provider: Provider, data: bytes, file_name: str = "", require_opt_in: bool = True,
                    actor: Any = None) -> AudienceImport:
    """Import the CSV, or refuse it whole (status refused, with each bad row's line and reason). Raises
    ImportRefused when the file cannot be read at all."""
    header, rows = _read(data)
    parsed, errors = _parse(header, rows, require_opt_in=require_opt_in)
    errors += _same_person_twice(parsed)
    errors.sort(key=lambda error: error["line"])
    user = actor if getattr(actor, "is_authenticated", False) else None
    columns = [column for column in header if column not in KNOWN_COLUMNS and column not in PHONE_COLUMNS]
    fields = {"name": name[:100], "provider": provider, "file_name": file_name[:255], "columns": columns,
              "rows_total": len(rows), "created_by": user}
    if not errors and parsed:
        try:
            with transaction.atomic():
                audience = AudienceImport.objects.create(status=AudienceImport.Status.IMPORTED, **fields)
                audience.rows_imported = _members_create(audience, parsed, user)
                audience.save(update_fields=["rows_imported"])
                _audited(audience, actor, len(rows))
            return audience
        except IntegrityError:
            # Someone else added one of these numbers (a message, another import) while this one ran.
            errors = [{"line": 1, "reason": "some of these numbers were added elsewhere while importing; nothing "
                                            "was imported: import the file again"}]
    with transaction.atomic():
        audience = AudienceImport.objects.create(
            status=AudienceImport.Status.REFUSED,
            errors=errors or [{"line": 1, "reason": "the file has no rows"}], **fields)
        _audited(audience, actor, len(rows))
    return audience


def _audited(audience: AudienceImport, actor: Any, rows: int) -> None:
    audit_record(action="campaigns.audience_import", obj=audience, actor=actor,
                 after={"status": audience.status, "rows": rows, "imported": audience.rows_imported,
                        "refused_rows": len(audience.errors)})


def _same_person_twice(rows: list[_Row]) -> list[dict[str, Any]]:
    """Rows whose numbers belong to one contact already (a person with two numbers): one record each, so the
    second is refused like a repeated number."""
    owner: dict[str, int] = {}
    phones = [row.phone for row in rows]
    for start in range(0, len(phones), 10_000):
        owner.update(ContactIdentity.objects.filter(kind=IdentityKind.PHONE, scope="",
                                                    value__in=phones[start:start + 10_000])
                     .values_list("value", "contact_id"))
    first_line: dict[int, int] = {}
    errors = []
    for row in rows:
        contact_id = owner.get(row.phone)
        if contact_id is None:
            continue
        if contact_id in first_line:
            errors.append({"line": row.line, "reason": f"the same person as line {first_line[contact_id]} "
                                                       "(one contact has both numbers)"})
        else:
            first_line[contact_id] = row.line
    return errors


def _members_create(audience: AudienceImport, rows: list[_Row], actor) -> int:
    contacts = _contacts_for(rows)
    now = timezone.now()
    opting_in = [contacts[row.phone] for row in rows if row.opt_in]
    # Locked and read again: a "stop" that arrived while the file was read is never overwritten.
    to_opt_in = list(Contact.objects.select_for_update().filter(
        pk__in=[contact.pk for contact in opting_in], consent=Contact.Consent.UNKNOWN).values_list("pk", flat=True))
    proof = {contacts[row.phone].pk: row.opt_in for row in rows if row.opt_in}
    if to_opt_in:
        Contact.objects.filter(pk__in=to_opt_in).update(consent=Contact.Consent.OPTED_IN, consent_changed_at=now,
                                                        consent_source=ConsentSource.IMPORT)
        ConsentEvent.objects.bulk_create([ConsentEvent(
            contact_id=contact_id, state=Contact.Consent.OPTED_IN, previous_state=Contact.Consent.UNKNOWN,
            source=ConsentSource.IMPORT, detail=f"{audience.name}: {proof[contact_id]}"[:255], actor=actor)
            for contact_id in to_opt_in], batch_size=2000)
    AudienceMember.objects.bulk_create([AudienceMember(
        audience=audience, contact=contacts[row.phone], line=row.line, values=row.values, opt_in_proof=row.opt_in)
        for row in rows], batch_size=2000)
    return len(rows)


def _contacts_for(rows: list[_Row]) -> dict[str, Contact]:
    """Each row's contact by phone: the one that has the number, else a new one with the row's name, language and
    zone. Existing contacts get the row's name, language and zone only where theirs are empty."""
    phones = [row.phone for row in rows]
    found: dict[str, Contact] = {}
    for start in range(0, len(phones), 10_000):
        for identity in (ContactIdentity.objects.filter(kind=IdentityKind.PHONE, scope="",
                                                        value__in=phones[start:start + 10_000])
                         .select_related("contact")):
            found[identity.value] = identity.contact
    missing = [row for row in rows if row.phone not in found]
    created = Contact.objects.bulk_create([Contact(profile_name=row.name, language=row.language,
                                                   time_zone=row.time_zone) for row in missing], batch_size=2000)
    ContactIdentity.objects.bulk_create([ContactIdentity(contact=contact, kind=IdentityKind.PHONE, value=row.phone)
                                         for contact, row in zip(created, missing, strict=True)], batch_size=2000)
    found.update({row.phone: contact for row, contact in zip(missing, created, strict=True)})
    filled = []
    for row in rows:
        contact = found[row.phone]
        changed = False
        for attribute in ("profile_name", "language", "time_zone"):
            given = row.name if attribute == "profile_name" else getattr(row, attribute)
            if given and not getattr(contact, attribute):
                setattr(contact, attribute, given)
                changed = True
        if changed and contact not in created:
            filled.append(contact)
    Contact.objects.bulk_update(filled, ["profile_name", "language", "time_zone"], batch_size=2000)
    return found
