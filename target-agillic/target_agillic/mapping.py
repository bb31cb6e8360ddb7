"""Records to Agillic Person Data, compiled once per stream schema.

Agillic takes strings, numbers and booleans; dates and timestamps are
strings in the instance's format, written with Java-style patterns
(``dd.MM.yyyy``). Timestamps with a time zone are converted to UTC first.
Nulls are sent as nulls and empty strings as empty strings: the batch upsert
sets exactly the fields it is given, so a value is cleared only when the
source row holds null or "" for a mapped field (see the README).

A mapping is compiled per schema: each mapped field gets its converter
(dates parsed and formatted in one cached step, decimals made exact), so
the per-record work is one loop over the mapped fields.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import re
import typing as t
from dataclasses import dataclass

from singer_delivery import RecordRejected
from singer_delivery.outcomes import Reason
from singer_delivery.values import date_kinds, parse_iso

DATE_FORMAT = "dd.MM.yyyy"
TIMESTAMP_FORMAT = "dd.MM.yyyy HH:mm:ss"

_PATTERN_TOKENS = {
    "yyyy": "%Y",
    "yy": "%y",
    "MM": "%m",
    "dd": "%d",
    "HH": "%H",
    "mm": "%M",
    "ss": "%S",
    "SSS": "{millis}",
}
#: Quoted text (``''`` inside it, or alone, is a quote), a pattern letter
#: run, or other literal characters.
_TOKEN_RE = re.compile(
    r"'(?:[^']|'')*'|yyyy|yy|MM|dd|HH|mm|ss|SSS|[A-Za-z]|[^A-Za-z']+"
)

Converter = t.Callable[[str, t.Any], t.Any]


def to_strftime(pattern: str) -> str:
    """Turn a Java date pattern into a strftime format.

    Raises ``ValueError`` naming the first letter it does not support.
    """
    parts = []
    for token in _TOKEN_RE.findall(pattern):
        if token in _PATTERN_TOKENS:
            parts.append(_PATTERN_TOKENS[token])
        elif token.startswith("'"):
            text = token[1:-1].replace("''", "'") or "'"
            parts.append(text.replace("%", "%%"))
        elif token.isalpha():
            msg = (
                f"pattern letter {token!r} is not supported; use yyyy, yy, MM, dd, "
                "HH, mm, ss, SSS and quoted literals"
            )
            raise ValueError(msg)
        else:
            parts.append(token.replace("%", "%%"))
    return "".join(parts)


@dataclass(frozen=True)
class PersonDataMapping:
    """How one stream's records become Person Data (from its settings)."""

    recipient_id_field: str
    field_mapping: t.Mapping[str, str] | None
    date_strftime: str
    timestamp_strftime: str

    @classmethod
    def from_settings(cls, settings: t.Mapping[str, t.Any]) -> PersonDataMapping:
        """Build from (already validated) target or stream settings."""
        return cls(
            recipient_id_field=settings["recipient_id_field"],
            field_mapping=settings.get("field_mapping"),
            date_strftime=to_strftime(settings["date_format"]),
            timestamp_strftime=to_strftime(settings["timestamp_format"]),
        )

    def compile(self, schema: t.Mapping[str, t.Any]) -> CompiledMapping:
        """The mapping for records of one schema."""
        return CompiledMapping(self, date_kinds(schema))

    def pattern_for(self, kind: str) -> str:
        """The strftime format of a ``date`` or ``date-time`` field."""
        return self.timestamp_strftime if kind == "date-time" else self.date_strftime


class CompiledMapping:
    """Maps records of one schema; converters chosen once per field."""

    def __init__(self, mapping: PersonDataMapping, kinds: t.Mapping[str, str]) -> None:
        self.mapping = mapping
        self._kinds = kinds
        self._converters: dict[str, Converter | None] = {}
        pairs = mapping.field_mapping
        self._fields = (
            [
                (source, target, self._converter(source))
                for source, target in pairs.items()
            ]
            if pairs is not None
            else None
        )
        self._id_source = next(
            (s for s, d in (pairs or {}).items() if d == mapping.recipient_id_field),
            mapping.recipient_id_field,
        )

    def _converter(self, source: str) -> Converter | None:
        if source not in self._converters:
            kind = self._kinds.get(source)
            self._converters[source] = (
                functools.partial(_date_value, kind, self.mapping.pattern_for(kind))
                if kind
                else None
            )
        return self._converters[source]

    def person_data(self, record: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
        """Mapped fields only when a mapping is given, else every field as is."""
        fields = self._fields
        if fields is None:
            fields = [
                (name, name, self._converter(name))
                for name in record
                if not name.startswith("_sdc_")
            ]
        data: dict[str, t.Any] = {}
        for source, target, convert in fields:
            if source not in record:
                continue
            value = record[source]
            if convert is not None:
                value = convert(source, value)
            elif type(value) not in _AS_IS:
                value = plain_value(source, value)
            data[target] = value
        return data

    def recipient_id(self, person_data: t.Mapping[str, t.Any]) -> str:
        """The recipient's ID, or a reject when it is missing or blank."""
        value = person_data.get(self.mapping.recipient_id_field)
        if value is None or (isinstance(value, str) and not value.strip()):
            field = self.mapping.recipient_id_field
            msg = f"the recipient ID field {field} is missing or empty after mapping"
            raise RecordRejected("missing_recipient_id", msg, fields=(field,))
        return str(value)

    def source_kept_as_is(self, field: str) -> str | None:
        """The record field whose value Person Data field ``field`` takes
        unchanged: the only one mapped to it, with no date format to convert."""
        pairs = self.mapping.field_mapping
        sources = (
            [s for s, d in pairs.items() if d == field]
            if pairs is not None
            else [field]
        )
        if len(sources) != 1 or self._converter(sources[0]) is not None:
            return None
        return sources[0]

    @property
    def keeps_id_as_is(self) -> bool:
        """Whether ``id_of_raw`` gives exactly the ID that mapping gives."""
        return (
            self.source_kept_as_is(self.mapping.recipient_id_field) == self._id_source
        )

    def id_of_raw(self, record: t.Mapping[str, t.Any]) -> str | None:
        """The recipient ID straight from the record, when it is usable as is.

        A record rejected for another field still names its recipient: a
        mirror must count it as seen.
        """
        value = record.get(self._id_source)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return None


_AS_IS = frozenset({str, bool, int, float, type(None)})


def plain_value(name: str, value: t.Any) -> t.Any:
    """A value of no declared format, in Agillic's terms."""
    if isinstance(value, decimal.Decimal):
        return _number(name, value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    msg = (
        f"field {name} holds a {type(value).__name__}; Agillic takes only "
        "strings, numbers, booleans, dates and timestamps (flatten it with "
        "flattening_enabled or map a scalar field instead)"
    )
    raise RecordRejected(Reason.UNSUPPORTED_VALUE, msg, fields=(name,))


def _date_value(kind: str, pattern: str, name: str, value: t.Any) -> t.Any:
    if value is None or value == "":
        return value
    if not isinstance(value, str):
        return plain_value(name, value)
    try:
        return format_iso(kind, pattern, value)
    except ValueError:
        what = "date-time" if kind == "date-time" else "date"
        msg = f"{name} is not a valid ISO 8601 {what}"
        raise RecordRejected(Reason.INVALID_RECORD, msg, fields=(name,)) from None


@functools.lru_cache(maxsize=4096)
def format_iso(kind: str, pattern: str, text: str) -> str:
    """Parse an ISO 8601 date or date-time and write it in the instance's format.

    Cached because warehouse columns repeat dates a lot, and parsing and
    ``strftime`` were the largest per-record costs. Small, because
    timestamps rarely repeat: 65,536 entries held 23 MiB more at the peak of
    a run whose timestamps were all distinct. Aware timestamps are written
    in UTC.
    """
    value = parse_iso(kind, text)
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        value = value.astimezone(datetime.UTC)
    formatted = value.strftime(pattern)
    if "{millis}" in formatted and isinstance(value, datetime.datetime):
        formatted = formatted.replace("{millis}", f"{value.microsecond // 1000:03d}")
    return formatted


def _number(name: str, value: decimal.Decimal) -> decimal.Decimal | int:
    """Integral decimals become ints (``42``, not ``42.0``); others stay exact."""
    if not value.is_finite():
        msg = f"field {name} holds {value}, which is not a finite number"
        raise RecordRejected(Reason.UNSUPPORTED_VALUE, msg, fields=(name,))
    if value == value.to_integral_value():
        return int(value)
    return value
