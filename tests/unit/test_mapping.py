"""Records to Person Data: mapping, keys and value formats."""

from __future__ import annotations

import decimal
import typing as t

import pytest

from singer_delivery import RecordRejected
from target_agillic.mapping import (
    DATE_FORMAT,
    TIMESTAMP_FORMAT,
    CompiledMapping,
    PersonDataMapping,
    to_strftime,
)

DATES = {
    "type": "object",
    "properties": {
        "D": {"type": ["string", "null"], "format": "date"},
        "T": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
    },
}


def mapping(
    schema: dict[str, t.Any] | None = None, **settings: t.Any
) -> CompiledMapping:
    defaults = {
        "recipient_id_field": "EMAIL",
        "date_format": DATE_FORMAT,
        "timestamp_format": TIMESTAMP_FORMAT,
    }
    chosen = PersonDataMapping.from_settings({**defaults, **settings})
    return chosen.compile(schema or DATES)


def test_without_mapping_fields_keep_their_names_and_sdc_fields_are_dropped() -> None:
    data = mapping().person_data({"EMAIL": "a@b.com", "TIER": "gold", "_sdc_x": 1})
    assert data == {"EMAIL": "a@b.com", "TIER": "gold"}


def test_with_mapping_only_mapped_fields_are_sent() -> None:
    m = mapping(field_mapping={"email": "EMAIL", "first": "FIRSTNAME"})
    data = m.person_data({"email": "a@b.com", "first": "Ada", "secret_col": "x"})
    assert data == {"EMAIL": "a@b.com", "FIRSTNAME": "Ada"}


def test_mapped_field_absent_from_record_is_not_sent() -> None:
    m = mapping(field_mapping={"email": "EMAIL", "first": "FIRSTNAME"})
    assert m.person_data({"email": "a@b.com"}) == {"EMAIL": "a@b.com"}


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_or_blank_recipient_id_is_rejected(value: object) -> None:
    with pytest.raises(RecordRejected) as exc:
        mapping().recipient_id({"EMAIL": value})
    assert exc.value.reason == "missing_recipient_id"
    assert exc.value.fields == ("EMAIL",)


def test_recipient_id_field_is_configurable() -> None:
    m = mapping(recipient_id_field="CUSTOMER_ID")
    assert m.recipient_id({"CUSTOMER_ID": 42, "EMAIL": "x"}) == "42"


def test_dates_and_timestamps_use_the_configured_formats() -> None:
    data = mapping().person_data({"D": "2024-03-07", "T": "2024-03-07T09:05:01"})
    assert data == {"D": "07.03.2024", "T": "07.03.2024 09:05:01"}


def test_custom_formats_and_aware_timestamps_in_utc() -> None:
    m = mapping(date_format="yyyy-MM-dd", timestamp_format="yyyy-MM-dd'T'HH:mm:ss.SSS")
    data = m.person_data({"T": "2024-03-07T09:05:01.250+02:00", "D": "2024-12-31"})
    assert data == {"T": "2024-03-07T07:05:01.250", "D": "2024-12-31"}


def test_invalid_dates_are_rejected_naming_the_field() -> None:
    with pytest.raises(RecordRejected) as exc:
        mapping().person_data({"EMAIL": "a@b.com", "D": "31.12.2024"})
    assert (exc.value.reason, exc.value.fields) == ("invalid_record", ("D",))


def test_decimals_stay_exact_and_integral_ones_become_ints() -> None:
    data = mapping().person_data(
        {"N": decimal.Decimal("12.50"), "I": decimal.Decimal("42.000"), "B": True}
    )
    assert data["N"] == decimal.Decimal("12.50")
    assert data["I"] == 42
    assert isinstance(data["I"], int)
    assert data["B"] is True


def test_nulls_and_empty_strings_are_sent_as_they_are() -> None:
    data = mapping().person_data({"EMAIL": "a@b.com", "FIRSTNAME": None, "TIER": ""})
    assert data == {"EMAIL": "a@b.com", "FIRSTNAME": None, "TIER": ""}


def test_nested_values_are_rejected_naming_the_field() -> None:
    with pytest.raises(RecordRejected) as exc:
        mapping().person_data({"EMAIL": "a@b.com", "ADDR": {"city": "x"}})
    assert exc.value.reason == "unsupported_value"
    assert exc.value.fields == ("ADDR",)


def test_unsupported_pattern_letter_is_named() -> None:
    with pytest.raises(ValueError, match="'Q'"):
        to_strftime("dd.MM.yyyy Q")
    assert to_strftime("dd/MM/yy") == "%d/%m/%y"


def test_quoted_text_is_literal_and_two_quotes_are_one() -> None:
    m = mapping(date_format="'at' dd.MM., 'o''clock' '' 100%")
    assert m.person_data({"D": "2024-03-07"}) == {"D": "at 07.03., o'clock ' 100%"}


@pytest.mark.parametrize(
    ("settings", "record"),
    [
        ({}, {"EMAIL": "a@b.com", "TIER": "gold"}),
        ({"field_mapping": {"mail": "EMAIL", "D": "BIRTH"}}, {"mail": "a@b.com"}),
        ({"recipient_id_field": "ID"}, {"ID": 42}),
    ],
)
def test_the_raw_id_is_the_mapped_id_when_kept_as_is(
    settings: dict[str, t.Any], record: dict[str, t.Any]
) -> None:
    """What lets an unchanged record be recognised before it is mapped."""
    m = mapping(**settings)
    assert m.keeps_id_as_is
    assert m.id_of_raw(record) == m.recipient_id(m.person_data(record))


@pytest.mark.parametrize(
    "settings",
    [
        {"recipient_id_field": "D"},  # a date field: mapping reformats it
        {"field_mapping": {"mail": "EMAIL", "alias": "EMAIL"}},  # two sources
    ],
)
def test_the_raw_id_is_not_trusted_when_mapping_may_change_it(
    settings: dict[str, t.Any],
) -> None:
    assert not mapping(**settings).keeps_id_as_is


def test_the_source_a_field_takes_unchanged_is_named_only_when_there_is_one() -> None:
    m = mapping(field_mapping={"order": "ID", "D": "BIRTH", "a": "X", "b": "X"})
    assert m.source_kept_as_is("ID") == "order"
    assert m.source_kept_as_is("BIRTH") is None  # a date field: reformatted
    assert m.source_kept_as_is("X") is None  # two sources
    assert m.source_kept_as_is("NOT_MAPPED") is None
    assert mapping().source_kept_as_is("TIER") == "TIER"  # no mapping: as named
