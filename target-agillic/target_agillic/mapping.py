"""Records to Agillic Person Data.

Agillic takes strings, numbers and booleans; dates and timestamps are
strings in the instance's format, written with Java-style patterns
(``dd.MM.yyyy``). Timestamps with a time zone are converted to UTC first.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import re
import typing as t
from dataclasses import dataclass

from singer_delivery.sink import RecordRejected

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
_TOKEN_RE = re.compile(r"'[^']*'|yyyy|yy|MM|dd|HH|mm|ss|SSS|[A-Za-z]|[^A-Za-z']+")


def to_strftime(pattern: str) -> str:
    """Turn a Java date pattern into a strftime format.

    Raises ``ValueError`` naming the first letter it does not support.
    """
    parts = []
    for token in _TOKEN_RE.findall(pattern):
        if token in _PATTERN_TOKENS:
            parts.append(_PATTERN_TOKENS[token])
        elif token.startswith("'"):
            parts.append(token.strip("'").replace("%", "%%") or "'")
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
    """How one stream's records become Person Data."""

    recipient_id_field: str
    field_mapping: t.Mapping[str, str] | None
    date_strftime: str
    timestamp_strftime: str

    @classmethod
    def from_settings(cls, settings: t.Mapping[str, t.Any]) -> PersonDataMapping:
        """Build from (already validated) target or stream settings."""
        return cls(
            recipient_id_field=settings.get("recipient_id_field") or "EMAIL",
            field_mapping=settings.get("field_mapping"),
            date_strftime=to_strftime(settings.get("date_format") or DATE_FORMAT),
            timestamp_strftime=to_strftime(
                settings.get("timestamp_format") or TIMESTAMP_FORMAT
            ),
        )

    def person_data(self, record: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
        """Mapped fields only when a mapping is given, else every field as is."""
        if self.field_mapping is not None:
            pairs = [
                (target, record[source])
                for source, target in self.field_mapping.items()
                if source in record
            ]
        else:
            pairs = [(k, v) for k, v in record.items() if not k.startswith("_sdc_")]
        # plain values skip the call: this runs for every field of every record
        return {
            name: value if type(value) in _AS_IS else self.value(name, value)
            for name, value in pairs
        }

    def recipient_id(self, person_data: t.Mapping[str, t.Any]) -> str:
        """The recipient's ID, or a reject when it is missing or blank."""
        value = person_data.get(self.recipient_id_field)
        if value is None or (isinstance(value, str) and not value.strip()):
            msg = (
                f"the recipient ID field {self.recipient_id_field} is missing or "
                "empty after mapping"
            )
            raise RecordRejected(
                "missing_recipient_id", msg, fields=(self.recipient_id_field,)
            )
        return str(value)

    def value(self, name: str, value: t.Any) -> t.Any:
        """One value in Agillic's terms."""
        if value is None or isinstance(value, _PLAIN):
            return value
        if isinstance(value, _NUMBERS):
            return _number(value)
        if isinstance(value, datetime.date):  # datetimes too
            return format_date(value, self.pattern_for(value))
        msg = (
            f"field {name} holds a {type(value).__name__}; Agillic takes only "
            "strings, numbers, booleans, dates and timestamps (flatten it with "
            "flattening_enabled or map a scalar field instead)"
        )
        raise RecordRejected("unsupported_value", msg, fields=(name,))

    def pattern_for(self, value: datetime.date) -> str:
        """The timestamp format for datetimes, the date format for dates."""
        if isinstance(value, datetime.datetime):
            return self.timestamp_strftime
        return self.date_strftime


_PLAIN = (str, bool, int)
_AS_IS = frozenset({str, bool, int, type(None)})
_NUMBERS = (decimal.Decimal, float)


@functools.lru_cache(maxsize=65536)
def format_date(value: datetime.date, pattern: str) -> str:
    """Format a date or timestamp; aware timestamps are written in UTC.

    Cached because warehouse columns repeat dates a lot and ``strftime`` is
    a large part of the per-record cost.
    """
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        value = value.astimezone(datetime.UTC)
    text = value.strftime(pattern)
    if "{millis}" in text and isinstance(value, datetime.datetime):
        text = text.replace("{millis}", f"{value.microsecond // 1000:03d}")
    return text


def _number(value: decimal.Decimal | float) -> decimal.Decimal | int | float:
    """Integral decimals become ints (``42``, not ``42.0``); others stay exact."""
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            msg = f"number {value} is not finite"
            raise RecordRejected("unsupported_value", msg)
        if value == value.to_integral_value():
            return int(value)
    return value
