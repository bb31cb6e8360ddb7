"""Schema-aware reading of record values, shared by the destinations' mappings.

Singer records carry dates and timestamps as ISO 8601 strings, marked by
their schema's ``format``. A mapping works out once per schema which fields
are dates (``date_kinds``) and parses their values with ``parse_iso``.
"""

from __future__ import annotations

import datetime
import typing as t

#: Schema formats read as dates, and how.
PARSERS: dict[str, t.Callable[[str], datetime.date]] = {
    "date-time": datetime.datetime.fromisoformat,
    "date": datetime.date.fromisoformat,
}


def date_kind(prop: t.Mapping[str, t.Any]) -> str | None:
    """``date-time`` or ``date`` when a property holds one, else None.

    Looks into ``anyOf`` too, as taps write nullable formatted strings that way.
    """
    if prop.get("format") in PARSERS:
        return str(prop["format"])
    for option in prop.get("anyOf") or ():
        if isinstance(option, dict) and option.get("format") in PARSERS:
            return str(option["format"])
    return None


def date_kinds(schema: t.Mapping[str, t.Any]) -> dict[str, str]:
    """{field: kind} for every date or date-time field of a stream schema."""
    return {
        name: kind
        for name, prop in (schema.get("properties") or {}).items()
        if isinstance(prop, dict) and (kind := date_kind(prop))
    }


def parse_iso(kind: str, text: str) -> datetime.date:
    """Parse an ISO 8601 date or date-time; ``ValueError`` when it is not one."""
    return PARSERS[kind](text)
