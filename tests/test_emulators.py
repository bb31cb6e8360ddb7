"""Tests of the API emulators themselves, spoken to over real HTTP."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from delivery_emulators import AgillicEmulator, GladlyEmulator
from delivery_emulators.agillic import MAX_BATCH

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 10
MAX_BODY = 20 * 1024 * 1024
AGILLIC_CREDENTIALS = ("demo-key", "demo-secret")
GLADLY_CREDENTIALS = ("agent@example.com", "demo-token")
PROFILES = "/api/v1/customer-profiles"


class Client:
    """A requests.Session bound to an emulator's base URL."""

    def __init__(self, base_url: str, session: requests.Session) -> None:
        self.base_url = base_url
        self.session = session

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = self.base_url + path
        return self.session.request(method, url, timeout=TIMEOUT, **kwargs)


def agillic_token(url: str) -> str:
    response = requests.post(
        f"{url}/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=AGILLIC_CREDENTIALS,
        timeout=TIMEOUT,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


@pytest.fixture
def agillic(agillic_emulator: AgillicEmulator) -> Iterator[Client]:
    """Client holding a valid bearer token."""
    with requests.Session() as session:
        token = agillic_token(agillic_emulator.url)
        session.headers["Authorization"] = f"Bearer {token}"
        yield Client(agillic_emulator.url, session)


@pytest.fixture
def gladly(gladly_emulator: GladlyEmulator) -> Iterator[Client]:
    with requests.Session() as session:
        session.auth = GLADLY_CREDENTIALS
        yield Client(gladly_emulator.url, session)


def person(email: str, **fields: Any) -> dict[str, Any]:
    return {"personData": {"EMAIL": email, **fields}}


def upsert_task(agillic: Client, entries: list[dict[str, Any]]) -> str:
    response = agillic("POST", "/recipients/v2/:upsert", json={"recipients": entries})
    assert response.status_code == 202
    return str(response.json()["taskId"])


def task_result(agillic: Client, task_id: str) -> dict[str, Any]:
    body = agillic("GET", f"/recipients/v2/task/{task_id}").json()
    assert body["taskId"] == task_id
    return dict(body)


def concurrent_statuses(url: str, headers: dict[str, str], n: int) -> list[int]:
    """Fire n GETs at once, each on its own connection."""
    barrier = threading.Barrier(n)

    def call(_: int) -> int:
        barrier.wait()
        return requests.get(url, headers=headers, timeout=TIMEOUT).status_code

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(call, range(n)))


# -- Agillic: authentication ------------------------------------------------


def test_token_accepts_basic_and_form_credentials(
    agillic_emulator: AgillicEmulator,
) -> None:
    url = f"{agillic_emulator.url}/oauth2/token"
    grant = {"grant_type": "client_credentials"}
    basic = requests.post(url, data=grant, auth=AGILLIC_CREDENTIALS, timeout=TIMEOUT)
    key, secret = AGILLIC_CREDENTIALS
    form = requests.post(
        url, data={**grant, "client_id": key, "client_secret": secret}, timeout=TIMEOUT
    )
    assert basic.status_code == form.status_code == 200
    assert basic.json()["token_type"] == "bearer"
    assert basic.json()["expires_in"] == 7200
    assert basic.json()["access_token"] != form.json()["access_token"]
    assert agillic_emulator.tokens_issued == 2


@pytest.mark.parametrize("style", ["basic", "form"])
def test_token_rejects_bad_credentials(
    agillic_emulator: AgillicEmulator, style: str
) -> None:
    data = {"grant_type": "client_credentials"}
    auth = None
    if style == "basic":
        auth = ("demo-key", "wrong")
    else:
        data |= {"client_id": "demo-key", "client_secret": "wrong"}
    response = requests.post(
        f"{agillic_emulator.url}/oauth2/token", data=data, auth=auth, timeout=TIMEOUT
    )
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client"}


def test_calls_require_a_known_bearer_token(agillic: Client) -> None:
    path = "/discovery/persondata"
    assert agillic("GET", path).status_code == 200
    anonymous = requests.get(agillic.base_url + path, timeout=TIMEOUT)
    bogus = agillic("GET", path, headers={"Authorization": "Bearer nope"})
    for response in (anonymous, bogus):
        assert response.status_code == 401
        assert response.json()["code"] == "UNAUTHORIZED"
        assert response.json()["status"] == 401


def test_token_expires_after_its_lifetime(agillic_emulator: AgillicEmulator) -> None:
    agillic_emulator.token_lifetime = 0.3
    headers = {"Authorization": f"Bearer {agillic_token(agillic_emulator.url)}"}
    url = f"{agillic_emulator.url}/discovery/targetgroups"
    assert requests.get(url, headers=headers, timeout=TIMEOUT).status_code == 200
    time.sleep(0.4)
    assert requests.get(url, headers=headers, timeout=TIMEOUT).status_code == 401


# -- Agillic: recipients ----------------------------------------------------


def test_single_recipient_calls(
    agillic: Client, agillic_emulator: AgillicEmulator
) -> None:
    assert agillic("POST", "/recipients", json=person("a@x.com")).status_code == 201
    assert agillic("POST", "/recipients", json=person("a@x.com")).status_code == 409
    assert (
        agillic("POST", "/recipients", json=person("b@x.com", SHOE=1)).status_code
        == 400
    )
    assert agillic("POST", "/recipients", json={"personData": {}}).status_code == 400
    updated = agillic(
        "PUT", "/recipients/a%40x.com", json=person("a@x.com", TIER="gold")
    )
    assert updated.status_code == 200
    created = agillic(
        "PUT", "/recipients/c%40x.com", json={"personData": {"TIER": "x"}}
    )
    assert created.status_code == 201
    clash = agillic("PUT", "/recipients/a%40x.com", json=person("z@x.com"))
    assert clash.status_code == 409
    assert agillic("GET", "/recipients/a%40x.com").json() == person(
        "a@x.com", TIER="gold"
    )
    assert agillic_emulator.recipients["c@x.com"] == {"TIER": "x", "EMAIL": "c@x.com"}
    assert agillic("DELETE", "/recipients/a%40x.com").status_code == 200
    missing = agillic("GET", "/recipients/a%40x.com")
    assert missing.status_code == 404
    assert missing.json()["code"] == "NOT_FOUND"
    assert agillic("DELETE", "/recipients/a%40x.com").status_code == 404


def test_recipient_ids_are_percent_decoded(
    agillic: Client, agillic_emulator: AgillicEmulator
) -> None:
    email = "a/b+c d@x.com"
    encoded = "a%2Fb%2Bc%20d%40x.com"
    assert (
        agillic("PUT", f"/recipients/{encoded}", json=person(email)).status_code == 201
    )
    assert email in agillic_emulator.recipients
    assert agillic("GET", "/recipients/a/b+c d@x.com").status_code == 404


def test_batch_upsert_task_lifecycle(
    agillic: Client, agillic_emulator: AgillicEmulator
) -> None:
    agillic_emulator.task_delay = 0.4
    agillic_emulator.recipients["old@x.com"] = {"EMAIL": "old@x.com", "TIER": "gold"}
    entries = [
        person("new@x.com"),
        person("old@x.com", FIRSTNAME="Ada"),
        person("bad@x.com", SHOE=42),
        {"personData": {"FIRSTNAME": "no id"}},
    ]
    task_id = upsert_task(agillic, entries)
    pending = task_result(agillic, task_id)
    assert pending["status"] in {"queued", "running"}
    assert "new@x.com" not in agillic_emulator.recipients
    time.sleep(0.45)
    done = task_result(agillic, task_id)
    assert done["status"] == "completed"
    result = done["details"]["result"]
    assert (result["processed"], result["created"], result["updated"]) == (4, 1, 1)
    assert result["failed"] == 2
    errors = [(e["index"], e["recipientId"], e["code"]) for e in result["errors"]]
    assert errors == [(2, "bad@x.com", "INVALID_FIELD"), (3, None, "INVALID_FIELD")]
    assert agillic_emulator.recipients["old@x.com"] == {
        "EMAIL": "old@x.com",
        "TIER": "gold",
        "FIRSTNAME": "Ada",
    }
    assert "bad@x.com" not in agillic_emulator.recipients
    assert agillic("GET", "/recipients/v2/task/t-99").status_code == 404


def test_refuse_rules(agillic: Client, agillic_emulator: AgillicEmulator) -> None:
    agillic_emulator.refuse(lambda data: data.get("TIER") == "banned", "tier banned")
    task_id = upsert_task(
        agillic, [person("a@x.com"), person("b@x.com", TIER="banned")]
    )
    result = task_result(agillic, task_id)["details"]["result"]
    assert result["errors"] == [
        {
            "index": 1,
            "recipientId": "b@x.com",
            "code": "REFUSED",
            "message": "tier banned",
        }
    ]
    single = agillic("POST", "/recipients", json=person("c@x.com", TIER="banned"))
    assert (single.status_code, single.json()["message"]) == (400, "tier banned")
    rule = {"refuse": {"field": "EMAIL", "contains": "spam"}}
    assert agillic("POST", "/_emulator/config", json=rule).status_code == 200
    assert (
        agillic(
            "PUT", "/recipients/spam%40x.com", json=person("spam@x.com")
        ).status_code
        == 400
    )
    assert (
        agillic("PUT", "/recipients/ok%40x.com", json=person("ok@x.com")).status_code
        == 201
    )


def test_failed_task_applies_nothing(
    agillic: Client, agillic_emulator: AgillicEmulator
) -> None:
    agillic_emulator.fail_next_tasks(1)
    failed = task_result(agillic, upsert_task(agillic, [person("a@x.com")]))
    assert failed["status"] == "failed"
    assert agillic_emulator.recipients == {}
    later = task_result(agillic, upsert_task(agillic, [person("a@x.com")]))
    assert later["status"] == "completed"
    assert "a@x.com" in agillic_emulator.recipients


@pytest.mark.parametrize(
    ("size", "status"), [(1000, 202), (1001, 400), (0, 400)], ids=str
)
def test_upsert_entry_limit(agillic: Client, size: int, status: int) -> None:
    entries = [person(f"r{i}@x.com") for i in range(size)]
    response = agillic("POST", "/recipients/v2/:upsert", json={"recipients": entries})
    assert response.status_code == status


def test_body_size_limit_is_20_mb(agillic: Client) -> None:
    def body_of(size: int) -> bytes:
        empty = json.dumps({"recipients": [person("big@x.com", FIRSTNAME="")]})
        filler = "x" * (size - len(empty))
        return json.dumps(
            {"recipients": [person("big@x.com", FIRSTNAME=filler)]}
        ).encode()

    headers = {"Content-Type": "application/json"}
    path = "/recipients/v2/:upsert"
    assert (
        agillic("POST", path, data=body_of(MAX_BODY), headers=headers).status_code
        == 202
    )
    too_big = agillic("POST", path, data=body_of(MAX_BODY + 1), headers=headers)
    assert too_big.status_code == 413
    assert too_big.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert agillic("GET", "/discovery/onetomany").status_code == 200


def test_twenty_concurrent_requests_pass(agillic_emulator: AgillicEmulator) -> None:
    headers = {"Authorization": f"Bearer {agillic_token(agillic_emulator.url)}"}
    agillic_emulator.latency = 0.3
    url = f"{agillic_emulator.url}/discovery/persondata"
    assert concurrent_statuses(url, headers, 20) == [200] * 20
    assert agillic_emulator.peak_concurrency == 20


def test_request_over_concurrency_limit_gets_429(
    agillic_emulator: AgillicEmulator,
) -> None:
    headers = {"Authorization": f"Bearer {agillic_token(agillic_emulator.url)}"}
    agillic_emulator.configure(latency=0.5, max_concurrency=3)
    url = f"{agillic_emulator.url}/discovery/persondata"
    statuses = concurrent_statuses(url, headers, 6)
    assert statuses.count(200) <= 3
    assert 429 in statuses
    assert agillic_emulator.peak_concurrency >= 4
    rejected = next(r for r in agillic_emulator.requests if r.status == 429)
    assert rejected.route == "GET /discovery/persondata"


def test_daily_quota(agillic: Client, agillic_emulator: AgillicEmulator) -> None:
    agillic_emulator.daily_quota = 2
    statuses = [agillic("GET", "/discovery/onetomany").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    spent = agillic("GET", "/discovery/onetomany")
    assert spent.json()["code"] == "DAILY_QUOTA_EXCEEDED"
    assert agillic_token(agillic.base_url)
    assert agillic_emulator.quota_used == 2


# -- Agillic: fault injection -----------------------------------------------


def test_status_fault_applies_nothing(
    agillic: Client, agillic_emulator: AgillicEmulator
) -> None:
    agillic_emulator.inject("POST /recipients", status=503, count=1)
    failed = agillic("POST", "/recipients", json=person("a@x.com"))
    assert failed.status_code == 503
    assert failed.json() == {
        "status": 503,
        "code": "SERVICE_UNAVAILABLE",
        "message": "injected fault",
    }
    assert agillic_emulator.recipients == {}
    assert agillic("POST", "/recipients", json=person("a@x.com")).status_code == 201
    assert agillic_emulator.faults_fired == 1


def test_429_fault_with_and_without_retry_after(
    agillic: Client, agillic_emulator: AgillicEmulator
) -> None:
    agillic_emulator.inject(status=429, retry_after=2, count=1)
    agillic_emulator.inject(status=429, count=1)
    first, second = (agillic("GET", "/discovery/onetomany") for _ in range(2))
    assert (first.status_code, first.headers["Retry-After"]) == (429, "2")
    assert second.status_code == 429
    assert "Retry-After" not in second.headers
    assert agillic("GET", "/discovery/onetomany").status_code == 200


def test_drop_fault_closes_without_answer(
    agillic: Client, agillic_emulator: AgillicEmulator
) -> None:
    agillic_emulator.inject("PUT /recipients/{id}", kind="drop", count=1)
    with pytest.raises(requests.ConnectionError):
        agillic("PUT", "/recipients/a%40x.com", json=person("a@x.com"))
    assert (
        agillic("PUT", "/recipients/a%40x.com", json=person("a@x.com")).status_code
        == 201
    )
    assert [r.status for r in agillic_emulator.requests[-2:]] == [0, 201]
    assert agillic_emulator.write_calls() == 1


def test_slow_fault_delays_answer(
    agillic: Client, agillic_emulator: AgillicEmulator
) -> None:
    agillic_emulator.inject(kind="slow", delay=0.3, count=1)
    started = time.monotonic()
    assert agillic("GET", "/discovery/onetomany").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_expire_token_fault(agillic: Client, agillic_emulator: AgillicEmulator) -> None:
    agillic_emulator.inject(kind="expire_token", count=1)
    assert agillic("GET", "/discovery/onetomany").status_code == 401
    assert agillic("GET", "/discovery/onetomany").status_code == 401
    fresh = {"Authorization": f"Bearer {agillic_token(agillic.base_url)}"}
    assert agillic("GET", "/discovery/onetomany", headers=fresh).status_code == 200


def test_rate_faults_are_reproducible_by_seed() -> None:
    def pattern() -> list[int]:
        with AgillicEmulator(seed=7) as emulator:
            emulator.inject(kind="status", status=500, rate=0.5)
            url = f"{emulator.url}/discovery/onetomany"
            return [requests.get(url, timeout=TIMEOUT).status_code for _ in range(16)]

    first = pattern()
    assert first == pattern()
    assert {500, 401} <= set(first)


def test_control_endpoints(agillic: Client, agillic_emulator: AgillicEmulator) -> None:
    agillic_emulator.inject(status=500)
    calls = agillic("GET", "/_emulator/calls")
    assert calls.status_code == 200
    assert calls.json()["calls"] == {"POST /oauth2/token": 1}
    assert agillic("POST", "/_emulator/config", json={"clear_faults": True}).ok
    agillic("POST", "/recipients", json=person("a@x.com"))
    agillic("DELETE", "/recipients/a%40x.com")
    agillic("GET", "/discovery/onetomany")
    summary = agillic("GET", "/_emulator/calls").json()
    assert summary["write_calls"] == agillic_emulator.write_calls() == 2
    assert summary["status_counts"] == {"200": 3, "201": 1}
    config = {"task_delay": 1.5, "faults": [{"kind": "status", "status": 502}]}
    assert agillic("POST", "/_emulator/config", json=config).status_code == 200
    assert agillic_emulator.task_delay == 1.5
    assert agillic("GET", "/discovery/onetomany").status_code == 502
    assert agillic("POST", "/_emulator/config", json={"nope": 1}).status_code == 400
    state = agillic("GET", "/_emulator/state").json()
    assert state["settings"]["task_delay"] == 1.5
    assert agillic("POST", "/_emulator/reset").status_code == 200
    assert agillic_emulator.calls == {}
    assert agillic("GET", "/discovery/onetomany").status_code == 401


# -- Agillic: target groups, OTM, discovery ---------------------------------


def test_static_target_groups(
    agillic: Client, agillic_emulator: AgillicEmulator
) -> None:
    agillic_emulator.add_group("VIP")
    agillic_emulator.add_group("Dynamic", static=False)
    agillic_emulator.recipients.update({"a@x.com": {}, "b@x.com": {}})
    groups = agillic("GET", "/discovery/targetgroups").json()
    assert groups[0] == {
        "name": "VIP",
        "description": "",
        "static": True,
        "global": False,
    }
    add, remove = (
        "/recipients/:addToStaticTargetGroup",
        "/recipients/:removeFromStaticTargetGroup",
    )

    def change(path: str, ids: list[str], group: str = "VIP") -> requests.Response:
        return agillic(
            "POST", path, json={"targetGroupName": group, "recipientIds": ids}
        )

    added = change(add, ["a@x.com", "ghost@x.com"])
    assert added.json() == {
        "processed": 2,
        "errors": [
            {
                "recipientId": "ghost@x.com",
                "code": "NOT_FOUND",
                "message": "recipient not found",
            }
        ],
    }
    assert change(add, ["a@x.com"]).json()["errors"] == []
    assert change(remove, ["b@x.com"]).status_code == 200
    assert agillic_emulator.target_groups["VIP"]["members"] == {"a@x.com"}
    assert change(add, ["a@x.com"], "vip").status_code == 404
    assert change(add, ["a@x.com"], "Dynamic").status_code == 400
    assert change(add, [f"r{i}" for i in range(101)]).status_code == 400
    assert change(add, []).status_code == 400


def test_one_to_many_tables(agillic: Client, agillic_emulator: AgillicEmulator) -> None:
    agillic_emulator.recipients["a@x.com"] = {"EMAIL": "a@x.com"}
    assert agillic("GET", "/discovery/onetomany").json() == ["ORDERS"]
    table = agillic("GET", "/discovery/onetomany/ORDERS").json()
    assert {"name": "ID", "identifier": True, "type": "STRING"} in table["fields"]
    assert agillic("GET", "/discovery/onetomany/NOPE").status_code == 404
    path = "/recipients/v2/oneToManyTables/:upsert"

    def upsert(
        recipients: list[dict[str, Any]], table: str = "ORDERS"
    ) -> requests.Response:
        return agillic(
            "POST", path, json={"oneToManyTableId": table, "recipients": recipients}
        )

    first = upsert(
        [
            {
                "recipientId": "a@x.com",
                "records": [{"ID": "o-1", "AMOUNT": 5}, {"AMOUNT": 1}],
            },
            {"recipientId": "ghost@x.com", "records": [{"ID": "o-2"}]},
        ]
    )
    result = task_result(agillic, first.json()["taskId"])["details"]["result"]
    assert (result["processed"], result["created"], result["failed"]) == (3, 1, 2)
    assert [(e["index"], e["code"]) for e in result["errors"]] == [
        (1, "INVALID_FIELD"),
        (2, "NOT_FOUND"),
    ]
    second = upsert(
        [{"recipientId": "a@x.com", "records": [{"ID": "o-1", "STATUS": "paid"}]}]
    )
    assert (
        task_result(agillic, second.json()["taskId"])["details"]["result"]["updated"]
        == 1
    )
    rows = agillic("GET", "/recipients/a%40x.com/oneToManyTables/ORDERS").json()
    assert rows == {"recordList": [{"ID": "o-1", "AMOUNT": 5, "STATUS": "paid"}]}
    too_many = [
        {"recipientId": "a@x.com", "records": [{"ID": str(i)} for i in range(1001)]}
    ]
    assert upsert(too_many).status_code == 400
    assert upsert([{"recipientId": "a@x.com", "records": []}]).status_code == 400
    assert upsert([], table="NOPE").status_code == 404


def test_persondata_discovery(agillic: Client) -> None:
    fields = agillic("GET", "/discovery/persondata").json()
    assert {"name": "EMAIL", "type": "STRING", "identifier": True} in fields
    assert {"name": "OPT_IN", "type": "BOOLEAN", "identifier": False} in fields
    assert len(fields) == 11


# -- Gladly -----------------------------------------------------------------


def test_gladly_auth(gladly: Client, gladly_emulator: GladlyEmulator) -> None:
    org = gladly("GET", "/api/v1/organization")
    assert (org.status_code, org.json()["id"]) == (200, "org-1")
    anonymous = requests.get(f"{gladly.base_url}/api/v1/organization", timeout=TIMEOUT)
    wrong = gladly("GET", "/api/v1/organization", auth=("agent@example.com", "x"))
    for response in (anonymous, wrong):
        assert response.status_code == 401
        assert response.json()["errors"][0]["code"] == "unauthorized"
        assert "Ratelimit-Remaining-Second" in response.headers
    gladly_emulator.forbidden = True
    assert gladly("GET", "/api/v1/organization").status_code == 403


def test_create_profile(gladly: Client, gladly_emulator: GladlyEmulator) -> None:
    created = gladly("POST", PROFILES, json={"id": "crm-42", "name": "Ada"})
    assert created.status_code == 201
    assert created.headers["Location"] == f"{PROFILES}/crm-42"
    assert created.content == b""
    profile = gladly("GET", f"{PROFILES}/crm-42").json()
    assert {"id", "createdAt", "updatedAt"} <= set(profile)
    generated = gladly("POST", PROFILES, json={"name": "Bob"})
    new_id = generated.headers["Location"].rsplit("/", 1)[1]
    assert gladly_emulator.profiles[new_id]["name"] == "Bob"
    bad_bodies = [
        {"id": "has space"},
        {"id": "x" * 50},
        {"emails": [{"original": "not-an-email"}]},
        {"phones": [{"original": "12", "type": "MOBILE"}]},
        {"shoeSize": 42},
    ]
    assert [gladly("POST", PROFILES, json=b).status_code for b in bad_bodies] == [
        400
    ] * 5


def test_create_conflicts(gladly: Client) -> None:
    first = {
        "id": "p1",
        "emails": [{"original": "Ada@Example.com"}],
        "phones": [{"original": "+4512345678", "type": "MOBILE"}],
    }
    assert gladly("POST", PROFILES, json=first).status_code == 201
    same_id = gladly("POST", PROFILES, json={"id": "p1"})
    assert same_id.status_code == 409
    assert same_id.json() == {
        "errors": [{"attr": "id", "code": "taken", "detail": "customer ID exists"}]
    }
    email = gladly(
        "POST", PROFILES, json={"emails": [{"original": " ada@example.COM "}]}
    )
    assert email.status_code == 409
    error = email.json()["errors"][0]
    assert (error["attr"], error["code"], error["meta"]) == (
        "emails",
        "taken",
        {"id": "p1"},
    )
    mobile = {"phones": [{"original": "+45 1234 5678", "type": "MOBILE"}]}
    assert gladly("POST", PROFILES, json=mobile).json()["errors"][0]["attr"] == "phones"
    home = {"phones": [{"original": "+4512345678", "type": "HOME"}]}
    assert gladly("POST", PROFILES, json=home).status_code == 201


def test_find_profiles(gladly: Client, gladly_emulator: GladlyEmulator) -> None:
    gladly_emulator.add_profile({"id": "old", "emails": [{"original": "a@x.com"}]})
    gladly_emulator.add_profile(
        {
            "id": "new",
            "emails": [{"original": "A@X.com"}],
            "phones": [{"original": "+4512345678", "type": "HOME"}],
            "externalCustomerId": "crm-1",
        }
    )

    def find(**query: str) -> requests.Response:
        return gladly("GET", PROFILES, params=query)

    assert [p["id"] for p in find(email=" a@X.COM ").json()] == ["new", "old"]
    assert find(email="b@x.com").json() == []
    assert [p["id"] for p in find(phoneNumber="+4512345678").json()] == ["new"]
    assert [p["id"] for p in find(externalCustomerId="crm-1").json()] == ["new"]
    raw_plus = gladly("GET", f"{PROFILES}?phoneNumber=+4512345678")
    assert raw_plus.status_code == 400
    assert find(email="nope").status_code == 400
    assert find().status_code == 400
    assert find(email="a@x.com", externalCustomerId="crm-1").status_code == 400


def test_read_missing_and_merged_profiles(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    gladly_emulator.add_profile({"id": "old", "emails": [{"original": "o@x.com"}]})
    gladly_emulator.add_profile({"id": "keep"})
    gladly_emulator.merge("old", "keep")
    moved = gladly("GET", f"{PROFILES}/old", allow_redirects=False)
    assert moved.status_code == 301
    assert moved.headers["Location"] == f"{PROFILES}/keep"
    assert moved.json()["errors"][0]["meta"] == {"old": "old", "new": "keep"}
    assert gladly("GET", f"{PROFILES}/old").json()["id"] == "keep"
    assert (
        gladly("GET", PROFILES, params={"email": "o@x.com"}).json()[0]["id"] == "keep"
    )
    missing = gladly("GET", f"{PROFILES}/ghost")
    assert (missing.status_code, missing.json()["errors"][0]["code"]) == (
        404,
        "not_found",
    )


def test_patch_profile(gladly: Client, gladly_emulator: GladlyEmulator) -> None:
    gladly_emulator.add_profile(
        {
            "id": "p1",
            "name": "Ada",
            "emails": [{"original": "a@x.com"}, {"original": "b@x.com"}],
            "customAttributes": {"tier": "gold", "region": "eu"},
            "updatedAt": "2020-01-01T00:00:00.000Z",
        }
    )
    gladly_emulator.add_profile({"id": "p2", "emails": [{"original": "taken@x.com"}]})
    patch = {
        "name": "Ada L",
        "emails": [{"original": "c@x.com"}],
        "customAttributes": {"tier": "platinum"},
    }
    patched = gladly("PATCH", f"{PROFILES}/p1", json=patch)
    assert (patched.status_code, patched.content) == (204, b"")
    profile = gladly_emulator.profiles["p1"]
    assert profile["emails"] == [{"original": "c@x.com"}]
    assert profile["customAttributes"] == {"tier": "platinum", "region": "eu"}
    assert profile["name"] == "Ada L"
    assert profile["updatedAt"] != "2020-01-01T00:00:00.000Z"
    clash = {"emails": [{"original": "TAKEN@x.com"}]}
    assert gladly("PATCH", f"{PROFILES}/p1", json=clash).status_code == 409
    assert gladly("PATCH", f"{PROFILES}/p1", json={"id": "p9"}).status_code == 400
    assert gladly("PATCH", f"{PROFILES}/p1", json={"id": "p1"}).status_code == 204
    assert gladly("PATCH", f"{PROFILES}/ghost", json={}).status_code == 404
    gladly_emulator.merge("p2", "p1")
    assert gladly("PATCH", f"{PROFILES}/p2", json={}).status_code == 404
    assert gladly_emulator.write_calls() == 6


def test_rate_limit_per_method(gladly: Client, gladly_emulator: GladlyEmulator) -> None:
    gladly_emulator.rate_limit = 3
    responses = [gladly("GET", "/api/v1/organization") for _ in range(5)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
    remaining = [r.headers["Ratelimit-Remaining-Second"] for r in responses]
    assert remaining == ["2", "1", "0", "0", "0"]
    assert all(r.headers["Ratelimit-Limit-Second"] == "3" for r in responses)
    limited = responses[-1]
    assert limited.json()["errors"][0]["code"] == "too_many_requests"
    assert "Retry-After" not in limited.headers
    assert gladly("POST", PROFILES, json={}).status_code == 201
    assert gladly_emulator.rate_limited == 2
    assert gladly_emulator.rate_limited_by_method == {"GET": 2}
    assert gladly("GET", "/_emulator/calls").json()["status_counts"]["429"] == 2
    time.sleep(1.05)
    assert gladly("GET", "/api/v1/organization").status_code == 200


def test_gladly_status_fault_uses_its_envelope(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    gladly_emulator.inject(f"POST {PROFILES}", status=502, count=1)
    failed = gladly("POST", PROFILES, json={"id": "p1"})
    assert failed.status_code == 502
    assert failed.json()["errors"][0]["code"] == "bad_gateway"
    assert "Ratelimit-Limit-Second" in failed.headers
    assert gladly_emulator.profiles == {}


# -- command line -----------------------------------------------------------


@contextlib.contextmanager
def cli_emulator(name: str, *flags: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``python -m delivery_emulators.<name>`` on a free port: (process, URL).

    Stopped with SIGTERM at the end; the test reads its exit code and stderr.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", f"delivery_emulators.{name}", "--port", "0", *flags],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        yield process, line.removeprefix("listening on ")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


@pytest.mark.parametrize("name", ["agillic", "gladly"])
def test_cli_serves_until_sigterm(name: str) -> None:
    with cli_emulator(name, "--latency", "0.01") as (process, url):
        state = requests.get(f"{url}/_emulator/state", timeout=TIMEOUT).json()
        assert state["settings"]["latency"] == 0.01
    assert process.returncode == 0
    assert process.stderr is not None
    assert process.stderr.read() == ""


def resident_mib(pid: int) -> float:
    """The process's resident memory now (VmRSS), in MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    (line,) = (x for x in status.splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_the_command_line_emulator_does_not_keep_request_bodies() -> None:
    """A long manual session must not grow by every body it was sent.

    Each request carries about 2 MB of values and is refused (one entry too
    many), so none of it becomes data; kept, 25 such bodies would add 50 MB.
    """
    entries = [
        person(f"r{i}@x.com", NOTE=f"{i:04d}" * 500) for i in range(MAX_BATCH + 1)
    ]
    body = json.dumps({"recipients": entries})
    with cli_emulator("agillic") as (process, url), requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {agillic_token(url)}"
        session.headers["Content-Type"] = "application/json"

        def send() -> None:
            answer = session.post(
                f"{url}/recipients/v2/:upsert", data=body, timeout=TIMEOUT
            )
            assert answer.status_code == 400

        send()
        before = resident_mib(process.pid)
        for _ in range(25):
            send()
        grown = resident_mib(process.pid) - before
        calls = requests.get(f"{url}/_emulator/calls", timeout=TIMEOUT).json()
    assert calls["status_counts"]["400"] == 26
    assert grown < 15, f"the emulator grew by {grown:.0f} MiB"
