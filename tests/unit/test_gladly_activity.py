"""Customer activity: mapping, Gladly's limits, item ids and the item calls."""

from __future__ import annotations

import datetime
import threading
import time
import typing as t

import pytest
import requests_mock

from singer_delivery import RecordRejected, RetryPolicy, Transport
from target_gladly import contract
from target_gladly.activity import (
    ActivityMapping,
    OncePer,
    check_activity_mapping,
    too_old,
)
from target_gladly.client import GladlyClient, ProfileRefused

BASE = "http://127.0.0.1:9"
ITEMS = f"{BASE}/api/v1/customers/p-1/conversation-items"
MAPPING = {
    "mail": "email",
    "mobile": "phone",
    "subject": "title",
    "text": "body",
    "kind": "activityType",
    "system": "sourceName",
    "url": "link",
    "label": "linkText",
    "at": "occurredAt",
}
NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)


def payload(
    mapping: ActivityMapping | None = None, **record: t.Any
) -> dict[str, t.Any]:
    mapping = mapping or ActivityMapping(field_mapping=MAPPING, activity_type="OTHER")
    return mapping.payload({"mail": "Ada@X.com ", "subject": "Hi", **record})


def rejected(**record: t.Any) -> RecordRejected:
    with pytest.raises(RecordRejected) as raised:
        payload(**record)
    return raised.value


def test_a_full_record_becomes_the_item_gladly_takes() -> None:
    assert payload(
        text="Body",
        kind=" sms ",
        system="Shop",
        url="https://x.example/1",
        label="Open",
        at="2026-05-31T14:00:00+02:00",
        unmapped="ignored",
    ) == {
        "customer": {"email": "ada@x.com"},
        "occurredAt": "2026-05-31T12:00:00Z",
        "content": {
            "type": "CUSTOMER_ACTIVITY",
            "title": "Hi",
            "activityType": "SMS",
            "body": "Body",
            "sourceName": "Shop",
            "link": {"url": "https://x.example/1", "text": "Open"},
        },
    }


def test_defaults_blanks_and_a_link_text_without_a_url() -> None:
    item = payload(text="  ", label="Open", kind=None, at="2026-05-31")
    assert item["content"] == {
        "type": "CUSTOMER_ACTIVITY",
        "title": "Hi",
        "activityType": "OTHER",
    }
    assert item["occurredAt"] == "2026-05-31T00:00:00Z", "no zone: UTC"


def test_without_a_mapping_fields_are_read_under_activity_names() -> None:
    mapping = ActivityMapping(activity_type="EMAIL")
    record = {"email": "a@x.com", "title": "T", "body": "B", "tier": "gold"}
    assert mapping.payload(record) == {
        "customer": {"email": "a@x.com"},
        "content": {
            "type": "CUSTOMER_ACTIVITY",
            "title": "T",
            "activityType": "EMAIL",
            "body": "B",
        },
    }


def test_email_names_the_customer_else_phone_in_e164() -> None:
    mapping = ActivityMapping(
        field_mapping=MAPPING, activity_type="OTHER", default_phone_region="DK"
    )
    both = payload(mapping, mobile="12345678")
    assert both["customer"] == {"email": "ada@x.com"}
    phone_only = payload(mapping, mail=None, mobile="12 34 56 78")
    assert phone_only["customer"] == {"phone": "+4512345678"}
    listed = payload(mapping, mail=["", "b@x.com", "c@x.com"])
    assert listed["customer"] == {"email": "b@x.com"}


@pytest.mark.parametrize(
    ("record", "reason", "field"),
    [
        ({"subject": "x" * 101}, "title_too_long", "subject"),
        ({"subject": None}, "missing_title", "title"),
        ({"text": "y" * 25_001}, "body_too_long", "text"),
        ({"kind": "pigeon"}, "invalid_activity_type", "kind"),
        ({"at": "2026-13-01"}, "invalid_occurred_at", "at"),
        ({"at": 1717243200}, "invalid_occurred_at", "at"),
        ({"mail": " "}, "missing_customer", "email"),
        ({"mail": None, "mobile": "12345678"}, "invalid_phone", "phone"),
    ],
)
def test_what_gladly_would_refuse_is_rejected_naming_the_field(
    record: dict[str, t.Any], reason: str, field: str
) -> None:
    exc = rejected(**record)
    assert exc.reason == reason
    assert field in exc.fields


def test_at_the_limits_the_item_is_kept() -> None:
    item = payload(subject="x" * 100, text="y" * 25_000)
    assert len(item["content"]["title"]) == 100
    assert len(item["content"]["body"]) == 25_000


def test_without_activity_type_the_record_must_hold_one() -> None:
    mapping = ActivityMapping(field_mapping=MAPPING)
    with pytest.raises(RecordRejected) as raised:
        payload(mapping)
    assert raised.value.reason == "missing_activity_type"
    assert "activity_type" in raised.value.message


def test_age_is_checked_when_sent_against_one_year() -> None:
    fresh = {"occurredAt": (NOW - datetime.timedelta(days=365)).isoformat()}
    stale = {"occurredAt": "2025-05-01T00:00:00Z"}
    assert too_old(fresh, NOW) is None
    assert too_old({}, NOW) is None
    refused = too_old(stale, NOW)
    assert refused is not None
    assert (refused.reason, refused.permanent) == ("occurred_at_too_old", True)


def test_mapping_checks_name_each_problem() -> None:
    assert check_activity_mapping(MAPPING, None) == []
    errors = check_activity_mapping(
        {"a": "name", "b": "email", "c": "email"}, activity_type=None
    )
    assert any("'a' to 'name'" in e for e in errors)
    assert any("'b', 'c' to 'email'" in e for e in errors)
    assert any("no field to title" in e for e in errors)
    assert any("activity_type is unset" in e for e in errors)
    [missing_customer] = check_activity_mapping({"s": "title"}, "OTHER")
    assert "email or phone" in missing_customer


def test_item_ids_depend_on_stream_and_key_and_fit_gladly() -> None:
    first = contract.item_id("orders", "id=1")
    assert first == contract.item_id("orders", "id=1")
    assert first != contract.item_id("tickets", "id=1")
    assert first != contract.item_id("orders", "id=2")
    assert contract.ID_PATTERN.fullmatch(first)


def test_once_per_key_runs_one_lookup_for_threads_asking_together() -> None:
    calls: list[str] = []

    def lookup(key: str) -> str:
        calls.append(key)
        time.sleep(0.05)
        if key == "bad":
            raise ProfileRefused("ambiguous_email", "two")
        return key.upper()

    once = OncePer(lookup)
    results: list[t.Any] = []

    def ask(key: str) -> None:
        try:
            results.append(once(key))
        except ProfileRefused as exc:
            results.append(exc.reason)

    threads = [threading.Thread(target=ask, args=(k,)) for k in ["a"] * 5 + ["bad"] * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(calls) == ["a", "bad"]
    assert sorted(results) == ["A"] * 5 + ["ambiguous_email"] * 3
    assert once.answers() == ["A"]


# --- the calls -------------------------------------------------------------


@pytest.fixture
def client() -> GladlyClient:
    return GladlyClient(Transport(base_url=BASE, retry=RetryPolicy(total=0)))


@pytest.mark.parametrize(
    ("status", "body", "created"),
    [
        (201, None, True),
        (409, {"errors": [{"code": "taken", "detail": "item exists"}]}, False),
        (400, {"errors": [{"attr": "id", "code": "taken", "detail": "x"}]}, False),
    ],
)
def test_a_repeated_item_id_means_the_item_is_there(
    client: GladlyClient, status: int, body: t.Any, created: bool
) -> None:
    with requests_mock.Mocker() as m:
        m.post(ITEMS, status_code=status, json=body)
        assert client.create_item("p-1", {"id": "tg-1"}) is created


def test_an_item_for_a_vanished_customer_is_tried_again_later(
    client: GladlyClient,
) -> None:
    with requests_mock.Mocker() as m:
        m.post(ITEMS, status_code=404, json={"errors": [{"code": "not_found"}]})
        with pytest.raises(ProfileRefused) as raised:
            client.create_item("p-1", {"id": "tg-1"})
        m.post(ITEMS, status_code=400, json={"errors": [{"code": "invalid"}]})
        with pytest.raises(ProfileRefused) as invalid:
            client.create_item("p-1", {"id": "tg-1"})
    assert (raised.value.reason, raised.value.permanent) == ("customer_gone", False)
    assert (invalid.value.reason, invalid.value.permanent) == ("invalid", True)
