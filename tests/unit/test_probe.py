"""The shared probe machinery: rows for every shape, the call cap, the table."""

from __future__ import annotations

import json
import typing as t

import pytest
import requests
from requests.adapters import HTTPAdapter

from singer_delivery.http import Transport
from singer_delivery.probe import (
    CONFIRMED,
    NOT_CHECKED,
    Answer,
    CallCapReached,
    Check,
    Prober,
    ProbeRetry,
    Report,
    Shape,
    body_shape,
    safe_word,
)

READ = Shape("read", "answers 200")
WRITE = Shape("write", "answers 201", needs_write=True)


def response(
    status: int, body: t.Any = None, headers: dict[str, str] | None = None
) -> requests.Response:
    """A ``requests.Response`` as the transport returns it."""
    answer = requests.Response()
    answer.status_code = status
    answer._content = b"" if body is None else json.dumps(body).encode()
    answer.headers.update(headers or {})
    return answer


@pytest.fixture
def fake_wire(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every request reaching the wire answers 200; returns the URLs sent."""
    sent: list[str] = []

    def send(
        self: HTTPAdapter, request: requests.PreparedRequest, *args: t.Any, **kw: t.Any
    ) -> requests.Response:
        sent.append(str(request.url))
        return response(200, {"ok": True})

    monkeypatch.setattr(HTTPAdapter, "send", send)
    return sent


def test_the_call_over_the_cap_is_never_sent(fake_wire: list[str]) -> None:
    prober = Prober(Transport("https://api.example.com"), [READ], write=False, limit=3)
    for _ in range(3):
        prober.call("GET", "/x", "GET /x")

    with pytest.raises(CallCapReached, match="cap of 3 API calls"):
        prober.call("GET", "/x", "GET /x")
    assert len(fake_wire) == 3
    assert prober.counter.sent == 3


def test_calls_made_outside_the_prober_count_too(fake_wire: list[str]) -> None:
    """The token request of an authenticator goes through the same session."""
    transport = Transport("https://api.example.com")
    prober = Prober(transport, [READ], write=False)
    transport.request("POST", "/oauth2/token", authenticate=False)
    prober.call("GET", "/x", "GET /x")

    assert prober.counter.sent == 2
    assert [r.status_code for r in prober.counter.answered("/oauth2/token")] == [200]
    assert prober.answers[0].label == "GET /x -> 200"


def test_only_a_429_is_repeated() -> None:
    retry = ProbeRetry(total=1)
    assert retry.is_retry(429)
    assert not retry.is_retry(500)
    assert not retry.is_retry(503)


def test_every_declared_shape_gets_a_row_saying_why_it_is_missing(
    fake_wire: list[str],
) -> None:
    other = Shape("other", "answers 204")
    prober = Prober(
        Transport("https://api.example.com"), [READ, WRITE, other], write=False
    )
    answer = prober.call("GET", "/x", "GET /x")
    prober.confirm(READ, "200", answer)

    rows = prober.checks(stopped=False)
    assert [(r.shape, r.status, r.seen) for r in rows] == [
        ("read", CONFIRMED, "200"),
        ("write", NOT_CHECKED, "needs --write"),
        ("other", NOT_CHECKED, "not reached"),
    ]
    assert rows[0].calls == ["GET /x -> 200"]
    stopped = prober.checks(stopped=True)
    assert stopped[2].seen == "not reached: the probe stopped first (see error)"


def test_write_calls_lists_only_write_methods(fake_wire: list[str]) -> None:
    prober = Prober(Transport("https://api.example.com"), [READ], write=False)
    prober.call("GET", "/x", "GET /x")
    prober.call("PATCH", "/x/1", "PATCH /x/{id}", body={})

    assert prober.write_calls() == ["PATCH /x/{id} -> 200"]


def test_the_table_wraps_what_was_seen_under_its_column() -> None:
    report = Report(
        target="target-x",
        version="1.0",
        instance="api.example.com",
        time="2025-01-01T00:00:00+00:00",
        write=False,
        api_calls=4,
        call_cap=25,
        error=None,
        checks=[
            Check("short", CONFIRMED, "ok", "ok"),
            Check("a longer shape", NOT_CHECKED, "word " * 20, "x"),
        ],
        write_calls=[],
        left_behind=["probe-1"],
    )
    lines = report.table(width=60).splitlines()

    assert lines[0].startswith("target-x 1.0 probe of api.example.com (read-only)")
    assert lines[2] == "confirmed    short           ok"
    assert lines[3].startswith("not checked  a longer shape  word word")
    assert lines[4].startswith(" " * 29 + "word")
    assert all(len(line) <= 60 for line in lines[2:-1])
    assert lines[-1] == "Left behind (remove by hand): probe-1"
    assert json.loads(report.to_json())["checks"][0] == {
        "shape": "short",
        "status": CONFIRMED,
        "seen": "ok",
        "expected": "ok",
        "calls": [],
    }


@pytest.mark.parametrize(
    ("status", "body", "headers", "shape"),
    [
        (200, {"b": 1, "a": 2}, {}, "a JSON object with keys a, b"),
        (200, [1, 2], {}, "a JSON array of 2"),
        (204, None, {}, "an empty body"),
    ],
)
def test_body_shapes_name_keys_never_values(
    status: int, body: t.Any, headers: dict[str, str], shape: str
) -> None:
    answer = Answer("GET", "GET /x", response(status, body, headers))
    assert body_shape(answer) == shape


def test_a_non_json_body_is_named_by_its_content_type() -> None:
    html = response(404, headers={"Content-Type": "text/html; charset=utf-8"})
    html._content = b"<html>Not Found</html>"
    assert body_shape(Answer("GET", "GET /x", html)) == "a non-JSON body (text/html)"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("NOT_FOUND", "NOT_FOUND"),
        ("in-progress", "in-progress"),
        (7200, "7200"),
        ("jane@example.com", "<str>"),
        ("x" * 41, "<str>"),
    ],
)
def test_only_short_words_are_shown(value: t.Any, shown: str) -> None:
    assert safe_word(value) == shown
