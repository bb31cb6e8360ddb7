"""Phone numbers go to Gladly in E.164, or the record is rejected."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest
import requests_mock
from singer_sdk.exceptions import ConfigValidationError

from singer_delivery import RecordRejected
from target_gladly.contract import phone_key
from target_gladly.mapping import ProfileMapping, check_phone_region, profile_changes
from target_gladly.sinks import CustomerProfileSink
from target_gladly.target import TargetGladly

BASE = "http://127.0.0.1:9"

DK = ProfileMapping(default_phone_region="DK")


def phones(mapping: ProfileMapping, value: t.Any) -> list[dict[str, str]]:
    phones: list[dict[str, str]] = mapping.profile({"phone": value})["phones"]
    return phones


@pytest.mark.parametrize(
    ("value", "region", "e164"),
    [
        ("+45 12 34 56 78", None, "+4512345678"),
        ("+45 12 34 56 78", "US", "+4512345678"),
        ("12345678", "DK", "+4512345678"),
        ("12 34 56 78", "DK", "+4512345678"),
        ("0045 12345678", "DK", "+4512345678"),
        (4512345678, "DK", "+4512345678"),
        ("(202) 555-0123", "US", "+12025550123"),
        ("+44 20 7946 0958", "DK", "+442079460958"),
    ],
)
def test_numbers_are_sent_in_e164(value: t.Any, region: str | None, e164: str) -> None:
    mapping = ProfileMapping(default_phone_region=region)
    assert phones(mapping, value) == [{"original": e164}]


def test_the_entry_keeps_its_type_and_extension() -> None:
    mapping = ProfileMapping(phone_type="MOBILE", default_phone_region="DK")
    assert phones(mapping, "12 34 56 78 ext. 9") == [
        {"original": "+4512345678", "extension": "9", "type": "MOBILE"}
    ]


def test_repeats_are_found_in_e164_whatever_their_form() -> None:
    assert phones(DK, ["+45 12 34 56 78", "12345678", "(12) 34-56-78"]) == [
        {"original": "+4512345678"}
    ]


@pytest.mark.parametrize(
    ("value", "region", "problem"),
    [
        ("87654321", None, "has no country code and default_phone_region is unset"),
        ("98765432", "", "has no country code and default_phone_region is unset"),
        ("call me", "DK", "cannot be read as a phone number"),
        ("+999 9876 5432", None, "cannot be read as a phone number"),
        ("+45 9876", None, "has too few or too many digits for its country"),
        ("9876543210987", "DK", "has too few or too many digits for its country"),
    ],
)
def test_a_number_without_a_sure_country_rejects_the_record(
    value: str, region: str | None, problem: str
) -> None:
    mapping = ProfileMapping(
        field_mapping={"mobile": "phone", "mail": "email"},
        default_phone_region=region,
    )
    with pytest.raises(RecordRejected) as raised:
        mapping.profile({"mail": "a@x.com", "mobile": ["+4587654321", value]})
    rejected = raised.value
    assert (rejected.reason, rejected.fields) == ("invalid_phone", ("phone",))
    assert rejected.message.startswith(
        f"field mobile holds a phone number that {problem};"
    )
    assert "default_phone_region" in rejected.message
    assert "E.164" in rejected.message
    digits = "".join(c for c in value if c.isdigit()) or value
    assert digits not in "".join(c for c in rejected.message if c.isdigit())


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"original": "+45 12 34 56 78"}, "+4512345678"),
        ({"original": "12345678", "regionCode": "DK"}, "+4512345678"),
        # Gladly reads a stored number without + or regionCode as a US number
        ({"original": "(202) 555-0123"}, "+12025550123"),
        ({"original": "not a number (x)"}, "notanumberx"),
    ],
)
def test_stored_numbers_are_compared_as_gladly_reads_them(
    entry: dict[str, str], key: str
) -> None:
    assert phone_key(entry) == key


def test_a_stored_number_in_another_form_is_not_added_again() -> None:
    existing = {
        "id": "p",
        "phones": [
            {"original": "12 34 56 78", "regionCode": "DK", "type": "HOME"},
            {"original": "202-555-0123"},
        ],
    }
    wanted = {"phones": [{"original": "+4512345678"}, {"original": "+12025550123"}]}
    assert profile_changes(existing, wanted) == {}


def test_default_phone_region_must_be_a_known_upper_case_region() -> None:
    assert check_phone_region(None) == []
    assert check_phone_region("") == []
    assert check_phone_region("DK") == []
    for bad in ("dk", "DNK", "XX", "Denmark", "001"):
        [error] = check_phone_region(bad)
        assert error.startswith(f"default_phone_region {bad!r} is not a known region")
        assert "such as DK" in error
        assert "\n" not in error


def test_the_target_refuses_an_unknown_region_at_startup() -> None:
    properties = TargetGladly.config_jsonschema["properties"]
    assert "default" not in properties["default_phone_region"]
    config = {
        "domain": "example",
        "username": "api@example.com",
        "api_token": "token",
        "default_phone_region": "Denmark",
    }
    with pytest.raises(ConfigValidationError) as raised:
        TargetGladly(config=config)
    assert any("default_phone_region 'Denmark'" in e for e in raised.value.errors)


def test_the_sink_reads_numbers_in_default_phone_region(tmp_path: Path) -> None:
    config = {
        "domain": "example",
        "base_url": BASE,
        "username": "api@example.com",
        "api_token": "token",
        "default_phone_region": "DK",
        "ledger_url": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
    }
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/api/v1/organization", json={"id": "org"})
        target = TargetGladly(config=config)
        target.start()
    schema = {"type": "object", "properties": {}}
    sink = target.get_sink("customers", schema=schema, key_properties=[])
    assert isinstance(sink, CustomerProfileSink)
    try:
        _key, profile = sink.map_record({"email": "a@x.com", "phone": "12345678"})
    finally:
        target.finish(error=None, interrupted=False)
    assert profile["phones"] == [{"original": "+4512345678"}]


def test_a_patch_sends_stored_phones_back_with_region_extension_and_sms() -> None:
    stored = {
        "original": "12 34 56 78",
        "regionCode": "DK",
        "extension": "9",
        "smsPreference": "ON",
        "type": "MOBILE",
        "normalized": "+4512345678",
    }
    changes = profile_changes(
        {"id": "p", "phones": [stored]}, {"phones": [{"original": "+4587654321"}]}
    )
    kept = {k: v for k, v in stored.items() if k != "normalized"}
    assert changes == {"phones": [kept, {"original": "+4587654321"}]}
