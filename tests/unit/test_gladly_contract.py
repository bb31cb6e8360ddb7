"""Lenient reading of Gladly's answers: error envelopes, finds, merges."""

from __future__ import annotations

import json
import typing as t

import pytest
import requests

from target_gladly import contract
from target_gladly.client import Conflict, ProfileRefused, conflict_refusal


def answer(
    status: int, body: t.Any = None, headers: dict[str, str] | None = None
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.reason = "Reason"
    response._content = b"" if body is None else json.dumps(body).encode()
    response.headers.update(headers or {})
    return response


def test_errors_as_a_list_or_a_single_object() -> None:
    entry = {"attr": "emails", "code": "taken", "detail": "in use", "meta": {"id": "p"}}
    for body in ({"errors": [entry]}, {"errors": entry}):
        [problem] = contract.problems_of(answer(409, body))
        assert (problem.attr, problem.code, problem.detail) == (
            "emails",
            "taken",
            "in use",
        )
        assert problem.meta == {"id": "p"}


@pytest.mark.parametrize("body", [None, "text", {"errors": None}, {"errors": [1]}])
def test_error_bodies_are_never_required_to_parse(body: t.Any) -> None:
    response = answer(400, body)
    if body == "text":
        response._content = b"<html>oops</html>"
    assert contract.first_problem(response) == contract.ApiProblem("http_400", "Reason")


def test_a_find_answer_that_is_not_a_list_finds_nothing() -> None:
    assert contract.profiles_of(answer(200, {"results": []})) == []
    found = contract.profiles_of(answer(200, [{"id": "p", "x": 1}, {"no": "id"}]))
    assert found == [{"id": "p", "x": 1}]


def test_a_merged_profile_names_its_survivor_in_meta_or_location() -> None:
    moved = {"errors": [{"code": "moved", "meta": {"old": "a", "new": "b"}}]}
    assert contract.moved_to(answer(301, moved)) == "b"
    located = answer(301, headers={"Location": "/api/v1/customer-profiles/c%2Bd"})
    assert contract.moved_to(located) == "c+d"


def test_credential_failures_name_the_settings_to_fix() -> None:
    assert contract.credential_failure(answer(404)) is None
    unauthorized = contract.credential_failure(answer(401))
    forbidden = contract.credential_failure(answer(403))
    assert unauthorized
    assert "username" in unauthorized
    assert "api_token" in unauthorized
    assert forbidden
    assert "permission" in forbidden
    assert "username" in forbidden


def test_profile_paths_percent_encode_the_id() -> None:
    assert contract.profile_path("a b/c") == "/api/v1/customer-profiles/a%20b%2Fc"


@pytest.mark.parametrize(
    ("attr", "reason"),
    [("emails", "email_taken"), ("phones", "phone_taken"), ("id", "id_taken")],
)
def test_conflicts_become_rejects_naming_the_other_profile(
    attr: str, reason: str
) -> None:
    refused = conflict_refusal(Conflict(attr, "p-9", "taken"))
    assert isinstance(refused, ProfileRefused)
    assert (refused.reason, refused.http_status, refused.fields) == (
        reason,
        409,
        (attr,),
    )
    assert "p-9" in refused.message
