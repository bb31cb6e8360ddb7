"""Agillic events and deletes: the event call's shape and the routing checks."""

from __future__ import annotations

import json
import typing as t

import pytest
import requests

from target_agillic import contract, settings
from target_agillic.target import TargetAgillic


def answer(status: int, body: t.Any) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    return response


def test_event_path_encodes_the_recipient_and_the_event() -> None:
    path = contract.event_path("a+b/c d@x.com", "Order placed/EU")
    assert path == (
        "/recipients/a%2Bb%2Fc%20d%40x.com/events/Order%20placed%2FEU/"
        ":achieveWithContext"
    )


def test_event_body_holds_the_context_parameters() -> None:
    assert contract.event_body({"ORDER_ID": "o-1"}) == {
        "context_parameters": {"ORDER_ID": "o-1"}
    }


@pytest.mark.parametrize(
    ("message", "about_event"),
    [
        ("event ORDER_PLACED not found", True),
        ("Event 'ORDER_PLACED' does not exist", True),
        ("recipient not found", False),
        ("event ORDER_PLACED_EU not found", False),
        ("event PRE-ORDER_PLACED not found", False),
    ],
)
def test_a_404_is_about_the_event_only_when_it_names_it(
    message: str, about_event: bool
) -> None:
    response = answer(404, {"status": 404, "code": "NOT_FOUND", "message": message})
    assert contract.names_event(response, "ORDER_PLACED") is about_event


def test_a_404_without_a_json_body_is_read_as_the_recipient_missing() -> None:
    response = requests.Response()
    response.status_code = 404
    response._content = b"<html>Not Found</html>"
    assert not contract.names_event(response, "ORDER_PLACED")


REQUIRED = {"api_endpoint": "https://api-eu1.agillic.net", "developer_key": "k"}


def problems(**config: t.Any) -> list[str]:
    full = TargetAgillic.read_config(
        {**REQUIRED, "developer_secret": "s", **config}, parse_env=False
    )
    return settings.check(full)


def test_event_and_delete_routes_are_accepted_on_their_own() -> None:
    assert problems(object_type="event", event_name="ORDER_PLACED") == []
    assert problems(sync_mode="delete", allow_deletes=True) == []
    assert (
        problems(
            streams={
                "orders": {"object_type": "event", "event_name": "ORDER_PLACED"},
                "gone": {"sync_mode": "delete"},
            }
        )
        == []
    )


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"object_type": "event"},
            ["top-level settings: object_type event needs event_name"],
        ),
        (
            {"sync_mode": "delete", "audience_mode": "add", "target_group_name": "G"},
            ["top-level settings: sync_mode delete cannot be combined with audience"],
        ),
        (
            {"sync_mode": "delete", "object_type": "event", "event_name": "E"},
            ["top-level settings: sync_mode delete deletes recipients"],
        ),
        (
            {"streams": {"s": {"sync_mode": "delete", "object_type": "one_to_many"}}},
            [
                "streams.s: sync_mode delete deletes recipients",
                "streams.s: object_type one_to_many needs one_to_many_table_id",
            ],
        ),
        (
            {
                "object_type": "event",
                "event_name": "E",
                "audience_mode": "mirror",
                "target_group_name": "G",
            },
            ["top-level settings: audience_mode cannot be combined with object_type"],
        ),
    ],
)
def test_invalid_combinations_are_named_once_each(
    config: dict[str, t.Any], expected: list[str]
) -> None:
    found = problems(**config)
    assert len(found) == len(expected), found
    for problem, start in zip(found, expected, strict=True):
        assert problem.startswith(start), problem
