"""Agillic emulator variants, listing, events and wire faults, over real HTTP.

Each variant is a shape a real instance was seen to use (or may use) where
the contracts file had to assume one; the tests check both settings so that
a client can be tested against either.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from typing_extensions import override

from delivery_emulators import AgillicEmulator, EmulatorServer
from delivery_emulators.base import Response
from tests.test_emulators import (
    AGILLIC_CREDENTIALS,
    ROOT,
    TIMEOUT,
    Client,
    agillic_token,
    person,
)

ADD = "/recipients/:addToStaticTargetGroup"
REMOVE = "/recipients/:removeFromStaticTargetGroup"


@pytest.fixture
def client(agillic_emulator: AgillicEmulator) -> Iterator[Client]:
    """Client holding a valid bearer token."""
    with requests.Session() as session:
        token = agillic_token(agillic_emulator.url)
        session.headers["Authorization"] = f"Bearer {token}"
        yield Client(agillic_emulator.url, session)


def configure(client: Client, **settings: Any) -> requests.Response:
    return client("POST", "/_emulator/config", json=settings)


def upsert(client: Client, *entries: dict[str, Any]) -> str:
    response = client("POST", "/recipients/v2/:upsert", json={"recipients": entries})
    assert response.status_code == 202
    return str(response.json()["taskId"])


def poll(client: Client, task_id: str, path: str = "recipients") -> dict[str, Any]:
    response = client("GET", f"/{path}/v2/task/{task_id}")
    assert response.status_code == 200
    return dict(response.json())


# -- task status words and polls --------------------------------------------


def test_standard_words_with_polls_before_done(
    client: Client, agillic_emulator: AgillicEmulator
) -> None:
    assert configure(client, task_polls_before_done=2).status_code == 200
    task_id = upsert(client, person("a@x.com"))
    assert poll(client, task_id)["status"] == "running"
    assert "a@x.com" not in agillic_emulator.recipients  # applied once due
    assert poll(client, task_id)["status"] == "running"
    assert poll(client, task_id)["status"] == "completed"
    assert "a@x.com" in agillic_emulator.recipients


@pytest.mark.parametrize("word", ["pending", "IN_PROGRESS"])
def test_single_word_for_unfinished_tasks(
    client: Client, agillic_emulator: AgillicEmulator, word: str
) -> None:
    configure(client, task_status_words=word, task_polls_before_done=2)
    task_id = upsert(client, person("a@x.com"))
    assert poll(client, task_id)["status"] == word
    assert agillic_emulator.recipients == {}
    assert poll(client, task_id)["status"] == word
    done = poll(client, task_id)
    assert done["status"] == "completed"
    assert done["details"]["result"]["created"] == 1


def test_unfinished_word_by_delay_alone(agillic_emulator: AgillicEmulator) -> None:
    agillic_emulator.configure(task_status_words="pending", task_delay=60)
    with requests.Session() as session:
        session.auth = AGILLIC_CREDENTIALS
        task_id = upsert(Client(agillic_emulator.url, session), person("a@x.com"))
        url = f"{agillic_emulator.url}/recipients/v2/task/{task_id}"
        assert session.get(url, timeout=TIMEOUT).json()["status"] == "pending"


@pytest.mark.parametrize("word", ["", "two words", "completed", "failed"])
def test_bad_status_words_are_refused(client: Client, word: str) -> None:
    assert configure(client, task_status_words=word).status_code == 400


def test_zero_polls_before_done_keeps_todays_behaviour(client: Client) -> None:
    task_id = upsert(client, person("a@x.com"))
    assert poll(client, task_id)["status"] == "completed"


# -- task result shapes -----------------------------------------------------


def test_structured_result_reports_refused_entries(
    client: Client, agillic_emulator: AgillicEmulator
) -> None:
    configure(client, refuse={"field": "TIER", "equals": "banned"})
    task_id = upsert(client, person("a@x.com"), person("b@x.com", TIER="banned"))
    result = poll(client, task_id)["details"]["result"]
    assert (result["processed"], result["failed"]) == (2, 1)
    assert result["errors"][0]["code"] == "REFUSED"


def test_string_result_hides_refused_entries(
    client: Client, agillic_emulator: AgillicEmulator
) -> None:
    configure(
        client,
        task_result_shape="string",
        refuse={"field": "TIER", "equals": "banned"},
    )
    task_id = upsert(client, person("a@x.com"), person("b@x.com", TIER="banned"))
    done = poll(client, task_id)
    assert done["status"] == "completed"
    assert done["details"] == {"result": "Processed 2 entries"}
    assert set(agillic_emulator.recipients) == {"a@x.com"}


def test_missing_result_has_no_details(
    client: Client, agillic_emulator: AgillicEmulator
) -> None:
    configure(
        client, task_result_shape="missing", refuse={"field": "TIER", "equals": "x"}
    )
    done = poll(client, upsert(client, person("a@x.com"), person("b@x.com", TIER="x")))
    assert done == {"taskId": done["taskId"], "status": "completed"}
    assert set(agillic_emulator.recipients) == {"a@x.com"}


def test_string_result_of_a_failed_task(
    client: Client, agillic_emulator: AgillicEmulator
) -> None:
    configure(client, task_result_shape="string", fail_next_tasks=1)
    failed = poll(client, upsert(client, person("a@x.com")))
    assert failed["status"] == "failed"
    assert failed["details"]["result"] == "Processing failed, no entries applied"
    assert agillic_emulator.recipients == {}


def test_unknown_result_shape_is_refused(client: Client) -> None:
    assert configure(client, task_result_shape="xml").status_code == 400


# -- task path ----------------------------------------------------------------


def test_tasks_served_on_the_recipients_path_by_default(
    client: Client, agillic_emulator: AgillicEmulator
) -> None:
    task_id = upsert(client, person("a@x.com"))
    assert poll(client, task_id)["status"] == "completed"
    assert client("GET", f"/messages/v2/task/{task_id}").status_code == 404


def test_tasks_served_only_on_the_messages_path(
    client: Client, agillic_emulator: AgillicEmulator
) -> None:
    configure(client, task_path="messages")
    task_id = upsert(client, person("a@x.com"))
    assert poll(client, task_id, "messages")["status"] == "completed"
    unknown = client("GET", f"/recipients/v2/task/{task_id}")
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "NOT_FOUND"
    assert "no endpoint" in unknown.json()["message"]
    assert agillic_emulator.requests[-1].route == "GET UNMATCHED"
    assert configure(client, task_path="elsewhere").status_code == 400


# -- daily quota code ---------------------------------------------------------


def test_custom_quota_code(client: Client, agillic_emulator: AgillicEmulator) -> None:
    configure(client, daily_quota=0, quota_code="QUOTA_SPENT")
    spent = client("GET", "/discovery/onetomany")
    assert (spent.status_code, spent.json()["code"]) == (429, "QUOTA_SPENT")


def test_empty_quota_code_looks_like_any_429(
    client: Client, agillic_emulator: AgillicEmulator
) -> None:
    agillic_emulator.configure(max_concurrency=0)
    busy = client("GET", "/discovery/onetomany")
    agillic_emulator.configure(max_concurrency=20, daily_quota=0, quota_code="")
    spent = client("GET", "/discovery/onetomany")
    assert spent.status_code == busy.status_code == 429
    assert spent.json() == busy.json()
    assert spent.json()["code"] == "TOO_MANY_REQUESTS"
    assert spent.headers.get("Retry-After") is None


# -- HTTP Basic on resource endpoints ----------------------------------------


def test_basic_auth_accepted_and_counted(agillic_emulator: AgillicEmulator) -> None:
    url = f"{agillic_emulator.url}/discovery/persondata"
    ok = requests.get(url, auth=AGILLIC_CREDENTIALS, timeout=TIMEOUT)
    wrong = requests.get(url, auth=("demo-key", "nope"), timeout=TIMEOUT)
    assert ok.status_code == 200
    assert (wrong.status_code, wrong.json()["code"]) == (401, "UNAUTHORIZED")
    assert agillic_emulator.quota_used == 1
    agillic_emulator.daily_quota = 1
    spent = requests.get(url, auth=AGILLIC_CREDENTIALS, timeout=TIMEOUT)
    assert spent.json()["code"] == "DAILY_QUOTA_EXCEEDED"


def test_basic_auth_refused_when_off(agillic_emulator: AgillicEmulator) -> None:
    agillic_emulator.configure(basic_auth=False)
    url = f"{agillic_emulator.url}/discovery/persondata"
    basic = requests.get(url, auth=AGILLIC_CREDENTIALS, timeout=TIMEOUT)
    assert basic.status_code == 401
    bearer = {"Authorization": f"Bearer {agillic_token(agillic_emulator.url)}"}
    assert requests.get(url, headers=bearer, timeout=TIMEOUT).status_code == 200
    assert agillic_emulator.quota_used == 1


# -- static group API ---------------------------------------------------------


def group_change(
    client: Client, path: str, ids: list[str], group: str = "VIP"
) -> requests.Response:
    return client("POST", path, json={"targetGroupName": group, "recipientIds": ids})


def test_group_api_checks(client: Client, agillic_emulator: AgillicEmulator) -> None:
    configure(client, add_group={"name": "VIP"})
    agillic_emulator.recipients["a@x.com"] = {"EMAIL": "a@x.com"}
    empty = group_change(client, ADD, [])
    assert empty.status_code == 400
    assert "recipientIds must hold 1..100 ids" in empty.json()["message"]
    unknown = group_change(client, ADD, ["a@x.com"], group="Nope")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "NOT_FOUND")
    assert group_change(client, ADD, ["a@x.com"]).status_code == 200
    assert agillic_emulator.members("VIP") == {"a@x.com"}


def test_group_api_can_be_absent(
    client: Client, agillic_emulator: AgillicEmulator
) -> None:
    agillic_emulator.add_group("VIP")
    configure(client, group_api=False)
    for path in (ADD, REMOVE):
        absent = group_change(client, path, ["a@x.com"])
        assert absent.status_code == 404
        assert "no endpoint" in absent.json()["message"]
    assert client("GET", "/discovery/targetgroups").status_code == 200
    configure(client, group_api=True)
    assert group_change(client, REMOVE, ["a@x.com"]).status_code == 200


def test_members_and_out_of_band_removal(
    client: Client, agillic_emulator: AgillicEmulator
) -> None:
    agillic_emulator.add_group("VIP")
    agillic_emulator.recipients.update(
        {r: {"EMAIL": r} for r in ("a@x.com", "b@x.com", "c@x.com")}
    )
    group_change(client, ADD, ["a@x.com", "b@x.com", "c@x.com"])
    agillic_emulator.remove_member("VIP", "a@x.com")
    member = {"group": "VIP", "recipient_id": "b@x.com"}
    assert configure(client, remove_member=member).status_code == 200
    assert agillic_emulator.members("VIP") == {"c@x.com"}
    state = client("GET", "/_emulator/state").json()
    assert state["target_groups"]["VIP"]["members"] == ["c@x.com"]
    assert (
        configure(client, remove_member={**member, "group": "Nope"}).status_code == 400
    )
    with pytest.raises(ValueError, match="Nope"):
        agillic_emulator.members("Nope")


# -- listing by RSQL filter ---------------------------------------------------


@pytest.fixture
def listed(agillic_emulator: AgillicEmulator) -> AgillicEmulator:
    """Five recipients, stored in this order."""
    agillic_emulator.recipients.update(
        {
            "a@x.com": {"EMAIL": "a@x.com", "TIER": "gold", "COUNTRY": "DK"},
            "b@x.com": {"EMAIL": "b@x.com", "TIER": "gold", "COUNTRY": "SE"},
            "c@x.com": {"EMAIL": "c@x.com", "TIER": "silver", "OPT_IN": True},
            "a,b@x.com": {"EMAIL": "a,b@x.com", "LIFETIME_VALUE": 12.5},
            "d+e@x.com": {"EMAIL": "d+e@x.com"},
        }
    )
    return agillic_emulator


def found(client: Client, rsql: str | None = None, **paging: int) -> list[str]:
    params: dict[str, Any] = dict(paging)
    if rsql is not None:
        params["filter"] = rsql
    response = client("GET", "/recipients", params=params)
    assert response.status_code == 200, response.text
    return [entry["personData"]["EMAIL"] for entry in response.json()]


@pytest.mark.parametrize(
    ("rsql", "emails"),
    [
        ("EMAIL==a@x.com", ["a@x.com"]),
        ("EMAIL==c@x.com,EMAIL==a@x.com", ["a@x.com", "c@x.com"]),
        ("TIER==gold;COUNTRY==SE", ["b@x.com"]),
        ("TIER==gold;COUNTRY==DK,TIER==silver", ["a@x.com", "c@x.com"]),
        ("TIER==silver,TIER==gold;COUNTRY==DK", ["a@x.com", "c@x.com"]),
        ('EMAIL=="a,b@x.com"', ["a,b@x.com"]),
        ("EMAIL=='a,b@x.com',EMAIL==d+e@x.com", ["a,b@x.com", "d+e@x.com"]),
        ("OPT_IN==true", ["c@x.com"]),
        ("LIFETIME_VALUE==12.5", ["a,b@x.com"]),
        ("EMAIL==nobody@x.com", []),
        (None, ["a@x.com", "b@x.com", "c@x.com", "a,b@x.com", "d+e@x.com"]),
    ],
)
def test_list_by_filter(
    client: Client, listed: AgillicEmulator, rsql: str | None, emails: list[str]
) -> None:
    assert found(client, rsql) == emails


def test_list_filter_is_percent_decoded(
    client: Client, listed: AgillicEmulator
) -> None:
    raw = "/recipients?filter=EMAIL%3D%3D%22a%2Cb%40x.com%22%2CEMAIL%3D%3Dd%2Be%40x.com"
    body = client("GET", raw).json()
    assert [entry["personData"]["EMAIL"] for entry in body] == [
        "a,b@x.com",
        "d+e@x.com",
    ]
    assert body[0] == {"personData": {"EMAIL": "a,b@x.com", "LIFETIME_VALUE": 12.5}}


def test_list_pages(client: Client, listed: AgillicEmulator) -> None:
    assert found(client, pageSize=2) == ["a@x.com", "b@x.com"]
    assert found(client, pageSize=2, pageStart=2) == ["c@x.com", "a,b@x.com"]
    assert found(client, pageSize=2, pageStart=4) == ["d+e@x.com"]
    assert found(client, pageStart=9) == []
    assert len(found(client, pageSize=1000)) == 5
    assert listed.quota_used == 5


def test_list_default_page_size_is_100(
    client: Client, agillic_emulator: AgillicEmulator
) -> None:
    agillic_emulator.recipients.update(
        {f"r{i:03}@x.com": {"EMAIL": f"r{i:03}@x.com"} for i in range(150)}
    )
    assert found(client) == [f"r{i:03}@x.com" for i in range(100)]
    assert found(client, pageStart=100) == [f"r{i:03}@x.com" for i in range(100, 150)]


@pytest.mark.parametrize(
    "params",
    [
        {"pageSize": "1001"},
        {"pageSize": "0"},
        {"pageSize": "ten"},
        {"pageStart": "-1"},
        {"filter": ""},
        {"filter": "EMAIL!=a@x.com"},
        {"filter": "EMAIL=="},
        {"filter": "EMAIL==a@x.com,"},
        {"filter": "EMAIL==a@x.com;;TIER==gold"},
        {"filter": "(EMAIL==a@x.com)"},
        {"filter": "EMAIL=='a@x.com"},
        {"filter": "EMAIL==a'b"},
        {"filter": "EMAIL=in=(a@x.com)"},
        {"filter": "SHOE==42"},
    ],
    ids=str,
)
def test_list_refuses_bad_queries(
    client: Client, listed: AgillicEmulator, params: dict[str, str]
) -> None:
    response = client("GET", "/recipients", params=params)
    assert (response.status_code, response.json()["code"]) == (400, "BAD_REQUEST")


# -- events -------------------------------------------------------------------


def fire(
    client: Client, recipient: str, event: str, body: Any = None
) -> requests.Response:
    path = f"/recipients/{recipient}/events/{event}/:achieveWithContext"
    return client("POST", path, json=body)


def test_events_are_recorded_every_time(
    client: Client, agillic_emulator: AgillicEmulator
) -> None:
    agillic_emulator.recipients["a+b@x.com"] = {"EMAIL": "a+b@x.com"}
    context = {"context_parameters": {"ORDER": "o-1", "AMOUNT": 5, "VIP": True}}
    first = fire(client, "a%2Bb%40x.com", "ORDER_PLACED", context)
    assert (first.status_code, first.json()) == (200, {})
    assert fire(client, "a%2Bb%40x.com", "ORDER_PLACED", context).status_code == 200
    assert fire(client, "a%2Bb%40x.com", "WELCOME").status_code == 200
    assert fire(client, "a%2Bb%40x.com", "WELCOME", {}).status_code == 200
    placed = agillic_emulator.fired("ORDER_PLACED")
    assert len(placed) == 2
    assert placed[0].recipient_id == "a+b@x.com"
    assert placed[0].context_parameters == context["context_parameters"]
    assert placed[0].fired_at <= placed[1].fired_at
    assert [e.event for e in agillic_emulator.fired()] == ["ORDER_PLACED"] * 2 + [
        "WELCOME"
    ] * 2
    assert agillic_emulator.fired("WELCOME")[0].context_parameters == {}
    state = client("GET", "/_emulator/state").json()
    assert state["fired_events"][0]["event"] == "ORDER_PLACED"
    assert agillic_emulator.write_calls() == 4
    client("POST", "/_emulator/reset")
    assert agillic_emulator.fired() == []


@pytest.mark.parametrize(
    "body",
    [
        {"context_parameters": {"NESTED": {"a": 1}}},
        {"context_parameters": {"LIST": [1]}},
        {"context_parameters": {"NULL": None}},
        {"context_parameters": ["a"]},
        {"context_parameters": None},
        ["not", "an", "object"],
    ],
    ids=str,
)
def test_event_context_must_be_scalars(
    client: Client, agillic_emulator: AgillicEmulator, body: Any
) -> None:
    agillic_emulator.recipients["a@x.com"] = {"EMAIL": "a@x.com"}
    response = fire(client, "a%40x.com", "WELCOME", body)
    assert (response.status_code, response.json()["code"]) == (400, "BAD_REQUEST")
    garbled = client(
        "POST",
        "/recipients/a%40x.com/events/WELCOME/:achieveWithContext",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert garbled.status_code == 400
    assert agillic_emulator.fired() == []


def test_event_for_unknown_recipient(
    client: Client, agillic_emulator: AgillicEmulator
) -> None:
    missing = fire(client, "ghost%40x.com", "WELCOME")
    assert (missing.status_code, missing.json()["code"]) == (404, "NOT_FOUND")
    assert agillic_emulator.fired() == []


def test_known_events(client: Client, agillic_emulator: AgillicEmulator) -> None:
    agillic_emulator.recipients["a@x.com"] = {"EMAIL": "a@x.com"}
    assert configure(client, known_events="WELCOME, CHURNED").status_code == 200
    assert agillic_emulator.known_events == ["WELCOME", "CHURNED"]
    assert fire(client, "a%40x.com", "CHURNED").status_code == 200
    unknown = fire(client, "a%40x.com", "BIRTHDAY")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "NOT_FOUND")
    assert "BIRTHDAY" in unknown.json()["message"]
    assert configure(client, known_events=["BIRTHDAY"]).status_code == 200
    assert fire(client, "a%40x.com", "BIRTHDAY").status_code == 200
    assert configure(client, known_events=None).status_code == 200
    assert fire(client, "a%40x.com", "ANYTHING").status_code == 200
    assert [e.event for e in agillic_emulator.fired()] == [
        "CHURNED",
        "BIRTHDAY",
        "ANYTHING",
    ]


# -- delete -------------------------------------------------------------------


def test_delete_removes_memberships_and_rows(
    client: Client, agillic_emulator: AgillicEmulator
) -> None:
    agillic_emulator.add_group("VIP")
    assert client("PUT", "/recipients/a%40x.com", json=person("a@x.com")).ok
    group_change(client, ADD, ["a@x.com"])
    orders = {"recipientId": "a@x.com", "records": [{"ID": "o-1"}]}
    rows = {"oneToManyTableId": "ORDERS", "recipients": [orders]}
    client("POST", "/recipients/v2/oneToManyTables/:upsert", json=rows)
    assert agillic_emulator.otm_tables["ORDERS"]["rows"] == {
        "a@x.com": {"o-1": {"ID": "o-1"}}
    }
    deleted = client("DELETE", "/recipients/a%40x.com")
    assert (deleted.status_code, deleted.json()) == (200, {})
    assert agillic_emulator.members("VIP") == set()
    assert agillic_emulator.otm_tables["ORDERS"]["rows"] == {}
    absent = client("DELETE", "/recipients/a%40x.com")
    assert (absent.status_code, absent.json()["code"]) == (404, "NOT_FOUND")


# -- wire faults: the request takes effect, the answer is unreadable ---------


def test_truncate_fault(client: Client, agillic_emulator: AgillicEmulator) -> None:
    agillic_emulator.inject("PUT /recipients/{id}", kind="truncate", count=1)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        client("PUT", "/recipients/a%40x.com", json=person("a@x.com"))
    assert agillic_emulator.recipients == {"a@x.com": {"EMAIL": "a@x.com"}}
    assert agillic_emulator.requests[-1].status == 201
    assert agillic_emulator.faults_fired == 1
    again = client("PUT", "/recipients/a%40x.com", json=person("a@x.com"))
    assert again.status_code == 200


def test_undecodable_fault(client: Client, agillic_emulator: AgillicEmulator) -> None:
    agillic_emulator.recipients["a@x.com"] = {"EMAIL": "a@x.com"}
    fault = {"route": "POST /recipients/{id}/events/{event}/:achieveWithContext"}
    configure(client, faults=[{**fault, "kind": "undecodable", "count": 1}])
    with pytest.raises(requests.exceptions.ContentDecodingError):
        fire(client, "a%40x.com", "WELCOME")
    assert len(agillic_emulator.fired("WELCOME")) == 1
    assert fire(client, "a%40x.com", "WELCOME").json() == {}
    assert len(agillic_emulator.fired("WELCOME")) == 2


class BodilessEmulator(EmulatorServer):
    """Answers without a body, as some Gladly calls do (201 and 204)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.route("POST", "/created", lambda request: self._write(201))
        self.route("PATCH", "/updated", lambda request: self._write(204))

    @override
    def error(self, status: int, message: str, code: str | None = None) -> Response:
        return Response(status, {"error": message})

    def _write(self, status: int) -> Response:
        self.writes += 1
        return Response(status, headers={"Location": "/created/1"})


@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("truncate", requests.exceptions.ChunkedEncodingError),
        ("undecodable", requests.exceptions.ContentDecodingError),
    ],
)
def test_wire_faults_on_empty_answers(
    method: str, kind: str, error: type[Exception]
) -> None:
    path = "/created" if method == "POST" else "/updated"
    with BodilessEmulator() as emulator:
        url = emulator.url + path
        emulator.inject(kind=kind, count=1)
        with pytest.raises(error):
            requests.request(method, url, timeout=TIMEOUT)
        assert emulator.writes == 1
        clean = requests.request(method, url, timeout=TIMEOUT)
        assert (clean.status_code, clean.content) == (
            201 if method == "POST" else 204,
            b"",
        )


# -- command line -------------------------------------------------------------


def test_every_setting_has_help() -> None:
    assert set(AgillicEmulator.setting_help) == set(AgillicEmulator.settings)


def test_help_describes_settings_credentials_and_control() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "delivery_emulators.agillic", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    for name in AgillicEmulator.settings:
        assert "--" + name.replace("_", "-") in shown
    for text in (
        "demo-key",
        "demo-secret",
        "agillic-emulator --port 8765",
        "GET  /_emulator/state",
        "GET  /_emulator/calls",
        "POST /_emulator/config",
        "POST /_emulator/reset",
        '{"add_group": {"name": "VIP"}}',
        '{"add_otm_table":',
        '{"refuse":',
        '{"faults":',
        '{"remove_member":',
        "--no-basic-auth",
        "--no-group-api",
        "truncate",
        "undecodable",
    ):
        assert text in shown, text


def test_cli_variant_flags_serve_until_sigterm() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "delivery_emulators.agillic",
            "--port=0",
            "--task-path=messages",
            "--task-status-words=pending",
            "--task-result-shape=string",
            "--task-polls-before-done=1",
            "--quota-code=",
            "--no-basic-auth",
            "--no-group-api",
            "--known-events=WELCOME,CHURNED",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.removeprefix("listening on ")
        settings = requests.get(f"{url}/_emulator/state", timeout=TIMEOUT).json()[
            "settings"
        ]
        assert settings["task_path"] == "messages"
        assert settings["task_status_words"] == "pending"
        assert settings["task_result_shape"] == "string"
        assert settings["task_polls_before_done"] == 1
        assert settings["quota_code"] == ""
        assert settings["basic_auth"] is False
        assert settings["group_api"] is False
        assert settings["known_events"] == ["WELCOME", "CHURNED"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert stderr == ""


def test_cli_refuses_a_bad_choice() -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "delivery_emulators.agillic", "--task-path=nowhere"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode == 2
    assert "--task-path" in refused.stderr
