"""Records to Gladly profile bodies, value typing, and the PATCH merge."""

from __future__ import annotations

import datetime
import decimal
import typing as t

import pytest

from singer_delivery import RecordRejected
from target_gladly.mapping import (
    ProfileMapping,
    check_field_mapping,
    first_email,
    profile_changes,
    text,
)

D = decimal.Decimal


def test_unmapped_fields_keep_their_names_standard_ones_go_to_the_profile() -> None:
    record = {
        "email": " Ada@Example.com ",
        "phone": "+4512345678",
        "name": "Ada",
        "externalCustomerId": 42,
        "tier": "gold",
        "_sdc_extracted_at": "2024-01-01T00:00:00Z",
    }
    assert ProfileMapping().profile(record) == {
        "emails": [{"original": "Ada@Example.com"}],
        "phones": [{"original": "+4512345678"}],
        "name": "Ada",
        "externalCustomerId": "42",
        "customAttributes": {"tier": "gold"},
    }


def test_a_mapping_sends_only_mapped_fields_under_their_profile_names() -> None:
    mapping = ProfileMapping(
        field_mapping={"mail": "email", "full_name": "name", "crm": "crm_id"},
        phone_type="MOBILE",
    )
    record = {"mail": "a@x.com", "full_name": "Ada", "crm": "c-1", "tier": "gold"}
    assert mapping.profile(record) == {
        "emails": [{"original": "a@x.com"}],
        "name": "Ada",
        "customAttributes": {"crm_id": "c-1"},
    }
    assert mapping.profile({"phone": "1"}) == {}
    assert ProfileMapping(
        field_mapping={"mobile": "phone"}, phone_type="MOBILE"
    ).profile({"mobile": "+4512345678"}) == {
        "phones": [{"original": "+4512345678", "type": "MOBILE"}]
    }


def test_list_values_and_several_fields_give_several_entries_without_repeats() -> None:
    mapping = ProfileMapping(
        field_mapping={"work": "email", "home": "email", "tel": "phone"},
        default_phone_region="DK",
    )
    record = {
        "work": ["a@x.com", "b@x.com", " "],
        "home": "A@X.COM",
        "tel": ["+45 12 34 56 78", "12345678", 4587654321],
    }
    assert mapping.profile(record) == {
        "emails": [{"original": "a@x.com"}, {"original": "b@x.com"}],
        "phones": [{"original": "+4512345678"}, {"original": "+4587654321"}],
    }


def test_nulls_and_blank_identifiers_are_left_out() -> None:
    record = {"email": None, "phone": "", "id": "  ", "name": None, "tier": None}
    assert ProfileMapping().profile(record) == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gold", "gold"),
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (D("42.000"), "42"),
        (D("12.50"), "12.5"),
        (D("1E+2"), "100"),
        (D("0.00010"), "0.0001"),
        (2.5, "2.5"),
        (datetime.date(2024, 5, 6), "2024-05-06"),
        (
            datetime.datetime(2024, 5, 6, 9, 8, 9, tzinfo=datetime.UTC),
            "2024-05-06T09:08:09Z",
        ),
        (
            datetime.datetime(
                2024,
                5,
                6,
                9,
                8,
                9,
                tzinfo=datetime.timezone(datetime.timedelta(hours=2)),
            ),
            "2024-05-06T07:08:09Z",
        ),
        (datetime.datetime(2024, 5, 6, 9, 8, 9, 500000), "2024-05-06T09:08:09.500000"),
    ],
)
def test_values_are_written_as_text(value: t.Any, expected: str) -> None:
    assert text("f", value) == expected


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], D("NaN"), float("inf")])
def test_objects_arrays_and_non_finite_numbers_are_rejected(value: t.Any) -> None:
    with pytest.raises(RecordRejected) as raised:
        ProfileMapping().profile({"email": "a@x.com", "score": value})
    assert raised.value.reason == "unsupported_value"
    assert raised.value.fields == ("score",)


@pytest.mark.parametrize("bad_id", ["has space", "x" * 50, "a/b", "ä"])
def test_an_id_gladly_would_refuse_is_rejected_before_sending(bad_id: str) -> None:
    with pytest.raises(RecordRejected) as raised:
        ProfileMapping().profile({"id": bad_id})
    assert raised.value.reason == "invalid_id"
    assert ProfileMapping().profile({"id": 17})["id"] == "17"


def test_first_email_is_the_normalized_upsert_key() -> None:
    profile = ProfileMapping().profile({"email": ["  Ada@Example.COM", "b@x.com"]})
    assert first_email(profile) == "ada@example.com"
    assert first_email({}) is None


def test_field_mapping_problems_name_the_fix() -> None:
    assert check_field_mapping({"a": "email", "b": "email", "c": "phone"}) == []
    [reserved] = check_field_mapping({"mail": "emails"})
    assert "'mail'" in reserved
    assert "'email'" in reserved
    [twice] = check_field_mapping({"a": "name", "b": "name"})
    assert "'a', 'b'" in twice
    assert "only 'email' and 'phone'" in twice


# --- the PATCH merge ----------------------------------------------------------

EXISTING = {
    "id": "p1",
    "name": "Ada",
    "emails": [
        {"original": "Ada@Example.com", "primary": True, "normalized": "x"},
        {"original": "old@x.com"},
    ],
    "phones": [{"original": "+4512345678", "type": "HOME"}],
    "customAttributes": {"tier": "gold", "legacy": "keep"},
    "createdAt": "2020-01-01T00:00:00Z",
}


def test_nothing_differs_means_no_patch() -> None:
    wanted = {
        "name": "Ada",
        "emails": [{"original": "ada@example.COM"}],
        "phones": [{"original": "+45 1234 5678", "type": "MOBILE"}],
        "customAttributes": {"tier": "gold"},
    }
    assert profile_changes(EXISTING, wanted) == {}


def test_new_contacts_are_added_to_every_existing_one() -> None:
    wanted = {
        "emails": [{"original": "ada@example.com"}, {"original": "new@x.com"}],
        "phones": [{"original": "+4587654321", "type": "MOBILE"}],
    }
    assert profile_changes(EXISTING, wanted) == {
        "emails": [
            {"original": "Ada@Example.com", "primary": True},
            {"original": "old@x.com"},
            {"original": "new@x.com"},
        ],
        "phones": [
            {"original": "+4512345678", "type": "HOME"},
            {"original": "+4587654321", "type": "MOBILE"},
        ],
    }


def test_only_differing_fields_and_attribute_keys_are_sent_never_the_id() -> None:
    wanted = {
        "id": "other",
        "name": "Ada L",
        "address": "1 Main St",
        "customAttributes": {"tier": "platinum", "legacy": "keep", "new": "1"},
    }
    assert profile_changes(EXISTING, wanted) == {
        "name": "Ada L",
        "address": "1 Main St",
        "customAttributes": {"tier": "platinum", "new": "1"},
    }


def test_a_profile_without_contacts_or_attributes_takes_the_wanted_ones() -> None:
    wanted = {"emails": [{"original": "a@x.com"}], "customAttributes": {"k": "v"}}
    existing = {"id": "p", "emails": None, "customAttributes": "garbled"}
    assert profile_changes(existing, wanted) == wanted
