"""Gladly API shapes this target assumes (see api-contracts.md, "Gladly").

Paths, hosts, the profile body, the error envelope, conversation items and
the delete call come from Gladly's published OpenAPI file; the clash and 401
bodies, the rate-limit headers on every response, the shallow merge of
``customAttributes`` and the full list of activity types are assumed.
Each assumption lives here, in one place, and responses are read leniently:
unknown fields are ignored, ``errors`` may be a list or a single object, and
no error body is required to parse.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import typing as t
import urllib.parse
from dataclasses import dataclass, field

import phonenumbers
import requests

from singer_delivery.http import json_body

ORGANIZATION_PATH = "/api/v1/organization"
PROFILES_PATH = "/api/v1/customer-profiles"
CUSTOMERS_PATH = "/api/v1/customers"

#: Profile fields a record can set directly; any other name is a custom attribute.
STANDARD_FIELDS = frozenset(
    {"name", "email", "phone", "address", "externalCustomerId", "image", "id"}
)
#: Single-string fields: a PATCH sends the new value in place of the old one.
TEXT_FIELDS = ("name", "address", "image", "externalCustomerId")
#: Body names that are not record targets (use ``email``/``phone`` instead).
RESERVED_FIELDS = frozenset(
    {"emails", "phones", "customAttributes", "createdAt", "updatedAt"}
)
PHONE_TYPES = ("MOBILE", "HOME", "OFFICE")
#: How Gladly reads a number that has neither a leading ``+`` nor a ``regionCode``.
IMPLIED_PHONE_REGION = "US"
#: Keys of an ``emails``/``phones`` entry that are sent back in a PATCH.
#: PATCH replaces the whole array, so a key left out is lost: a phone
#: without its ``regionCode`` would be read as a US number.
CONTACT_KEYS = (
    "original",
    "type",
    "primary",
    "extension",
    "regionCode",
    "smsPreference",
)

#: A client-chosen id: URL-safe and shorter than 50 characters.
ID_PATTERN = re.compile(r"[A-Za-z0-9._~-]{1,49}")
DERIVED_ID_PREFIX = "tg-"

#: The error code of a uniqueness clash (an id, email or MOBILE number in use).
TAKEN = "taken"
#: The error code of a delete refused while the customer has open conversations.
INVALID_STATE = "invalid_state"

#: The ``content.type`` of an item on a customer's timeline written by an API.
CUSTOMER_ACTIVITY = "CUSTOMER_ACTIVITY"
#: ``activityType`` values. Gladly's documentation lists EMAIL, ISSUE, SMS and
#: SURVEY "and more"; this full list is the one the project fixes (assumed,
#: shared with the emulator), kept here so a real instance that differs is
#: one edit away.
ACTIVITY_TYPES = ("CHAT", "EMAIL", "ISSUE", "OTHER", "SMS", "SURVEY", "VOICE")
TITLE_MAX_CHARS = 100
BODY_MAX_CHARS = 25_000
#: Gladly refuses activity that occurred longer ago than this.
ITEM_MAX_AGE = datetime.timedelta(days=365)

#: How many merges a read follows before giving up (merges chain rarely).
MAX_MOVES = 5

LIMIT_HEADER = "Ratelimit-Limit-Second"

GLADLY_HOST_SUFFIXES = (".gladly.com", ".gladly.qa")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ORG = re.compile(_LABEL)
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.gladly\.(?:com|qa)")
DOMAIN_FORMS = (
    "the organization's subdomain, e.g. mycompany (for "
    "https://mycompany.gladly.com), or a full Gladly host such as "
    "mycompany.gladly.qa or mycompany.us-1.gladly.com"
)


def gladly_host(domain: str) -> str:
    """The API host for the ``domain`` setting.

    Raises ``ValueError`` with the expected forms for anything that is not a
    bare subdomain or a Gladly host: a scheme, path, port or foreign host
    would send the API token somewhere the user did not mean.
    """
    value = domain.strip().lower()
    if _ORG.fullmatch(value):
        return f"{value}.gladly.com"
    if _HOST.fullmatch(value):
        return value
    msg = f"domain {domain!r} is not a Gladly organization; use {DOMAIN_FORMS}"
    raise ValueError(msg)


def normalize_email(value: str) -> str:
    """Gladly matches emails on the trimmed, lower-cased value."""
    return value.strip().lower()


def email_key(entry: t.Mapping[str, t.Any]) -> str:
    """What tells two ``emails`` entries apart: the normalized address."""
    return normalize_email(str(entry["original"]))


def phone_key(entry: t.Mapping[str, t.Any]) -> str:
    """What tells two ``phones`` entries apart: the number in E.164.

    A stored entry is read as Gladly reads it (with its ``regionCode``, else
    as a US number), so ``+45 12 34 56 78`` on a profile and the
    ``+4512345678`` this target sends are one number. Text that is no phone
    number compares without separators.
    """
    original = str(entry["original"])
    region = str(entry.get("regionCode") or IMPLIED_PHONE_REGION)
    try:
        number = phonenumbers.parse(original, region)
    except phonenumbers.NumberParseException:
        return re.sub(r"[\s().-]", "", original)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def derived_id(key: str) -> str:
    """A profile id that only this record key produces.

    Creating with it makes a repeated create answer 409 instead of making a
    duplicate, and tells a later run that the profile holding it is its own.
    """
    digest = hashlib.blake2b(key.encode(), digest_size=15).hexdigest()
    return DERIVED_ID_PREFIX + digest


def item_id(stream: str, key: str) -> str:
    """A conversation item id that only this stream's record key produces.

    Item ids are unique in the whole organization, so the stream name is
    part of what is hashed: ``id=1`` of two streams are two items. A retry
    or rerun sends the same id, which Gladly answers with 409 instead of
    adding the activity twice.
    """
    digest = hashlib.blake2b(f"{stream}\n{key}".encode(), digest_size=15).hexdigest()
    return DERIVED_ID_PREFIX + digest


def profile_path(profile_id: str) -> str:
    """A profile's URL path, its id percent-encoded."""
    return f"{PROFILES_PATH}/{urllib.parse.quote(profile_id, safe='')}"


def customer_items_path(profile_id: str) -> str:
    """Where items are added to one customer's timeline."""
    return (
        f"{CUSTOMERS_PATH}/{urllib.parse.quote(profile_id, safe='')}/conversation-items"
    )


@dataclass(frozen=True)
class ApiProblem:
    """One entry of the ``errors`` envelope."""

    code: str
    detail: str
    attr: str | None = None
    meta: t.Mapping[str, t.Any] = field(default_factory=dict)


def problems_of(response: requests.Response) -> list[ApiProblem]:
    """The ``errors`` entries, whether sent as a list or one object."""
    body = json_body(response)
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, dict):
        errors = [errors]
    problems = [
        ApiProblem(
            code=str(e.get("code") or f"http_{response.status_code}"),
            detail=str(e.get("detail") or e.get("code") or response.reason or ""),
            attr=str(e["attr"]) if e.get("attr") else None,
            meta=e["meta"] if isinstance(e.get("meta"), dict) else {},
        )
        for e in errors or []
        if isinstance(e, dict)
    ]
    return problems or [
        ApiProblem(f"http_{response.status_code}", response.reason or "no message")
    ]


def first_problem(response: requests.Response) -> ApiProblem:
    """The entry a reject or an error message quotes."""
    return problems_of(response)[0]


def uniqueness_clash(response: requests.Response) -> bool:
    """Whether Gladly refused because an id, email or MOBILE number is taken.

    Gladly says so with 409, and (its OpenAPI file shows) also with 400 and
    the code ``taken``; PATCH documents no 409 at all. Both forms mean the
    same, so every caller asks here instead of testing for 409.
    """
    if response.status_code == 409:
        return True
    return response.status_code == 400 and any(
        _is_taken(problem) for problem in problems_of(response)
    )


def clash_problem(response: requests.Response) -> ApiProblem:
    """The ``taken`` entry of a clash (a 400 may list other problems first)."""
    problems = problems_of(response)
    return next((p for p in problems if _is_taken(p)), problems[0])


def _is_taken(problem: ApiProblem) -> bool:
    return problem.code.lower() == TAKEN


def profiles_of(response: requests.Response) -> list[dict[str, t.Any]]:
    """Profiles from a find answer (a JSON array); anything else finds none."""
    body = json_body(response)
    if not isinstance(body, list):
        return []
    return [p for p in body if isinstance(p, dict) and p.get("id")]


def profile_of(response: requests.Response) -> dict[str, t.Any]:
    """A profile from a read answer."""
    body = json_body(response)
    return body if isinstance(body, dict) else {}


def moved_to(response: requests.Response) -> str | None:
    """The surviving id of a merged profile (301): ``meta.new``, else Location."""
    for problem in problems_of(response):
        if problem.meta.get("new"):
            return str(problem.meta["new"])
    location = response.headers.get("Location") or ""
    tail = location.rstrip("/").rsplit("/", 1)[-1]
    return urllib.parse.unquote(tail) or None


def is_invalid_state(response: requests.Response) -> bool:
    """Whether a delete was refused because the customer has open conversations."""
    return response.status_code == 400 and any(
        p.code.lower() == INVALID_STATE for p in problems_of(response)
    )


def credential_failure(response: requests.Response) -> str | None:
    """A stop message for 401/403: every further call would fail the same way.

    A 403 to a DELETE is the missing Compliance Admin role (deleting
    profiles needs it besides API User), so every further delete would fail.
    """
    if response.status_code == 401:
        return (
            "Gladly refused the API credentials (HTTP 401). Check username (the "
            "email address of the Gladly API user) and api_token (an API token "
            "that this user created in Gladly); a deleted or rotated token must "
            "be replaced in the config."
        )
    if response.status_code == 403 and _method(response) == "DELETE":
        return (
            "Gladly answered 403 Forbidden to a customer profile delete: "
            "deleting profiles needs the Compliance Admin role besides API "
            "User. Give the API user in username the Compliance Admin role in "
            "Gladly, or remove sync_mode delete from the config. The run "
            "stopped; run it again once the role is given."
        )
    if response.status_code == 403:
        return (
            "Gladly answered 403 Forbidden: the API user in username lacks the "
            "permission for customer profiles. Give that user the API User role "
            "in Gladly, or set username and api_token to a user who has it."
        )
    return None


def _method(response: requests.Response) -> str | None:
    """The method of the request an answer belongs to (None when unknown)."""
    request = getattr(response, "request", None)
    return getattr(request, "method", None)
