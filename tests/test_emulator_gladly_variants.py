"""The Gladly emulator's settings for behaviour that Gladly leaves open or varies.

Each setting is exercised both ways over real HTTP, so that the target's
tests can rely on whichever variant they choose.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from delivery_emulators import GladlyEmulator

TIMEOUT = 10
CREDENTIALS = ("agent@example.com", "demo-token")
PROFILES = "/api/v1/customer-profiles"
ORGANIZATION = "/api/v1/organization"


class Client:
    """A requests.Session bound to the emulator's base URL."""

    def __init__(self, base_url: str, session: requests.Session) -> None:
        self.base_url = base_url
        self.session = session

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = self.base_url + path
        return self.session.request(method, url, timeout=TIMEOUT, **kwargs)


@pytest.fixture
def gladly(gladly_emulator: GladlyEmulator) -> Iterator[Client]:
    with requests.Session() as session:
        session.auth = CREDENTIALS
        yield Client(gladly_emulator.url, session)


def first_error(response: requests.Response) -> dict[str, Any]:
    return dict(response.json()["errors"][0])


# -- rate_limit_scope ---------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "patch_status"), [("per_method", 204), ("shared", 429)]
)
def test_rate_limit_scope_decides_whether_methods_share_a_budget(
    gladly: Client, gladly_emulator: GladlyEmulator, scope: str, patch_status: int
) -> None:
    gladly_emulator.configure(rate_limit_scope=scope)
    gladly_emulator.add_profile({"id": "p1"})
    reads = [gladly("GET", ORGANIZATION) for _ in range(10)]
    patch = gladly("PATCH", f"{PROFILES}/p1", json={"name": "Ada"})
    assert [r.status_code for r in reads] == [200] * 10
    assert patch.status_code == patch_status
    assert gladly_emulator.rate_limited == int(patch_status == 429)
    expected_by_method = {"PATCH": 1} if patch_status == 429 else {}
    assert gladly_emulator.rate_limited_by_method == expected_by_method


def test_shared_scope_headers_count_every_method(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    gladly_emulator.configure(rate_limit=4, rate_limit_scope="shared")
    answers = [
        gladly("GET", ORGANIZATION),
        gladly("POST", PROFILES, json={"id": "p1"}),
        gladly("PATCH", f"{PROFILES}/p1", json={}),
        gladly("GET", f"{PROFILES}/p1"),
        gladly("POST", PROFILES, json={"id": "p2"}),
    ]
    assert [r.status_code for r in answers] == [200, 201, 204, 200, 429]
    remaining = [r.headers["Ratelimit-Remaining-Second"] for r in answers]
    assert remaining == ["3", "2", "1", "0", "0"]
    assert {r.headers["Ratelimit-Limit-Second"] for r in answers} == {"4"}
    assert gladly_emulator.rate_limited_by_method == {"POST": 1}


def test_per_method_scope_headers_count_only_that_method(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    gladly_emulator.configure(rate_limit=4)
    first_get = gladly("GET", ORGANIZATION)
    post = gladly("POST", PROFILES, json={"id": "p1"})
    second_get = gladly("GET", ORGANIZATION)
    remaining = [
        r.headers["Ratelimit-Remaining-Second"] for r in (first_get, post, second_get)
    ]
    assert remaining == ["3", "3", "2"]


def test_rate_limit_scope_refuses_unknown_values(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    refused = gladly("POST", "/_emulator/config", json={"rate_limit_scope": "global"})
    assert refused.status_code == 400
    assert "per_method, shared" in refused.json()["error"]
    with pytest.raises(ValueError, match="rate_limit_scope must be one of"):
        GladlyEmulator(rate_limit_scope="global")
    assert gladly_emulator.rate_limit_scope == "per_method"


# -- conflict_status ----------------------------------------------------------

HOLDER = {
    "id": "holder",
    "emails": [{"original": "ada@example.com"}],
    "phones": [{"original": "+4512345678", "type": "MOBILE"}],
}
CLASHES = [
    ({"id": "holder"}, "id"),
    ({"emails": [{"original": "ADA@example.com"}]}, "emails"),
    ({"phones": [{"original": "+45 12 34 56 78", "type": "MOBILE"}]}, "phones"),
]


@pytest.mark.parametrize("status", [409, 400])
@pytest.mark.parametrize(("body", "attr"), CLASHES, ids=[a for _, a in CLASHES])
def test_create_clash_answers_conflict_status(
    gladly: Client,
    gladly_emulator: GladlyEmulator,
    status: int,
    body: dict[str, Any],
    attr: str,
) -> None:
    gladly_emulator.configure(conflict_status=status)
    gladly_emulator.add_profile(HOLDER)
    clash = gladly("POST", PROFILES, json=body)
    assert clash.status_code == status
    error = first_error(clash)
    assert (error["attr"], error["code"]) == (attr, "taken")
    if attr != "id":
        assert error["meta"] == {"id": "holder"}
    assert list(gladly_emulator.profiles) == ["holder"]


@pytest.mark.parametrize("status", [409, 400])
@pytest.mark.parametrize(("body", "attr"), CLASHES[1:], ids=[a for _, a in CLASHES[1:]])
def test_patch_clash_answers_conflict_status(
    gladly: Client,
    gladly_emulator: GladlyEmulator,
    status: int,
    body: dict[str, Any],
    attr: str,
) -> None:
    gladly_emulator.configure(conflict_status=status)
    gladly_emulator.add_profile(HOLDER)
    gladly_emulator.add_profile({"id": "other", "name": "Bob"})
    clash = gladly("PATCH", f"{PROFILES}/other", json={**body, "name": "Ada"})
    assert clash.status_code == status
    error = first_error(clash)
    assert (error["attr"], error["code"], error["meta"]) == (
        attr,
        "taken",
        {"id": "holder"},
    )
    assert gladly_emulator.profiles["other"]["name"] == "Bob"


def test_conflict_status_refuses_other_statuses(gladly: Client) -> None:
    refused = gladly("POST", "/_emulator/config", json={"conflict_status": 422})
    assert refused.status_code == 400
    accepted = gladly("POST", "/_emulator/config", json={"conflict_status": "400"})
    assert accepted.json()["conflict_status"] == 400


# -- phones as Gladly reads them ----------------------------------------------


@pytest.mark.parametrize(
    ("phone", "stored"),
    [
        ({"original": "+45 12 34 56 78"}, {"original": "+4512345678"}),
        ({"original": "+45 (12) 34-56.78"}, {"original": "+4512345678"}),
        ({"original": "12345678"}, {"original": "+112345678"}),
        ({"original": "(415) 555-0100"}, {"original": "+14155550100"}),
        (
            {"original": "12 34 56 78", "regionCode": "DK"},
            {"original": "+4512345678", "regionCode": "DK"},
        ),
        (
            {"original": "070-123 45 67", "regionCode": "SE"},
            {"original": "+46701234567", "regionCode": "SE"},
        ),
        (
            {"original": "+4512345678", "regionCode": "SE"},
            {"original": "+4512345678", "regionCode": "SE"},
        ),
        (
            {
                "original": "+45 1234 5678",
                "type": "OFFICE",
                "extension": "12",
                "smsPreference": "OFF",
            },
            {
                "original": "+4512345678",
                "type": "OFFICE",
                "extension": "12",
                "smsPreference": "OFF",
            },
        ),
    ],
)
def test_phones_are_stored_and_read_as_e164(
    gladly: Client,
    gladly_emulator: GladlyEmulator,
    phone: dict[str, str],
    stored: dict[str, str],
) -> None:
    assert gladly("POST", PROFILES, json={"id": "p1", "phones": [phone]}).ok
    assert gladly("GET", f"{PROFILES}/p1").json()["phones"] == [stored]
    assert gladly_emulator.profiles["p1"]["phones"] == [stored]


def test_patched_phones_are_stored_as_e164(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    gladly_emulator.add_profile({"id": "p1"})
    phones = [{"original": "20 00 00 01", "regionCode": "DK", "type": "HOME"}]
    assert gladly("PATCH", f"{PROFILES}/p1", json={"phones": phones}).ok
    assert gladly_emulator.profiles["p1"]["phones"] == [
        {"original": "+4520000001", "regionCode": "DK", "type": "HOME"}
    ]


@pytest.mark.parametrize(
    ("phone", "detail"),
    [
        ({"original": "12345678", "regionCode": "XX"}, "unknown regionCode 'XX'"),
        ({"original": "+4512345678", "regionCode": "ZZ"}, "unknown regionCode 'ZZ'"),
        ({"original": "12-34", "regionCode": "DK"}, "malformed phone: '12-34'"),
        ({"original": "+45 12x34 5678"}, "malformed phone: '+45 12x34 5678'"),
        ({"original": "+4512345678", "label": "work"}, "unknown phone key 'label'"),
        ({"original": "+4512345678", "extension": 12}, "extension must be a string"),
    ],
)
def test_unreadable_phones_are_refused(
    gladly: Client, phone: dict[str, Any], detail: str
) -> None:
    refused = gladly("POST", PROFILES, json={"phones": [phone]})
    assert refused.status_code == 400
    assert first_error(refused) == {
        "attr": "phones",
        "code": "invalid",
        "detail": detail,
    }


def test_uniqueness_and_find_compare_the_stored_number(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    mobile = {"original": "12 34 56 78", "regionCode": "DK", "type": "MOBILE"}
    assert gladly("POST", PROFILES, json={"id": "p1", "phones": [mobile]}).ok
    same = {"original": "+45 12 34 56 78", "type": "MOBILE"}
    clash = gladly("POST", PROFILES, json={"phones": [same]})
    assert (clash.status_code, first_error(clash)["meta"]) == (409, {"id": "p1"})
    us_reading = {"original": "12345678", "type": "MOBILE"}
    assert gladly("POST", PROFILES, json={"id": "p2", "phones": [us_reading]}).ok
    by_dk = gladly("GET", PROFILES, params={"phoneNumber": "+4512345678"}).json()
    by_us = gladly("GET", PROFILES, params={"phoneNumber": "+1 12345678"}).json()
    assert ([p["id"] for p in by_dk], [p["id"] for p in by_us]) == (["p1"], ["p2"])


# -- DELETE and compliance_admin ----------------------------------------------


def test_delete_removes_the_profile_for_good(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    gladly_emulator.add_profile(
        {"id": "p1", "emails": [{"original": "ada@example.com"}]}
    )
    deleted = gladly("DELETE", f"{PROFILES}/p1")
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert gladly("GET", f"{PROFILES}/p1").status_code == 404
    assert gladly("PATCH", f"{PROFILES}/p1", json={}).status_code == 404
    assert gladly("GET", PROFILES, params={"email": "ada@example.com"}).json() == []
    again = gladly("DELETE", f"{PROFILES}/p1")
    assert (again.status_code, first_error(again)["code"]) == (404, "not_found")
    assert gladly_emulator.write_calls() == 3


def test_delete_of_merged_ids(gladly: Client, gladly_emulator: GladlyEmulator) -> None:
    gladly_emulator.add_profile({"id": "old"})
    gladly_emulator.add_profile({"id": "keep"})
    gladly_emulator.merge("old", "keep")
    assert gladly("DELETE", f"{PROFILES}/old").status_code == 404
    assert gladly("DELETE", f"{PROFILES}/keep").status_code == 204
    assert gladly("GET", f"{PROFILES}/old").status_code == 404
    assert gladly_emulator.merged == {}


def test_delete_needs_the_compliance_admin_role(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    gladly_emulator.add_profile({"id": "p1"})
    config = gladly("POST", "/_emulator/config", json={"compliance_admin": False})
    assert config.json()["compliance_admin"] is False
    refused = gladly("DELETE", f"{PROFILES}/p1")
    assert (refused.status_code, first_error(refused)["code"]) == (403, "forbidden")
    assert gladly("GET", f"{PROFILES}/p1").status_code == 200
    assert gladly("PATCH", f"{PROFILES}/p1", json={"name": "Ada"}).status_code == 204
    gladly_emulator.configure(compliance_admin="true")
    assert gladly("DELETE", f"{PROFILES}/p1").status_code == 204


def test_open_conversations_block_deletion(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    gladly_emulator.add_profile({"id": "p1"})
    gladly_emulator.add_profile({"id": "p2"})
    gladly_emulator.open_conversation("p1")
    opened = gladly("POST", "/_emulator/config", json={"open_conversation": "p2"})
    assert opened.status_code == 200
    for profile_id in ("p1", "p2"):
        blocked = gladly("DELETE", f"{PROFILES}/{profile_id}")
        assert blocked.status_code == 400
        assert blocked.json() == {
            "errors": [
                {"code": "invalid_state", "detail": "customer has open conversations"}
            ]
        }
    assert set(gladly_emulator.profiles) == {"p1", "p2"}
    state = gladly("GET", "/_emulator/state").json()
    assert state["open_conversations"] == ["p1", "p2"]
    unknown = gladly("POST", "/_emulator/config", json={"open_conversation": "ghost"})
    assert unknown.status_code == 400


def test_merge_carries_open_conversations(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    gladly_emulator.add_profile({"id": "old"})
    gladly_emulator.add_profile({"id": "keep"})
    gladly_emulator.open_conversation("old")
    gladly_emulator.merge("old", "keep")
    assert gladly("DELETE", f"{PROFILES}/keep").status_code == 400


# -- conversation items (customer activity) -----------------------------------

ITEMS = "/api/v1/conversation-items"


def activity(**content: Any) -> dict[str, Any]:
    """A valid CUSTOMER_ACTIVITY content object, with `content` overriding."""
    return {
        "type": "CUSTOMER_ACTIVITY",
        "title": "Order shipped",
        "activityType": "EMAIL",
        **content,
    }


def customer_items(customer_id: str) -> str:
    return f"/api/v1/customers/{customer_id}/conversation-items"


def test_item_for_a_known_customer(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    gladly_emulator.add_profile({"id": "p1"})
    content = activity(
        body="Your parcel is on its way.",
        sourceName="Webshop",
        link={"url": "https://shop.example.com/o/1", "text": "Order 1"},
    )
    item = {"id": "order-1-shipped", "occurredAt": "2030-01-01T10:00:00Z"}
    created = gladly("POST", customer_items("p1"), json={**item, "content": content})
    assert (created.status_code, created.content) == (201, b"")
    assert created.headers["Location"] == f"{ITEMS}/order-1-shipped"
    listed = gladly("GET", customer_items("p1"))
    assert listed.status_code == 200
    (stored,) = listed.json()
    assert {k: stored[k] for k in ("id", "customerId", "occurredAt", "content")} == {
        **item,
        "customerId": "p1",
        "content": content,
    }
    assert "createdAt" in stored
    assert gladly_emulator.conversation_items() == listed.json()


def test_item_for_an_unknown_customer_is_404(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    missing = gladly("POST", customer_items("ghost"), json={"content": activity()})
    assert (missing.status_code, first_error(missing)["code"]) == (404, "not_found")
    assert gladly("GET", customer_items("ghost")).status_code == 404
    assert gladly_emulator.conversation_items() == []


def test_item_without_id_gets_one_and_occurs_now(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    gladly_emulator.add_profile({"id": "p1"})
    created = gladly("POST", customer_items("p1"), json={"content": activity()})
    item_id = created.headers["Location"].removeprefix(f"{ITEMS}/")
    (stored,) = gladly_emulator.conversation_items("p1")
    assert stored["id"] == item_id
    age = datetime.now(UTC) - datetime.fromisoformat(stored["occurredAt"])
    assert timedelta(0) <= age < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("contact", "existing"),
    [
        (
            {"emailAddress": "Ada@Example.com"},
            {"emails": [{"original": "ada@example.com"}]},
        ),
        (
            {"mobilePhone": "+45 12 34 56 78"},
            {"phones": [{"original": "+4512345678", "type": "HOME"}]},
        ),
    ],
    ids=["email", "mobile"],
)
def test_item_by_contact_finds_the_profile(
    gladly: Client,
    gladly_emulator: GladlyEmulator,
    contact: dict[str, str],
    existing: dict[str, Any],
) -> None:
    gladly_emulator.add_profile({"id": "p1", **existing})
    body = {"customer": contact, "content": activity()}
    assert gladly("POST", ITEMS, json=body).status_code == 201
    assert [i["customerId"] for i in gladly_emulator.conversation_items()] == ["p1"]
    assert gladly_emulator.profiles_created_by_items == []


def test_item_by_contact_creates_missing_profiles(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    by_email = {"customer": {"emailAddress": "new@example.com"}, "content": activity()}
    by_mobile = {"customer": {"mobilePhone": "12345678"}, "content": activity()}
    assert gladly("POST", ITEMS, json=by_email).status_code == 201
    assert gladly("POST", ITEMS, json=by_mobile).status_code == 201
    created = gladly_emulator.profiles_created_by_items
    assert len(created) == 2
    emailed, texted = (gladly_emulator.profiles[i] for i in created)
    assert emailed["emails"] == [{"original": "new@example.com"}]
    assert texted["phones"] == [{"original": "+112345678", "type": "MOBILE"}]
    found = gladly("GET", PROFILES, params={"phoneNumber": "+112345678"}).json()
    assert [p["id"] for p in found] == [created[1]]
    assert gladly("POST", ITEMS, json=by_email).status_code == 201
    assert len(gladly_emulator.profiles_created_by_items) == 2
    state = gladly("GET", "/_emulator/state").json()
    assert state["profiles_created_by_items"] == created
    assert len(state["conversation_items"]) == 3


@pytest.mark.parametrize(
    ("customer", "attr"),
    [
        (None, "customer"),
        ({}, "customer"),
        ({"emailAddress": "a@x.com", "mobilePhone": "+4512345678"}, "customer"),
        ({"emailAddress": "not-an-email"}, "customer.emailAddress"),
        ({"mobilePhone": "12"}, "customer.mobilePhone"),
        ({"externalCustomerId": "crm-1"}, "customer.externalCustomerId"),
    ],
)
def test_item_by_contact_needs_exactly_one_valid_contact(
    gladly: Client,
    gladly_emulator: GladlyEmulator,
    customer: dict[str, str] | None,
    attr: str,
) -> None:
    refused = gladly("POST", ITEMS, json={"customer": customer, "content": activity()})
    assert refused.status_code == 400
    assert first_error(refused)["attr"] == attr
    assert gladly_emulator.profiles == {}


LONG_AGO = "2000-01-01T00:00:00Z"
INVALID_ITEMS = [
    ({"content": activity(title="x" * 101)}, "content.title"),
    ({"content": activity(title="  ")}, "content.title"),
    (
        {"content": {"type": "CUSTOMER_ACTIVITY", "activityType": "SMS"}},
        "content.title",
    ),
    ({"content": activity(body="x" * 25_001)}, "content.body"),
    ({"content": activity(type="MESSAGE")}, "content.type"),
    ({"content": activity(activityType="FAX")}, "content.activityType"),
    ({"content": activity(sourceName=7)}, "content.sourceName"),
    ({"content": activity(link={"text": "no url"})}, "content.link.url"),
    ({"content": activity(link="https://x.com")}, "content.link"),
    ({"content": activity(link={"url": "https://x", "x": 1})}, "content.link.x"),
    ({"content": activity(color="red")}, "content.color"),
    ({"content": "hello"}, "content"),
    ({}, "content"),
    ({"id": "x" * 51, "content": activity()}, "id"),
    ({"id": "has space", "content": activity()}, "id"),
    ({"occurredAt": LONG_AGO, "content": activity()}, "occurredAt"),
    ({"occurredAt": "yesterday", "content": activity()}, "occurredAt"),
    ({"occurredAt": 1700000000, "content": activity()}, "occurredAt"),
    ({"customer": {"emailAddress": "a@x.com"}, "content": activity()}, "customer"),
]


@pytest.mark.parametrize(
    ("body", "attr"), INVALID_ITEMS, ids=[a for _, a in INVALID_ITEMS]
)
def test_invalid_items_name_the_field(
    gladly: Client, gladly_emulator: GladlyEmulator, body: dict[str, Any], attr: str
) -> None:
    gladly_emulator.add_profile({"id": "p1"})
    refused = gladly("POST", customer_items("p1"), json=body)
    assert refused.status_code == 400
    error = first_error(refused)
    assert (error["code"], error["attr"]) == ("invalid", attr)
    assert gladly_emulator.conversation_items() == []


def test_item_limits_are_inclusive(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    gladly_emulator.add_profile({"id": "p1"})
    body = {
        "id": "x" * 50,
        "occurredAt": "2030-01-01T00:00:00+01:00",
        "content": activity(title="t" * 100, body="b" * 25_000),
    }
    assert gladly("POST", customer_items("p1"), json=body).status_code == 201


@pytest.mark.parametrize(("days", "status"), [(364, 201), (366, 400)])
def test_items_may_be_up_to_a_year_old(
    gladly: Client, gladly_emulator: GladlyEmulator, days: int, status: int
) -> None:
    gladly_emulator.add_profile({"id": "p1"})
    occurred = (datetime.now(UTC) - timedelta(days=days)).isoformat()
    body = {"occurredAt": occurred, "content": activity()}
    assert gladly("POST", customer_items("p1"), json=body).status_code == status


def test_invalid_item_by_contact_creates_no_profile(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    body = {"customer": {"emailAddress": "new@example.com"}, "occurredAt": LONG_AGO}
    refused = gladly("POST", ITEMS, json={**body, "content": activity()})
    assert first_error(refused)["attr"] == "occurredAt"
    assert gladly_emulator.profiles == {}


def test_repeated_item_id_is_409_anywhere_in_the_org(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    gladly_emulator.add_profile({"id": "p1"})
    gladly_emulator.add_profile({"id": "p2"})
    item = {"id": "evt-1", "content": activity()}
    assert gladly("POST", customer_items("p1"), json=item).status_code == 201
    for repeat in (
        gladly("POST", customer_items("p1"), json=item),
        gladly("POST", customer_items("p2"), json=item),
        gladly("POST", ITEMS, json={**item, "customer": {"emailAddress": "new@x.com"}}),
    ):
        assert repeat.status_code == 409
        assert repeat.json() == {
            "errors": [
                {
                    "code": "taken",
                    "attr": "id",
                    "detail": "conversation item already exists",
                }
            ]
        }
    assert len(gladly_emulator.conversation_items()) == 1
    assert gladly_emulator.profiles_created_by_items == []


def test_listing_is_per_customer(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    gladly_emulator.add_profile({"id": "p1"})
    gladly_emulator.add_profile({"id": "p2"})
    for customer_id, title in (("p1", "a"), ("p2", "b"), ("p1", "c")):
        body = {"content": activity(title=title)}
        assert gladly("POST", customer_items(customer_id), json=body).ok
    titles = [i["content"]["title"] for i in gladly("GET", customer_items("p1")).json()]
    assert titles == ["a", "c"]
    assert len(gladly_emulator.conversation_items("p2")) == 1
    assert len(gladly_emulator.conversation_items()) == 3


def test_items_follow_merges_and_go_with_deleted_profiles(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    gladly_emulator.add_profile({"id": "old"})
    gladly_emulator.add_profile({"id": "keep"})
    assert gladly("POST", customer_items("old"), json={"content": activity()}).ok
    gladly_emulator.merge("old", "keep")
    assert len(gladly("GET", customer_items("keep")).json()) == 1
    assert gladly("DELETE", f"{PROFILES}/keep").status_code == 204
    assert gladly_emulator.conversation_items() == []


def test_items_spend_the_post_budget(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    gladly_emulator.configure(rate_limit=2)
    gladly_emulator.add_profile({"id": "p1"})
    body = {"content": activity()}
    by_contact = {**body, "customer": {"emailAddress": "a@x.com"}}
    answers = [
        gladly("POST", customer_items("p1"), json=body),
        gladly("POST", ITEMS, json=by_contact),
        gladly("POST", PROFILES, json={}),
        gladly("GET", customer_items("p1")),
    ]
    assert [r.status_code for r in answers] == [201, 201, 429, 200]
    assert gladly_emulator.rate_limited_by_method == {"POST": 1}


# -- external_id_locked -------------------------------------------------------


def test_external_id_is_free_by_default(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    body = {"id": "p1", "externalCustomerId": "crm-1"}
    assert gladly("POST", PROFILES, json=body).status_code == 201
    patch = {"externalCustomerId": "crm-2"}
    assert gladly("PATCH", f"{PROFILES}/p1", json=patch).status_code == 204
    found = gladly("GET", PROFILES, params={"externalCustomerId": "crm-2"})
    assert [p["id"] for p in found.json()] == ["p1"]


def test_locked_external_id_cannot_be_set_or_searched(
    gladly: Client, gladly_emulator: GladlyEmulator
) -> None:
    gladly_emulator.add_profile({"id": "p1", "externalCustomerId": "crm-1"})
    config = gladly("POST", "/_emulator/config", json={"external_id_locked": True})
    assert config.json()["external_id_locked"] is True
    refused = [
        gladly("POST", PROFILES, json={"externalCustomerId": "crm-2"}),
        gladly("PATCH", f"{PROFILES}/p1", json={"externalCustomerId": "crm-2"}),
        gladly("GET", PROFILES, params={"externalCustomerId": "crm-1"}),
    ]
    for response in refused:
        assert response.status_code == 400
        error = first_error(response)
        assert (error["code"], error["attr"]) == ("invalid", "externalCustomerId")
        assert "lookup adaptor" in error["detail"]
    assert [first_error(r)["detail"].split(" for ")[0] for r in refused] == [
        "cannot be set",
        "cannot be set",
        "cannot be searched",
    ]
    assert gladly_emulator.profiles["p1"]["externalCustomerId"] == "crm-1"
    assert len(gladly_emulator.profiles) == 1
    assert gladly("PATCH", f"{PROFILES}/p1", json={"name": "Ada"}).status_code == 204
    assert gladly("GET", f"{PROFILES}/p1").json()["externalCustomerId"] == "crm-1"


# -- command line -------------------------------------------------------------


def test_cli_flags_set_every_variant() -> None:
    expected = {
        "rate_limit_scope": "shared",
        "conflict_status": 400,
        "compliance_admin": False,
        "external_id_locked": True,
    }
    flags = [
        *("--rate-limit-scope", "shared", "--conflict-status", "400"),
        *("--compliance-admin", "false", "--external-id-locked"),
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "delivery_emulators.gladly", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip().removeprefix("listening on ")
        state = requests.get(f"{url}/_emulator/state", timeout=TIMEOUT).json()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert {key: state["settings"][key] for key in expected} == expected
