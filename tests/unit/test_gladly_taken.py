"""Uniqueness clashes: Gladly answers 409 or 400 with code taken, one meaning."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest
import requests_mock

from singer_delivery import Action, Item, Outcome, RetryPolicy, Transport
from singer_delivery.serialization import canonical_json
from target_gladly.client import Conflict, GladlyClient, ProfileRefused
from target_gladly.sinks import CustomerProfileSink
from target_gladly.target import TargetGladly

BASE = "http://127.0.0.1:9"
PROFILES = f"{BASE}/api/v1/customer-profiles"
SCHEMA = {"type": "object", "properties": {}}


def taken(attr: str, holder: str | None = None) -> dict[str, t.Any]:
    entry: dict[str, t.Any] = {"attr": attr, "code": "taken", "detail": "in use"}
    if holder:
        entry["meta"] = {"id": holder}
    return {"errors": [entry]}


#: The same clash in Gladly's two forms.
CLASH_STATUSES = pytest.mark.parametrize("status", [409, 400])


@pytest.fixture
def client() -> GladlyClient:
    transport = Transport(base_url=BASE, retry=RetryPolicy(total=0))
    return GladlyClient(transport)


@CLASH_STATUSES
def test_a_create_that_clashes_returns_the_conflict(
    client: GladlyClient, status: int
) -> None:
    with requests_mock.Mocker() as m:
        m.post(PROFILES, status_code=status, json=taken("emails", "p-1"))
        conflict = client.create({"emails": [{"original": "a@x.com"}]})
    assert conflict == Conflict("emails", "p-1", "in use", status)


def test_the_taken_entry_is_read_even_after_other_problems(
    client: GladlyClient,
) -> None:
    body = {
        "errors": [
            {"attr": "name", "code": "invalid", "detail": "too long"},
            *taken("phones", "p-2")["errors"],
        ]
    }
    with requests_mock.Mocker() as m:
        m.post(PROFILES, status_code=400, json=body)
        conflict = client.create({"name": "x"})
    assert conflict == Conflict("phones", "p-2", "in use", 400)


def test_a_400_without_taken_is_a_plain_refusal(client: GladlyClient) -> None:
    body = {"errors": [{"attr": "emails", "code": "invalid", "detail": "bad"}]}
    with requests_mock.Mocker() as m:
        m.post(PROFILES, status_code=400, json=body)
        with pytest.raises(ProfileRefused) as raised:
            client.create({"emails": [{"original": "a@"}]})
        m.patch(f"{PROFILES}/p-1", status_code=400, json=body)
        with pytest.raises(ProfileRefused) as patched:
            client.patch("p-1", {"emails": [{"original": "a@"}]})
    for refused in (raised.value, patched.value):
        assert (refused.reason, refused.http_status) == ("invalid", 400)


@CLASH_STATUSES
@pytest.mark.parametrize(
    ("attr", "reason"),
    [("emails", "email_taken"), ("phones", "phone_taken"), ("id", "id_taken")],
)
def test_a_patch_that_clashes_is_refused_naming_the_field_and_holder(
    client: GladlyClient, status: int, attr: str, reason: str
) -> None:
    with requests_mock.Mocker() as m:
        m.patch(f"{PROFILES}/p-1", status_code=status, json=taken(attr, "p-9"))
        with pytest.raises(ProfileRefused) as raised:
            client.patch("p-1", {"emails": [{"original": "a@x.com"}]})
    refused = raised.value
    assert (refused.reason, refused.http_status, refused.fields) == (
        reason,
        status,
        (attr,),
    )
    assert "p-9" in refused.message


# --- the sink: insert and the upsert race ------------------------------------


def profile_sink(
    tmp_path: Path, sync_mode: str
) -> tuple[TargetGladly, CustomerProfileSink]:
    config = {
        "domain": "example",
        "base_url": BASE,
        "username": "api@example.com",
        "api_token": "token",
        "sync_mode": sync_mode,
        "max_retries": 0,
        "ledger_url": f"sqlite:///{tmp_path / 'ledger.sqlite'}",
    }
    with requests_mock.Mocker() as m:
        m.get(f"{BASE}/api/v1/organization", json={"id": "org"})
        target = TargetGladly(config=config)
        target.start()
    sink = target.get_sink("customers", schema=SCHEMA, key_properties=[])
    assert isinstance(sink, CustomerProfileSink)
    return target, sink


def deliver(
    target: TargetGladly, sink: CustomerProfileSink, **record: t.Any
) -> Outcome:
    """Deliver one record on the run's threads, then end the run; its outcome."""
    key, payload = sink.map_record(record)
    item = Item(key, canonical_json(payload), "-", key, seq=0)
    try:
        [outcome] = sink.deliver([item])
    finally:
        target.finish(error=None, interrupted=False)
    return outcome


@CLASH_STATUSES
def test_insert_refuses_a_profile_that_exists_in_either_form(
    tmp_path: Path, status: int
) -> None:
    target, sink = profile_sink(tmp_path, "insert")
    with requests_mock.Mocker() as m:
        m.post(PROFILES, status_code=status, json=taken("emails", "p-1"))
        reject = deliver(target, sink, email="ada@x.com").reject
    assert reject is not None
    assert reject.reason == "already_exists"
    assert "p-1" in reject.message


@CLASH_STATUSES
def test_upsert_patches_the_profile_another_writer_created_first(
    tmp_path: Path, status: int
) -> None:
    """Nobody had the email at the find; someone had it at the create."""
    target, sink = profile_sink(tmp_path, "upsert")
    quicker = {"id": "quicker", "emails": [{"original": "ada@x.com"}]}
    with requests_mock.Mocker() as m:
        m.get(PROFILES, json=[])
        m.post(PROFILES, status_code=status, json=taken("emails", "quicker"))
        m.get(f"{PROFILES}/quicker", json=quicker)
        patch = m.patch(f"{PROFILES}/quicker", status_code=204)
        outcome = deliver(target, sink, email="ada@x.com", tier="gold")
    assert outcome.reject is None
    assert patch.last_request is not None
    assert patch.last_request.json() == {"customAttributes": {"tier": "gold"}}
    assert outcome.actions == (Action.UPDATED,)
