"""Records to Gladly customer profiles, and the changes a PATCH has to carry.

Which record field becomes which profile field: ``field_mapping`` {record
field: profile field} when given (only mapped fields are sent), else every
record field under its own name (``_sdc_*`` metadata skipped). The names
``name``, ``email``, ``phone``, ``address``, ``externalCustomerId``,
``image`` and ``id`` are profile fields; any other name is a custom
attribute.

How values are typed:

* ``email`` and ``phone`` take a string or a list of strings; each value
  becomes one entry of ``emails`` / ``phones`` (trimmed; phones get
  ``type`` when ``phone_type`` is set). Repeats are dropped: emails compare
  case-insensitively, phones in E.164.
* Phone numbers are sent in E.164 (``+4512345678``): Gladly reads any other
  form as a US number. A number without ``+`` takes its country from
  ``default_phone_region``; one that cannot be read, has a wrong length for
  its country, or has no country at all rejects the record. An extension
  (``+45 12 34 56 78 ext. 9``) goes in the entry's ``extension``.
* ``name``, ``address``, ``image``, ``externalCustomerId`` and ``id`` are
  strings; other scalars are written as text by the rule below.
* Custom attribute values are always strings, because Gladly stores and
  shows them as text. Strings go as they are; booleans as ``true`` /
  ``false``; numbers in plain decimal notation without exponent or trailing
  zeros (``42``, ``12.5``, ``0.001``); dates as ``2024-05-06``; timestamps
  as ISO 8601, converted to UTC with a ``Z`` when they carry a time zone
  (``2024-05-06T07:08:09Z``) and as given when they do not. Objects and
  arrays are rejected (flatten them, or map a scalar field).
* ``null`` and missing fields are left out, so they never clear what Gladly
  holds; blank emails, phones and ids are left out too.
"""

from __future__ import annotations

import datetime
import decimal
import typing as t
from dataclasses import dataclass

import phonenumbers

from singer_delivery import RecordRejected
from target_gladly import contract

Profile = dict[str, t.Any]
Contact = dict[str, str]
ContactKey = t.Callable[[t.Mapping[str, t.Any]], str]

#: Targets that collect several record fields into one list.
LIST_TARGETS = frozenset({"email", "phone"})


def check_field_mapping(mapping: t.Mapping[str, str]) -> list[str]:
    """Problems with ``field_mapping``, each naming the fix."""
    errors = []
    sources: dict[str, list[str]] = {}
    for source, target in mapping.items():
        sources.setdefault(target, []).append(source)
        if target in contract.RESERVED_FIELDS:
            errors.append(
                f"field_mapping maps {source!r} to {target!r}, which this target "
                "writes itself; map to 'email' or 'phone' (a list value gives "
                "several entries) or to a custom attribute name"
            )
        elif not target.strip():
            errors.append(f"field_mapping maps {source!r} to an empty name")
    for target, names in sources.items():
        if len(names) > 1 and target not in LIST_TARGETS:
            errors.append(
                f"field_mapping maps {', '.join(map(repr, names))} to {target!r}; "
                "only 'email' and 'phone' can take several fields"
            )
    return errors


@dataclass(frozen=True)
class ProfileMapping:
    """How one stream's records become profile bodies."""

    field_mapping: t.Mapping[str, str] | None = None
    phone_type: str | None = None
    default_phone_region: str | None = None

    def fields(self, record: t.Mapping[str, t.Any]) -> list[tuple[str, str, t.Any]]:
        """(record field, profile field, value) for every field that is sent."""
        if self.field_mapping is not None:
            return [
                (source, target, record[source])
                for source, target in self.field_mapping.items()
                if source in record
            ]
        return [
            (name, name, value)
            for name, value in record.items()
            if not name.startswith("_sdc_")
        ]

    def profile(self, record: t.Mapping[str, t.Any]) -> Profile:
        """The profile body a record asks for (no ``id`` unless one is mapped)."""
        profile: Profile = {}
        emails: list[Contact] = []
        phones: list[Contact] = []
        attributes: dict[str, str] = {}
        for source, name, value in self.fields(record):
            if value is None:
                continue
            if name == "email":
                emails += [{"original": v} for v in contact_values(name, value)]
            elif name == "phone":
                phones += [self.phone(source, v) for v in contact_values(name, value)]
            elif name == "id":
                if profile_id := text(name, value).strip():
                    profile["id"] = checked_id(profile_id)
            elif name in contract.STANDARD_FIELDS:
                profile[name] = text(name, value)
            else:
                attributes[name] = text(name, value)
        if emails := unique(emails, contract.email_key):
            profile["emails"] = emails
        if phones := unique(phones, contract.phone_key):
            profile["phones"] = phones
        if attributes:
            profile["customAttributes"] = attributes
        return profile

    def phone(self, source: str, value: str) -> Contact:
        """One ``phones`` entry in E.164, typed when ``phone_type`` is set."""
        number = phone_number(source, value, self.default_phone_region)
        entry = {
            "original": phonenumbers.format_number(
                number, phonenumbers.PhoneNumberFormat.E164
            )
        }
        if number.extension:
            entry["extension"] = number.extension
        if self.phone_type:
            entry["type"] = self.phone_type
        return entry


def phone_number(
    source: str, value: str, region: str | None
) -> phonenumbers.PhoneNumber:
    """The number with its country, or the record is rejected.

    Only the length for the country is checked (``is_possible_number``),
    not the number ranges (``is_valid_number``): ranges change faster than
    the installed metadata, and refusing a real customer's number costs more
    than letting Gladly judge it. The number is personal data, so it never
    enters the message.
    """
    try:
        number = phonenumbers.parse(value, region or None)
    except phonenumbers.NumberParseException as exc:
        no_country = (
            exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE
            and not region
            and not value.startswith("+")
        )
        problem = (
            "has no country code and default_phone_region is unset"
            if no_country
            else "cannot be read as a phone number"
        )
        raise invalid_phone(source, problem) from None
    if not phonenumbers.is_possible_number(number):
        raise invalid_phone(source, "has too few or too many digits for its country")
    return number


def invalid_phone(source: str, problem: str) -> RecordRejected:
    """Why a phone number is refused, and the two ways to fix it."""
    message = (
        f"field {source} holds a phone number that {problem}; write it in E.164 "
        "(+, country code and number, e.g. +4512345678) or set "
        "default_phone_region (e.g. DK) for numbers without a country code"
    )
    return RecordRejected("invalid_phone", message, fields=("phone",))


def check_phone_region(region: str | None) -> list[str]:
    """``default_phone_region`` must be a region code phonenumbers knows."""
    if not region or region in phonenumbers.SUPPORTED_REGIONS:
        return []
    message = (
        f"default_phone_region {region!r} is not a known region; use an "
        "upper-case ISO 3166 alpha-2 code such as DK"
    )
    return [message]


def first_email(profile: t.Mapping[str, t.Any]) -> str | None:
    """The normalized first email: the key that upsert matches on."""
    emails = profile.get("emails") or []
    return contract.normalize_email(emails[0]["original"]) if emails else None


def checked_id(profile_id: str) -> str:
    """A mapped id as Gladly accepts it, else the record is rejected."""
    if not contract.ID_PATTERN.fullmatch(profile_id):
        msg = (
            f"id {profile_id!r} is not a valid Gladly customer id (URL-safe "
            "characters A-Z a-z 0-9 . _ ~ -, at most 49)"
        )
        raise RecordRejected("invalid_id", msg, fields=("id",))
    return profile_id


def contact_values(name: str, value: t.Any) -> list[str]:
    """Non-blank, trimmed strings from a scalar or a list value."""
    values = value if isinstance(value, list) else [value]
    texts = (text(name, v).strip() for v in values if v is not None)
    return [v for v in texts if v]


def unique(entries: list[Contact], contact_key: ContactKey) -> list[Contact]:
    """Entries in order, dropping later ones with the same key."""
    seen: set[str] = set()
    kept = []
    for entry in entries:
        key = contact_key(entry)
        if key not in seen:
            seen.add(key)
            kept.append(entry)
    return kept


def text(name: str, value: t.Any) -> str:
    """One scalar value as text, by the rules in the module docstring."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | decimal.Decimal):
        return number_text(name, value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.UTC)
        return str(value.isoformat()).replace("+00:00", "Z")
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    msg = (
        f"field {name} holds a {type(value).__name__}; Gladly profile fields and "
        "custom attributes take only text (flatten it with flattening_enabled "
        "or map a scalar field instead)"
    )
    raise RecordRejected("unsupported_value", msg, fields=(name,))


def number_text(name: str, value: float | decimal.Decimal) -> str:
    """Plain decimal notation: no exponent, no trailing zeros, no ``.0``."""
    number = (
        value if isinstance(value, decimal.Decimal) else decimal.Decimal(str(value))
    )
    if not number.is_finite():
        msg = f"field {name} holds {value}, which is not a finite number"
        raise RecordRejected("unsupported_value", msg, fields=(name,))
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


# --- what a PATCH must carry --------------------------------------------------


def profile_changes(existing: t.Mapping[str, t.Any], wanted: Profile) -> Profile:
    """The PATCH body that brings ``existing`` up to ``wanted``; {} when current.

    Nothing on the profile is lost: PATCH replaces whole arrays, so a new
    email or phone is sent together with every one the profile already has,
    and a number already there keeps its type. Custom attributes are merged
    by Gladly, so only the differing keys are sent. The id never changes.
    """
    changes: Profile = {
        name: wanted[name]
        for name in contract.TEXT_FIELDS
        if name in wanted and wanted[name] != existing.get(name)
    }
    emails = merged_contacts(
        existing.get("emails"), wanted.get("emails"), contract.email_key
    )
    if emails is not None:
        changes["emails"] = emails
    phones = merged_contacts(
        existing.get("phones"), wanted.get("phones"), contract.phone_key
    )
    if phones is not None:
        changes["phones"] = phones
    current = existing.get("customAttributes")
    current = current if isinstance(current, dict) else {}
    attributes = {
        key: value
        for key, value in (wanted.get("customAttributes") or {}).items()
        if current.get(key) != value
    }
    if attributes:
        changes["customAttributes"] = attributes
    return changes


def merged_contacts(
    existing: t.Any, wanted: list[Contact] | None, contact_key: ContactKey
) -> list[dict[str, t.Any]] | None:
    """Existing entries plus the wanted ones they lack; None when none is new.

    Keys are taken from the whole stored entry (before ``CONTACT_KEYS``
    trims it), so a phone's ``regionCode`` counts.
    """
    entries = [
        entry
        for entry in (existing if isinstance(existing, list) else [])
        if isinstance(entry, dict) and isinstance(entry.get("original"), str)
    ]
    known = {contact_key(entry) for entry in entries}
    kept = [{k: e[k] for k in contract.CONTACT_KEYS if k in e} for e in entries]
    new = [e for e in wanted or [] if contact_key(e) not in known]
    return kept + new if new else None
