"""Gladly REST API emulator, per docs/api-contracts.md ("Gladly").

A real HTTP server holding one in-memory Gladly organization, for the tests,
the demo and anyone trying target-gladly without a Gladly account. Where
Gladly's documentation leaves a behaviour open or it varies between
organizations, a setting picks one, so a client can be tested against each.

Start it
    gladly-emulator --port 8766
    python -m delivery_emulators.gladly --port 8766 --rate-limit-scope shared
It prints `listening on http://127.0.0.1:8766` and serves until SIGTERM or
Ctrl-C; without `--port` it picks a free port. Every setting below is also a
flag (`rate_limit_scope` → `--rate-limit-scope shared`); the flags of the
true/false settings that default to false take no value (`--forbidden`).

Credentials (HTTP Basic, as Gladly's API users)
    username `agent@example.com`, password (API token) `demo-token`;
    change them with `--username` / `--api-token`.

Gladly API served
    GET    /api/v1/organization
    POST   /api/v1/customer-profiles              201 + Location, no body
    GET    /api/v1/customer-profiles?email=|phoneNumber=|externalCustomerId=
    GET    /api/v1/customer-profiles/{id}         301 when merged away
    PATCH  /api/v1/customer-profiles/{id}         204
    DELETE /api/v1/customer-profiles/{id}         204
    POST   /api/v1/customers/{customerId}/conversation-items     201
    GET    /api/v1/customers/{customerId}/conversation-items     200 array
    POST   /api/v1/conversation-items   customer by emailAddress or mobilePhone

Phones are stored as Gladly reads them: E.164 without separators; a number
without "+" takes the calling code of its `regionCode` (a built-in table of
common countries), or is read as a US number (+1) when it has none.

Control endpoints (no credentials, not rate-limited, not in the call counts)
    GET  /_emulator/state    settings, faults, call counts, profiles, merges,
                             open_conversations, conversation_items,
                             profiles_created_by_items, rate_limited(_by_method)
    GET  /_emulator/calls    calls per route, peak concurrency, write calls,
                             status counts, faults fired
    POST /_emulator/config   a JSON object of settings and actions; answers the
                             settings, or 400 for an unknown key or bad value:
        {"rate_limit": 200, "rate_limit_scope": "shared"}
        {"conflict_status": 400, "external_id_locked": true}
        {"compliance_admin": false}
        {"open_conversation": "<profile id>"}    blocks deleting that profile
        {"faults": [{"route": "POST /api/v1/customer-profiles",
                     "status": 503, "count": 1}]}   (see EmulatorServer.inject)
        {"clear_faults": true}
    POST /_emulator/reset    forget data, counters and faults; keep settings

Settings (constructor keyword, config key and CLI flag alike)
    username, api_token   the accepted Basic credentials (see above)
    rate_limit            requests admitted per rolling second (default 10)
    rate_limit_scope      "per_method" (default): each HTTP method has its own
                          `rate_limit` budget, as Gladly lists it; "shared":
                          all methods draw on one budget. The Ratelimit-*
                          headers report the budget the request drew on.
    conflict_status       409 (default) or 400: the status of the `taken`
                          answer when a create reuses a profile id, or a
                          create or PATCH an email or MOBILE phone of another
                          profile. Gladly documents both for create and only
                          400 for PATCH; 409 answers PATCH with 409 too.
    forbidden             true: every call answers 403 (the user lacks the
                          API permission)
    compliance_admin      true (default): the API user may DELETE profiles;
                          false: DELETE answers 403. On the CLI it takes a
                          value: `--compliance-admin false`
    external_id_locked    true: profiles are linked to a lookup adaptor, so a
                          create or PATCH with externalCustomerId, and a find
                          by externalCustomerId, answer 400
    latency               seconds added to every answer (default 0)
    seed                  seeds the random choice of `rate` faults
"""

from __future__ import annotations

import copy
import re
import secrets
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from typing_extensions import override

from delivery_emulators.base import (
    EmulatorServer,
    Request,
    Response,
    basic_credentials,
    run_cli,
    status_word,
)

PROFILES = "/api/v1/customer-profiles"
ITEMS = "/api/v1/conversation-items"
CUSTOMER_ITEMS = "/api/v1/customers/{customerId}/conversation-items"
PROFILE_FIELDS = frozenset(
    {
        "id",
        "name",
        "image",
        "address",
        "emails",
        "phones",
        "externalCustomerId",
        "customAttributes",
    }
)
TEXT_FIELDS = ("name", "image", "address", "externalCustomerId")
PHONE_TYPES = frozenset({"MOBILE", "HOME", "OFFICE"})
PHONE_KEYS = frozenset(
    {"original", "type", "primary", "regionCode", "extension", "smsPreference"}
)
#: Country calling codes by ISO 3166 alpha-2 region, for numbers without "+".
CALLING_CODES = {
    "AT": "43",
    "AU": "61",
    "BE": "32",
    "CA": "1",
    "CH": "41",
    "DE": "49",
    "DK": "45",
    "ES": "34",
    "FI": "358",
    "FR": "33",
    "GB": "44",
    "IE": "353",
    "IS": "354",
    "IT": "39",
    "NL": "31",
    "NO": "47",
    "PL": "48",
    "SE": "46",
    "US": "1",
}
#: Gladly reads a number without "+" and without regionCode as a US number.
DEFAULT_REGION = "US"
FIND_KEYS = ("email", "phoneNumber", "externalCustomerId")
RATE_LIMIT_SCOPES = ("per_method", "shared")
CONFLICT_STATUSES = (409, 400)
SHARED_WINDOW = "*"
MAX_FOUND = 50
ITEM_FIELDS = frozenset({"id", "occurredAt", "content"})
CONTENT_FIELDS = frozenset(
    {"type", "title", "body", "activityType", "sourceName", "link"}
)
ACTIVITY_TYPES = ("CHAT", "EMAIL", "ISSUE", "OTHER", "SMS", "SURVEY", "VOICE")
#: (name, longest length or None, required) of an object's text fields.
CONTENT_TEXTS = (
    ("title", 100, True),
    ("body", 25_000, False),
    ("sourceName", None, False),
)
LINK_TEXTS = (("url", None, True), ("text", None, False))
LINK_FIELDS = frozenset({"url", "text"})
#: How `POST /api/v1/conversation-items` names its customer.
CUSTOMER_KEYS = ("emailAddress", "mobilePhone")
MAX_ITEM_AGE = timedelta(days=365)
ITEM_ID = re.compile(r"[A-Za-z0-9._~-]{1,50}")
URL_SAFE_ID = re.compile(r"[A-Za-z0-9._~-]{1,49}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
E164 = re.compile(r"\+[1-9][0-9]{6,14}")

Profile = dict[str, Any]
Item = dict[str, Any]  # a conversation item


def one_of(name: str, *allowed: Any) -> Callable[[Any], Any]:
    """Converter for a setting with a few legal values.

    It refuses anything else with ValueError, so a typo in a constructor
    argument, `POST /_emulator/config` (400) or a CLI flag fails loudly
    instead of silently picking a behaviour.
    """
    kind = type(allowed[0])

    def convert(value: Any) -> Any:
        converted = kind(value)
        if converted not in allowed:
            choices = ", ".join(map(str, allowed))
            raise ValueError(f"{name} must be one of {choices}, not {value!r}")
        return converted

    convert.__name__ = name  # argparse names the setting in its error
    return convert


as_rate_limit_scope = one_of("rate_limit_scope", *RATE_LIMIT_SCOPES)
as_conflict_status = one_of("conflict_status", *CONFLICT_STATUSES)


def boolean(value: Any) -> bool:
    """Converter for a bool setting whose default is True.

    The CLI gives a `bool` setting a bare flag that can only switch it on,
    so this one takes a value instead: `--compliance-admin false`.
    """
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in {"true", "yes", "on", "1"}:
        return True
    if word in {"false", "no", "off", "0"}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def normalize_email(value: str) -> str:
    """Emails match case-insensitively on the trimmed, lower-cased value."""
    return value.strip().lower()


def normalize_phone(value: str) -> str:
    """Drop separators so "+45 12-34" and "+4512 34" compare equal."""
    return re.sub(r"[\s().-]", "", value)


def e164(original: str, region: str | None = None) -> str | None:
    """`original` in the form Gladly stores it: E.164 without separators.

    A number without "+" is national: it gets the calling code of `region`
    (the US when none is given, as Gladly documents) after dropping one
    leading trunk "0". None when the region is unknown or the result is no
    E.164 number.
    """
    compact = normalize_phone(original)
    if not compact.startswith("+"):
        code = CALLING_CODES.get((region or DEFAULT_REGION).upper())
        if code is None:
            return None
        compact = f"+{code}{compact.removeprefix('0')}"
    return compact if E164.fullmatch(compact) else None


def _emails(profile: Profile) -> set[str]:
    return {normalize_email(e["original"]) for e in profile.get("emails") or []}


def _phone_key(phone: dict[str, Any]) -> str:
    """The number a stored phone compares by (seeded phones may not be E.164)."""
    original = phone["original"]
    return e164(original, phone.get("regionCode")) or normalize_phone(original)


def _phones(profile: Profile, mobile_only: bool) -> set[str]:
    return {
        _phone_key(p)
        for p in profile.get("phones") or []
        if not mobile_only or p.get("type") == "MOBILE"
    }


def _as_stored(body: Profile) -> Profile:
    """A copy of a valid profile body with its phones as Gladly stores them."""
    stored = copy.deepcopy(body)
    for phone in stored.get("phones") or []:
        phone["original"] = e164(phone["original"], phone.get("regionCode"))
    return stored


def _union(kept: list[Any], extra: list[Any], key: Callable[[Any], str]) -> list[Any]:
    seen = {key(item) for item in kept}
    return kept + [item for item in extra if key(item) not in seen]


class GladlyEmulator(EmulatorServer):
    """In-memory Gladly organization: Basic auth, customer profiles, rate limit.

    The rate limit is a rolling one-second window: a request is admitted
    when fewer than `rate_limit` requests were admitted in the preceding
    second, counting those of its own HTTP method (`rate_limit_scope`
    "per_method") or of every method ("shared"); Gladly does not say which.
    Rejected (429) requests do not count.
    """

    settings: ClassVar[dict[str, Callable[[Any], Any]]] = {
        **EmulatorServer.settings,
        "username": str,
        "api_token": str,
        "rate_limit": int,
        "rate_limit_scope": as_rate_limit_scope,
        "conflict_status": as_conflict_status,
        "forbidden": bool,
        "compliance_admin": boolean,
        "external_id_locked": bool,
    }
    setting_help: ClassVar[dict[str, str]] = {
        **EmulatorServer.setting_help,
        "username": "the API user's email, the HTTP Basic user name it accepts",
        "api_token": "the API token it accepts as the HTTP Basic password",
        "rate_limit": "requests admitted per rolling second (per method or shared)",
        "rate_limit_scope": (
            "per_method: each HTTP method has its own budget; shared: one "
            "budget for every method (Gladly does not say which it is)"
        ),
        "conflict_status": (
            "409 or 400: the status of a uniqueness clash (code taken); with "
            "400, PATCH clashes answer 400 too"
        ),
        "forbidden": "answer every call 403, as for a user without the API User role",
        "compliance_admin": (
            "true/false: whether the user may DELETE profiles (false: 403)"
        ),
        "external_id_locked": (
            "refuse externalCustomerId in writes and searches, as on "
            "organizations with a newer lookup adaptor"
        ),
    }
    write_methods = frozenset({"POST", "PATCH", "DELETE"})

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str = "agent@example.com",
        api_token: str = "demo-token",
        rate_limit: int = 10,
        rate_limit_scope: str = "per_method",
        conflict_status: int = 409,
        forbidden: bool = False,
        compliance_admin: bool = True,
        external_id_locked: bool = False,
        latency: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(host, port, latency=latency, seed=seed)
        self.username = username
        self.api_token = api_token
        self.rate_limit = rate_limit
        self.rate_limit_scope = as_rate_limit_scope(rate_limit_scope)
        self.conflict_status = as_conflict_status(conflict_status)
        self.forbidden = forbidden
        self.compliance_admin = boolean(compliance_admin)
        self.external_id_locked = external_id_locked
        self.route("GET", "/api/v1/organization", self._organization)
        self.route("POST", PROFILES, self._create)
        self.route("GET", PROFILES, self._find)
        self.route("GET", PROFILES + "/{id}", self._read)
        self.route("PATCH", PROFILES + "/{id}", self._patch)
        self.route("DELETE", PROFILES + "/{id}", self._delete)
        self.route("POST", CUSTOMER_ITEMS, self._create_customer_item)
        self.route("GET", CUSTOMER_ITEMS, self._customer_items)
        self.route("POST", ITEMS, self._create_item_by_contact)
        self._reset_data()

    # -- helpers for tests -----------------------------------------------

    def add_profile(self, profile: Profile) -> str:
        """Seed a profile without validation; returns its id."""
        with self._lock:
            stamp = _now()
            stored = {"createdAt": stamp, "updatedAt": stamp, **copy.deepcopy(profile)}
            stored.setdefault("id", secrets.token_urlsafe(16))
            self.profiles[stored["id"]] = stored
            return str(stored["id"])

    def merge(self, old_id: str, into_id: str) -> None:
        """Merge `old_id` into `into_id`: old reads answer 301, contacts move."""
        with self._lock:
            old, into = self.profiles.pop(old_id), self.profiles[into_id]
            into["emails"] = _union(
                into.get("emails") or [],
                old.get("emails") or [],
                lambda e: normalize_email(e["original"]),
            )
            into["phones"] = _union(
                into.get("phones") or [],
                old.get("phones") or [],
                _phone_key,
            )
            self.merged[old_id] = into_id
            for item in self._items.values():
                if item["customerId"] == old_id:
                    item["customerId"] = into_id
            if old_id in self.open_conversations:
                self.open_conversations.remove(old_id)
                self.open_conversations.add(into_id)

    def conversation_items(self, customer_id: str | None = None) -> list[Item]:
        """Stored conversation items in creation order: one customer's or all."""
        with self._lock:
            return [
                copy.deepcopy(item)
                for item in self._items.values()
                if customer_id in (None, item["customerId"])
            ]

    def open_conversation(self, profile_id: str) -> None:
        """Give a profile an open conversation, which blocks its deletion."""
        with self._lock:
            if profile_id not in self.profiles:
                raise ValueError(f"no customer profile {profile_id!r}")
            self.open_conversations.add(profile_id)

    @override
    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                **super().snapshot(),
                "profiles": self.profiles,
                "merged": self.merged,
                "open_conversations": sorted(self.open_conversations),
                "conversation_items": list(self._items.values()),
                "profiles_created_by_items": self.profiles_created_by_items,
                "rate_limited": self.rate_limited,
                "rate_limited_by_method": dict(self.rate_limited_by_method),
            }

    # -- base hooks --------------------------------------------------------

    @override
    def error(
        self,
        status: int,
        message: str,
        code: str | None = None,
        attr: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Response:
        entry: dict[str, Any] = {"code": code or status_word(status).lower()}
        if attr is not None:
            entry["attr"] = attr
        entry["detail"] = message
        if meta is not None:
            entry["meta"] = meta
        return Response(status, {"errors": [entry]})

    @override
    def _reset_data(self) -> None:
        self.profiles: dict[str, Profile] = {}
        self.merged: dict[str, str] = {}  # merged-away id → surviving id
        self.open_conversations: set[str] = set()
        self._items: dict[str, Item] = {}
        self.profiles_created_by_items: list[str] = []
        self.rate_limited = 0
        self.rate_limited_by_method: Counter[str] = Counter()
        self._windows: dict[str, deque[float]] = {}

    @override
    def _config_actions(self) -> dict[str, Callable[[Any], None]]:
        """Adds `open_conversation`: a profile id, as the helper takes it."""
        return {
            **super()._config_actions(),
            "open_conversation": self.open_conversation,
        }

    @override
    def _gate(self, request: Request) -> Response | None:
        """Basic auth, permission, then the rate limit."""
        if basic_credentials(request.headers) != (self.username, self.api_token):
            return self.error(401, "missing or bad API credentials", "unauthorized")
        if self.forbidden:
            return self.error(403, "the API user lacks this permission", "forbidden")
        window = self._window(request.method)
        if len(window) >= self.rate_limit:
            self.rate_limited += 1
            self.rate_limited_by_method[request.method] += 1
            return self.error(429, "rate limit exceeded", "too_many_requests")
        window.append(time.monotonic())
        return None

    @override
    def _finalize(self, request: Request, response: Response) -> Response:
        remaining = max(0, self.rate_limit - len(self._window(request.method)))
        response.headers["Ratelimit-Limit-Second"] = str(self.rate_limit)
        response.headers["Ratelimit-Remaining-Second"] = str(remaining)
        return response

    def _window(self, method: str) -> deque[float]:
        """Admission times within the last second that count against `method`."""
        key = SHARED_WINDOW if self.rate_limit_scope == "shared" else method
        window = self._windows.setdefault(key, deque())
        horizon = time.monotonic() - 1.0
        while window and window[0] <= horizon:
            window.popleft()
        return window

    # -- routes --------------------------------------------------------------

    def _organization(self, request: Request) -> Response:
        return Response(200, {"id": "org-1", "name": "Demo Org"})

    def _create(self, request: Request) -> Response:
        invalid = self._invalid(request.json)
        if invalid:
            return invalid
        body = _as_stored(request.json)
        profile_id = body.get("id") or secrets.token_urlsafe(16)
        if profile_id in self.profiles or profile_id in self.merged:
            return self.error(self.conflict_status, "customer ID exists", "taken", "id")
        taken = self._taken(body, profile_id)
        if taken:
            return taken
        stamp = _now()
        self.profiles[profile_id] = {
            **body,
            "id": profile_id,
            "createdAt": stamp,
            "updatedAt": stamp,
        }
        return Response(201, headers={"Location": f"{PROFILES}/{profile_id}"})

    def _find(self, request: Request) -> Response:
        keys = [key for key in FIND_KEYS if key in request.query]
        if len(keys) != 1 or len(request.query[keys[0]]) != 1:
            return self.error(400, f"give exactly one of {', '.join(FIND_KEYS)}")
        key, value = keys[0], request.query[keys[0]][0].strip()
        if key == "externalCustomerId" and self.external_id_locked:
            return self._external_id_locked("cannot be searched")
        matches = self._matcher(key, value)
        if matches is None:
            return self.error(400, f"malformed {key}", "invalid", key)
        return Response(200, self._search(matches)[:MAX_FOUND])

    def _read(self, request: Request) -> Response:
        profile_id = request.params["id"]
        if profile_id in self.merged:
            new_id = self._survivor(profile_id)
            meta = {"old": profile_id, "new": new_id}
            moved = self.error(301, "profile merged", "moved", meta=meta)
            moved.headers["Location"] = f"{PROFILES}/{new_id}"
            return moved
        if profile_id not in self.profiles:
            return self.error(404, "customer profile not found", "not_found")
        return Response(200, self.profiles[profile_id])

    def _patch(self, request: Request) -> Response:
        profile_id = request.params["id"]
        profile = self.profiles.get(profile_id)
        if profile is None:
            return self.error(404, "customer profile not found", "not_found")
        invalid = self._invalid(request.json)
        if invalid:
            return invalid
        body = _as_stored(request.json)
        if "id" in body and body["id"] != profile_id:
            return self.error(400, "id cannot be changed", "invalid", "id")
        taken = self._taken(body, profile_id)
        if taken:
            return taken
        attributes = {**(profile.get("customAttributes") or {})}
        profile.update(body)
        if "customAttributes" in body:
            profile["customAttributes"] = {**attributes, **body["customAttributes"]}
        profile["updatedAt"] = _now()
        return Response(204)

    def _delete(self, request: Request) -> Response:
        """Irreversible; needs the Compliance Admin role and no open conversation."""
        if not self.compliance_admin:
            detail = "deleting a customer needs the Compliance Admin role"
            return self.error(403, detail, "forbidden")
        profile_id = request.params["id"]
        if profile_id not in self.profiles:
            return self.error(404, "customer profile not found", "not_found")
        if profile_id in self.open_conversations:
            detail = "customer has open conversations"
            return self.error(400, detail, "invalid_state")
        del self.profiles[profile_id]
        self._items = {
            key: item
            for key, item in self._items.items()
            if item["customerId"] != profile_id
        }
        self.merged = {
            old: new
            for old, new in self.merged.items()
            if self._survivor(old) != profile_id
        }
        return Response(204)

    def _create_customer_item(self, request: Request) -> Response:
        customer_id = request.params["customerId"]
        if customer_id not in self.profiles:
            return self.error(404, "customer not found", "not_found")
        return self._create_item(request.json, ITEM_FIELDS, lambda: customer_id)

    def _create_item_by_contact(self, request: Request) -> Response:
        """The customer is named by email or mobile, and created when missing."""
        body = request.json
        return self._create_item(
            body, ITEM_FIELDS | {"customer"}, lambda: self._customer_for(body)
        )

    def _create_item(
        self, body: Any, fields: frozenset[str], customer: Callable[[], str]
    ) -> Response:
        """Validate, refuse a repeated id, then store (`customer` runs last)."""
        if not isinstance(body, dict):
            return self.error(400, "body must be a JSON object", "invalid")
        problem = _item_problem(body, fields)
        if problem:
            attr, detail = problem
            return self.error(400, detail, "invalid", attr)
        item_id = body.get("id") or secrets.token_urlsafe(16)
        if item_id in self._items:
            detail = "conversation item already exists"
            return self.error(409, detail, "taken", "id")
        self._items[item_id] = {
            "id": item_id,
            "customerId": customer(),
            "occurredAt": body.get("occurredAt") or _now(),
            "content": copy.deepcopy(body["content"]),
            "createdAt": _now(),
        }
        return Response(201, headers={"Location": f"{ITEMS}/{item_id}"})

    def _customer_items(self, request: Request) -> Response:
        customer_id = request.params["customerId"]
        if customer_id not in self.profiles:
            return self.error(404, "customer not found", "not_found")
        return Response(200, self.conversation_items(customer_id))

    # -- validation and lookup -------------------------------------------

    def _customer_for(self, body: dict[str, Any]) -> str:
        """Id of the newest profile holding the item's contact, made if none does."""
        ((key, value),) = body["customer"].items()
        if key == "mobilePhone":
            number = e164(value)
            found = self._search(lambda p: number in _phones(p, mobile_only=False))
            new = {"phones": [{"original": number, "type": "MOBILE"}]}
        else:
            email = normalize_email(value)
            found = self._search(lambda p: email in _emails(p))
            new = {"emails": [{"original": value}]}
        if found:
            return str(found[0]["id"])
        profile_id = self.add_profile(new)
        self.profiles_created_by_items.append(profile_id)
        return profile_id

    def _search(self, matches: Callable[[Profile], bool]) -> list[Profile]:
        """Matching profiles, newest first."""
        return [p for p in reversed(self.profiles.values()) if matches(p)]

    def _invalid(self, body: Any) -> Response | None:
        """400 for a body that breaks the contract's profile shape."""
        if not isinstance(body, dict):
            return self.error(400, "body must be a JSON object", "invalid")
        problem = _shape_problem(body)
        if problem:
            attr, detail = problem
            return self.error(400, detail, "invalid", attr)
        if "externalCustomerId" in body and self.external_id_locked:
            return self._external_id_locked("cannot be set")
        return None

    def _external_id_locked(self, refused: str) -> Response:
        """Profiles linked to a lookup adaptor (since 2021-05-12) own this field."""
        detail = f"{refused} for profiles linked to a lookup adaptor"
        return self.error(400, detail, "invalid", "externalCustomerId")

    def _taken(self, body: Profile, own_id: str) -> Response | None:
        """`taken` when another profile holds one of the body's emails or mobiles."""
        emails, mobiles = _emails(body), _phones(body, mobile_only=True)
        for other_id, other in self.profiles.items():
            if other_id == own_id:
                continue
            if emails & _emails(other):
                return self._taken_error("emails", "email", other_id)
            if mobiles & _phones(other, mobile_only=True):
                return self._taken_error("phones", "mobile phone", other_id)
        return None

    def _taken_error(self, attr: str, what: str, holder: str) -> Response:
        """A uniqueness clash, answered with `conflict_status` (409 or 400).

        Gladly's OpenAPI documents 400 `taken` besides 409, and no 409 for
        PATCH at all: the 400 mode lets clients prove they read both alike.
        """
        detail = f"{what} is used by another customer"
        return self.error(self.conflict_status, detail, "taken", attr, {"id": holder})

    def _matcher(self, key: str, value: str) -> Callable[[Profile], bool] | None:
        """Predicate for a find query, None when the value is malformed."""
        if key == "email":
            wanted = normalize_email(value)
            ok = EMAIL.fullmatch(wanted)
            return (lambda p: wanted in _emails(p)) if ok else None
        if key == "phoneNumber":
            number = normalize_phone(value)
            ok = E164.fullmatch(number)
            return (lambda p: number in _phones(p, mobile_only=False)) if ok else None
        return lambda p: p.get("externalCustomerId") == value

    def _survivor(self, profile_id: str) -> str:
        while profile_id in self.merged:
            profile_id = self.merged[profile_id]
        return profile_id


def _shape_problem(body: Profile) -> tuple[str, str] | None:
    """(attr, detail) of the first contract violation in a profile body."""
    unknown = sorted(set(body) - PROFILE_FIELDS)
    if unknown:
        return unknown[0], "unknown field"
    if body.get("id") is not None and not (
        isinstance(body["id"], str) and URL_SAFE_ID.fullmatch(body["id"])
    ):
        return "id", "id must be URL-safe and shorter than 50 characters"
    for name in TEXT_FIELDS:
        if body.get(name) is not None and not isinstance(body[name], str):
            return name, "must be a string"
    if not isinstance(body.get("customAttributes", {}), dict):
        return "customAttributes", "must be an object"
    return _entries_problem(body.get("emails", []), "emails", _email_problem) or (
        _entries_problem(body.get("phones", []), "phones", _phone_problem)
    )


def _entries_problem(
    items: Any, attr: str, problem: Callable[[Any], str | None]
) -> tuple[str, str] | None:
    """(attr, detail) for an `emails` or `phones` value that is no valid array."""
    if not isinstance(items, list):
        return attr, "must be an array"
    for item in items:
        detail = problem(item)
        if detail:
            return attr, detail
    return None


def _email_problem(item: Any) -> str | None:
    original = item.get("original") if isinstance(item, dict) else None
    if isinstance(original, str) and EMAIL.fullmatch(normalize_email(original)):
        return None
    return f"malformed email: {original!r}"


def _phone_problem(item: Any) -> str | None:
    """Why a phone entry is refused: bad keys, type, regionCode or number."""
    if not isinstance(item, dict):
        return "a phone must be an object"
    unknown = sorted(set(item) - PHONE_KEYS)
    if unknown:
        return f"unknown phone key {unknown[0]!r}"
    if item.get("type", "MOBILE") not in PHONE_TYPES:
        return f"phone type must be one of {sorted(PHONE_TYPES)}"
    for key in ("regionCode", "extension", "smsPreference"):
        if not isinstance(item.get(key, ""), str):
            return f"{key} must be a string"
    region = item.get("regionCode")
    if region is not None and region.upper() not in CALLING_CODES:
        return f"unknown regionCode {region!r}"
    original = item.get("original")
    if isinstance(original, str) and e164(original, region):
        return None
    return f"malformed phone: {original!r}"


def _item_problem(
    body: dict[str, Any], fields: frozenset[str]
) -> tuple[str, str] | None:
    """(attr, detail) of the first contract violation in a conversation item."""
    unknown = sorted(set(body) - fields)
    if unknown:
        return unknown[0], "unknown field"
    if "customer" in fields:
        problem = _customer_problem(body.get("customer"))
        if problem:
            return problem
    item_id = body.get("id")
    if item_id is not None and not (
        isinstance(item_id, str) and ITEM_ID.fullmatch(item_id)
    ):
        return "id", "id must be URL-safe and at most 50 characters"
    if "occurredAt" in body and not _within_a_year(body["occurredAt"]):
        return "occurredAt", "must be an ISO 8601 timestamp less than a year old"
    return _content_problem(body.get("content"))


def _customer_problem(customer: Any) -> tuple[str, str] | None:
    """The contact of `POST /api/v1/conversation-items`: one well-formed key."""
    if not isinstance(customer, dict) or len(customer) != 1:
        return "customer", f"give exactly one of {', '.join(CUSTOMER_KEYS)}"
    ((key, value),) = customer.items()
    if key == "emailAddress":
        ok = isinstance(value, str) and bool(EMAIL.fullmatch(normalize_email(value)))
    elif key == "mobilePhone":
        ok = isinstance(value, str) and e164(value) is not None
    else:
        return f"customer.{key}", "unknown field"
    return None if ok else (f"customer.{key}", f"malformed {key}")


def _within_a_year(value: Any) -> bool:
    """Gladly refuses activity that occurred more than a year ago."""
    if not isinstance(value, str):
        return False
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment >= datetime.now(UTC) - MAX_ITEM_AGE


def _content_problem(content: Any) -> tuple[str, str] | None:
    """A CUSTOMER_ACTIVITY content object with its length limits."""
    problem = _object_problem(content, "content", CONTENT_FIELDS, CONTENT_TEXTS)
    if problem:
        return problem
    if content.get("type") != "CUSTOMER_ACTIVITY":
        return "content.type", "must be CUSTOMER_ACTIVITY"
    if content.get("activityType") not in ACTIVITY_TYPES:
        return "content.activityType", f"must be one of {', '.join(ACTIVITY_TYPES)}"
    if "link" in content:
        return _object_problem(content["link"], "content.link", LINK_FIELDS, LINK_TEXTS)
    return None


def _object_problem(
    value: Any,
    attr: str,
    fields: Collection[str],
    texts: tuple[tuple[str, int | None, bool], ...],
) -> tuple[str, str] | None:
    """A JSON object without unknown keys whose text fields keep their rules."""
    if not isinstance(value, dict):
        return attr, "must be an object"
    unknown = sorted(set(value) - set(fields))
    if unknown:
        return f"{attr}.{unknown[0]}", "unknown field"
    for name, longest, required in texts:
        detail = _text_problem(value.get(name), longest, required)
        if detail:
            return f"{attr}.{name}", detail
    return None


def _text_problem(value: Any, longest: int | None, required: bool) -> str | None:
    if value is None:
        return "is required" if required else None
    if not isinstance(value, str):
        return "must be a string"
    if required and not value.strip():
        return "must not be blank"
    if longest is not None and len(value) > longest:
        return f"must be at most {longest} characters"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(GladlyEmulator, argv)


if __name__ == "__main__":
    sys.exit(main())
