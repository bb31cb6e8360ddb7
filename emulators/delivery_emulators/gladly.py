"""Gladly REST API emulator, per /work/shared/api-contracts.md ("Gladly").

Run standalone: `python -m delivery_emulators.gladly --port 8766 --rate-limit 10`.
"""

from __future__ import annotations

import copy
import re
import secrets
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from delivery_emulators.base import (
    EmulatorServer,
    Request,
    Response,
    basic_credentials,
    run_cli,
    status_word,
)

PROFILES = "/api/v1/customer-profiles"
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
URL_SAFE_ID = re.compile(r"[A-Za-z0-9._~-]{1,49}")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
E164 = re.compile(r"\+[1-9][0-9]{6,14}")

Profile = dict[str, Any]


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
        self.route("GET", "/api/v1/organization", self._organization)
        self.route("POST", PROFILES, self._create)
        self.route("GET", PROFILES, self._find)
        self.route("GET", PROFILES + "/{id}", self._read)
        self.route("PATCH", PROFILES + "/{id}", self._patch)
        self.route("DELETE", PROFILES + "/{id}", self._delete)
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
            if old_id in self.open_conversations:
                self.open_conversations.remove(old_id)
                self.open_conversations.add(into_id)

    def open_conversation(self, profile_id: str) -> None:
        """Give a profile an open conversation, which blocks its deletion."""
        with self._lock:
            if profile_id not in self.profiles:
                raise ValueError(f"no customer profile {profile_id!r}")
            self.open_conversations.add(profile_id)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                **super().snapshot(),
                "profiles": self.profiles,
                "merged": self.merged,
                "open_conversations": sorted(self.open_conversations),
                "rate_limited": self.rate_limited,
                "rate_limited_by_method": dict(self.rate_limited_by_method),
            }

    # -- base hooks --------------------------------------------------------

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

    def _reset_data(self) -> None:
        self.profiles: dict[str, Profile] = {}
        self.merged: dict[str, str] = {}  # merged-away id → surviving id
        self.open_conversations: set[str] = set()
        self.rate_limited = 0
        self.rate_limited_by_method: Counter[str] = Counter()
        self._windows: dict[str, deque[float]] = {}

    def _config_actions(self) -> dict[str, Callable[[Any], None]]:
        """Adds `open_conversation`: a profile id, as the helper takes it."""
        return {
            **super()._config_actions(),
            "open_conversation": self.open_conversation,
        }

    def _gate(self, request: Request) -> Response | None:
        """Basic auth, permission, then the per-method rate limit."""
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
        matches = self._matcher(key, value)
        if matches is None:
            return self.error(400, f"malformed {key}", "invalid", key)
        found = [p for p in reversed(self.profiles.values()) if matches(p)]
        return Response(200, found[:MAX_FOUND])

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
        self.merged = {
            old: new
            for old, new in self.merged.items()
            if self._survivor(old) != profile_id
        }
        return Response(204)

    # -- validation and lookup -------------------------------------------

    def _invalid(self, body: Any) -> Response | None:
        """400 for a body that breaks the contract's profile shape."""
        if not isinstance(body, dict):
            return self.error(400, "body must be a JSON object", "invalid")
        problem = _shape_problem(body)
        if problem:
            attr, detail = problem
            return self.error(400, detail, "invalid", attr)
        return None

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


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(GladlyEmulator, argv)


if __name__ == "__main__":
    sys.exit(main())
