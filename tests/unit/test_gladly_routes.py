"""Per-stream routes, the delete call and its stop on a missing role."""

from __future__ import annotations

import typing as t

import pytest
import requests
import requests_mock

from singer_delivery import RetryPolicy, Transport
from singer_delivery.http import FatalApiError
from target_gladly import contract
from target_gladly.client import GladlyClient, ProfileRefused
from target_gladly.settings import STREAM_KEYS, check_routes
from target_gladly.target import TargetGladly

BASE = "http://127.0.0.1:9"
PROFILE = f"{BASE}/api/v1/customer-profiles/p-1"
TOP = {
    "object_type": "customer_profiles",
    "sync_mode": "upsert",
    "field_mapping": {"mail": "email"},
}
ACTIVITY = {
    "object_type": "customer_activity",
    "field_mapping": {"mail": "email", "subject": "title"},
    "activity_type": "OTHER",
}


def test_streams_override_exactly_the_routing_settings() -> None:
    properties = TargetGladly.config_jsonschema["properties"]
    overridable = properties["streams"]["additionalProperties"]["properties"]
    assert tuple(overridable) == STREAM_KEYS
    assert overridable["object_type"]["enum"] == [
        "customer_profiles",
        "customer_activity",
    ]
    assert "default" not in overridable["object_type"], "unset means the top level"
    assert properties["object_type"]["default"] == "customer_profiles"
    assert properties["sync_mode"]["enum"][-1] == "delete"
    assert properties["allow_deletes"]["default"] is False
    assert properties["max_deletes"]["default"] == 100
    for name in ("object_type", "activity_type", "streams", "sync_mode"):
        assert properties[name]["description"]


def test_a_valid_mix_of_routes_has_no_problem() -> None:
    config = {
        **TOP,
        "streams": {
            "tickets": ACTIVITY,
            "erasures": {"sync_mode": "delete"},
            "people": {"field_mapping": {"mail": "email", "name": "name"}},
        },
    }
    assert check_routes(config) == []


def test_stream_problems_are_named_and_top_level_ones_named_once() -> None:
    config = {
        **TOP,
        "field_mapping": {"mail": "emails"},
        "streams": {
            "tickets": {**ACTIVITY, "sync_mode": "update"},
            "people": {"phone_type": "HOME"},
        },
    }
    errors = check_routes(config)
    assert errors[0].startswith("field_mapping maps 'mail' to 'emails'")
    assert [e for e in errors if e.startswith("streams.")] == [
        (
            "streams.tickets: object_type customer_activity cannot be combined with "
            "sync_mode update: activity finds or creates its customer as upsert does "
            "and only adds items; give it sync_mode upsert (the default)"
        )
    ]


def test_a_delete_route_needs_a_field_naming_the_profile() -> None:
    config = {
        **TOP,
        "streams": {"gone": {"sync_mode": "delete", "field_mapping": {"n": "name"}}},
    }
    [error] = check_routes(config)
    assert error.startswith("streams.gone: sync_mode delete names each profile")
    by_id = {**TOP, "sync_mode": "delete", "field_mapping": {"gid": "id"}}
    assert check_routes(by_id) == []


# --- the delete call --------------------------------------------------------


@pytest.fixture
def client() -> GladlyClient:
    transport = Transport(
        base_url=BASE,
        retry=RetryPolicy(total=0),
        fatal_check=contract.credential_failure,
    )
    return GladlyClient(transport)


@pytest.mark.parametrize("status", [204, 404])
def test_deleted_and_already_gone_are_both_done(
    client: GladlyClient, status: int
) -> None:
    with requests_mock.Mocker() as m:
        m.delete(PROFILE, status_code=status)
        client.delete("p-1")


@pytest.mark.parametrize(
    ("status", "body", "reason", "permanent"),
    [
        (400, {"errors": [{"code": "invalid_state"}]}, "open_conversations", False),
        (
            301,
            {"errors": [{"code": "moved", "meta": {"old": "p-1", "new": "p-2"}}]},
            "merged",
            True,
        ),
        (400, {"errors": [{"code": "invalid", "detail": "bad id"}]}, "invalid", True),
    ],
)
def test_a_refused_delete_says_why_and_whether_to_retry(
    client: GladlyClient,
    status: int,
    body: dict[str, t.Any],
    reason: str,
    permanent: bool,
) -> None:
    with requests_mock.Mocker() as m:
        m.delete(PROFILE, status_code=status, json=body)
        with pytest.raises(ProfileRefused) as raised:
            client.delete("p-1")
    assert (raised.value.reason, raised.value.permanent) == (reason, permanent)
    if reason == "merged":
        assert "p-2" in raised.value.message
    if reason == "open_conversations":
        assert "close the customer's conversations" in raised.value.message


def test_a_403_to_a_delete_stops_the_run_naming_the_compliance_admin_role(
    client: GladlyClient,
) -> None:
    with requests_mock.Mocker() as m:
        m.delete(PROFILE, status_code=403, json={"errors": [{"code": "forbidden"}]})
        with pytest.raises(FatalApiError) as raised:
            client.delete("p-1")
    assert "Compliance Admin role" in str(raised.value)


def test_a_403_to_anything_else_still_names_the_api_user_role() -> None:
    response = requests.Response()
    response.status_code = 403
    response.request = requests.Request("GET", BASE).prepare()
    message = contract.credential_failure(response)
    assert message is not None
    assert "API User role" in message
    assert "Compliance Admin" not in message
