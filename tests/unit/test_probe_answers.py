"""How the probes read answers a real server might give but the emulators don't.

Agillic: whether a 404 for an unknown task comes from an endpoint or from
no endpoint at all. Gladly: what the rate-limit counts say about the budget.
"""

from __future__ import annotations

import json
import typing as t

import pytest
import requests

from singer_delivery.http import Transport
from singer_delivery.probe import CONFIRMED, DIFFERS, NOT_CHECKED, Answer, Prober
from target_agillic.probe import is_endpoint
from target_gladly.probe import BUDGET, check_budget


def answer(
    status: int,
    body: t.Any = None,
    *,
    text: str | None = None,
    headers: dict[str, str] | None = None,
    method: str = "GET",
) -> Answer:
    """An answer as the transport returns it."""
    response = requests.Response()
    response.status_code = status
    response._content = text.encode() if text is not None else json.dumps(body).encode()
    response.headers.update(headers or {})
    return Answer(method, f"{method} /x", response)


@pytest.mark.parametrize(
    ("status", "body", "text", "endpoint"),
    [
        (
            404,
            {"status": 404, "code": "NOT_FOUND", "message": "task not found"},
            None,
            True,
        ),
        (400, {"status": 400, "code": "BAD_REQUEST", "message": "bad id"}, None, True),
        (
            404,
            {"status": 404, "code": "NOT_FOUND", "message": "no endpoint GET /x"},
            None,
            False,
        ),
        (404, None, "<html><body>Not Found</body></html>", False),
        (
            404,
            {"timestamp": "...", "status": 404, "error": "Not Found", "path": "/x"},
            None,
            False,
        ),
        (405, None, "", False),
        (500, {"status": 500, "code": "INTERNAL"}, None, None),
        (200, {"taskId": "x"}, None, None),
    ],
)
def test_an_endpoint_speaks_the_api_envelope_no_endpoint_does_not(
    status: int, body: t.Any, text: str | None, endpoint: bool | None
) -> None:
    assert is_endpoint(answer(status, body, text=text)) is endpoint


def budget(gets: list[int], patch: int, limit: int = 10) -> tuple[str, str]:
    """The budget row for GETs and a PATCH reporting these remaining counts."""
    prober = Prober(Transport("https://x.gladly.com"), [BUDGET], write=False)
    head = {"Ratelimit-Limit-Second": str(limit)}
    answers = [
        answer(200, {}, headers={**head, "Ratelimit-Remaining-Second": str(g)})
        for g in gets
    ]
    patched = answer(
        404,
        {},
        headers={**head, "Ratelimit-Remaining-Second": str(patch)},
        method="PATCH",
    )
    check_budget(prober, "auto", answers, patched)
    (row,) = prober.checks(stopped=False)
    return row.status, row.seen


@pytest.mark.parametrize(
    ("gets", "patch", "status", "seen"),
    [
        ([9, 8, 7, 6], 9, CONFIRMED, "its own budget"),
        ([9, 8, 7, 6], 8, CONFIRMED, "its own budget"),  # another client's PATCH
        ([9, 8, 7, 6], 5, DIFFERS, "one budget for all"),
        ([9, 8, 7, 6], 6, DIFFERS, "one budget for all"),  # a GET aged out
        ([9, 8, 7, 6], 7, NOT_CHECKED, "between the predictions"),
        ([9, 9, 9, 8], 9, NOT_CHECKED, "too far apart"),  # slow answers
        ([5, 4, 3, 2], 9, CONFIRMED, "its own budget"),  # others' GETs too
    ],
)
def test_the_patch_count_tells_a_shared_budget_from_separate_ones(
    gets: list[int], patch: int, status: str, seen: str
) -> None:
    row_status, row_seen = budget(gets, patch)
    assert row_status == status
    assert seen in row_seen


def test_missing_headers_leave_the_budget_not_checked() -> None:
    prober = Prober(Transport("https://x.gladly.com"), [BUDGET], write=False)
    check_budget(prober, "auto", [answer(200, {})], answer(404, {}, method="PATCH"))
    (row,) = prober.checks(stopped=False)
    assert (row.status, row.seen) == (
        NOT_CHECKED,
        "answers lacked the rate-limit headers",
    )
