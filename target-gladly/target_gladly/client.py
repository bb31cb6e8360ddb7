"""Gladly API calls, one method per call this target makes.

Answers that concern one record (a malformed email, a taken phone, an
unknown id, open conversations) become ``ProfileRefused``, which the sink
turns into that record's reject. Answers that stop every record (401/403,
a 403 to a delete included) are raised as ``FatalApiError`` by the
transport's ``fatal_check`` before they get here.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

import requests

from singer_delivery import Item, Outcome
from singer_delivery.http import CallObserver, FatalApiError, Transport
from singer_delivery.serialization import dumps
from target_gladly import contract

FIND_ROUTE = f"GET {contract.PROFILES_PATH}?email="
FIND_PHONE_ROUTE = f"GET {contract.PROFILES_PATH}?phoneNumber="
READ_ROUTE = f"GET {contract.PROFILES_PATH}/{{id}}"
CREATE_ROUTE = f"POST {contract.PROFILES_PATH}"
PATCH_ROUTE = f"PATCH {contract.PROFILES_PATH}/{{id}}"
DELETE_ROUTE = f"DELETE {contract.PROFILES_PATH}/{{id}}"
ITEM_ROUTE = f"POST {contract.CUSTOMERS_PATH}/{{id}}/conversation-items"

OPEN_CONVERSATIONS = (
    "the customer has open conversations, and Gladly deletes no profile "
    "while it has; close the customer's conversations in Gladly first (the "
    "delete is tried again on the next run)"
)
CUSTOMER_GONE = (
    "the customer profile was deleted or merged in Gladly while this item "
    "was being written; it is sent again on the next run"
)


class ProfileRefused(Exception):
    """Gladly (or this target) refused one record; the others go on.

    ``permanent`` is False when the same record may well succeed later
    without changing (a profile merged meanwhile, open conversations), so
    it is not quarantined.
    """

    def __init__(
        self,
        reason: str,
        message: str,
        http_status: int | None = None,
        fields: t.Sequence[str] = (),
        *,
        permanent: bool = True,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.http_status = http_status
        self.fields = tuple(fields)
        self.permanent = permanent

    def outcome(self, item: Item) -> Outcome:
        """The item's reject."""
        return Outcome.refused(
            item,
            self.reason,
            self.message,
            http_status=self.http_status,
            fields=self.fields,
            permanent=self.permanent,
        )

    @classmethod
    def from_response(cls, response: requests.Response) -> ProfileRefused:
        """A refusal in the API's own words (its code becomes the reason)."""
        problem = contract.first_problem(response)
        return cls(
            problem.code.lower(),
            problem.detail,
            response.status_code,
            (problem.attr,) if problem.attr else (),
        )


@dataclass(frozen=True)
class Conflict:
    """A uniqueness clash: ``attr`` is taken, by ``holder`` if known.

    ``status`` is what Gladly answered (409, or 400 with code ``taken``), so
    a reject reports the answer that was really given.
    """

    attr: str | None
    holder: str | None
    detail: str
    status: int = 409

    @classmethod
    def from_response(cls, response: requests.Response) -> Conflict:
        """Read the taken field and the profile that holds it."""
        problem = contract.clash_problem(response)
        holder = problem.meta.get("id")
        return cls(
            problem.attr,
            str(holder) if holder else None,
            problem.detail,
            response.status_code,
        )


@dataclass
class GladlyClient:
    """The calls of one stream, counted into that stream's observer."""

    transport: Transport
    observer: CallObserver | None = None

    def _call(
        self,
        method: str,
        path: str,
        route: str,
        body: t.Any = None,
        params: dict[str, str] | None = None,
    ) -> requests.Response:
        return self.transport.request(
            method,
            path,
            route=route,
            body=None if body is None else dumps(body),
            params=params,
            observer=self.observer,
        )

    def organization(self) -> requests.Response:
        """``GET /api/v1/organization``: the cheap credential check."""
        route = f"GET {contract.ORGANIZATION_PATH}"
        response = self._call("GET", contract.ORGANIZATION_PATH, route)
        if response.status_code != 200:
            problem = contract.first_problem(response)
            msg = (
                f"{route} answered HTTP {response.status_code} ({problem.detail}); "
                "check domain (or base_url) points at your Gladly organization"
            )
            raise FatalApiError(msg, status=response.status_code, code=problem.code)
        return response

    def find_by_email(self, email: str) -> list[dict[str, t.Any]]:
        """Profiles holding ``email`` (Gladly matches it case-insensitively)."""
        response = self._call(
            "GET", contract.PROFILES_PATH, FIND_ROUTE, params={"email": email}
        )
        if response.status_code != 200:
            raise ProfileRefused.from_response(response)
        return contract.profiles_of(response)

    def find_by_phone(self, number: str) -> list[dict[str, t.Any]]:
        """Profiles holding ``number`` (E.164), whatever its phone type."""
        response = self._call(
            "GET",
            contract.PROFILES_PATH,
            FIND_PHONE_ROUTE,
            params={"phoneNumber": number},
        )
        if response.status_code != 200:
            raise ProfileRefused.from_response(response)
        return contract.profiles_of(response)

    def read(self, profile_id: str) -> dict[str, t.Any] | None:
        """The profile, following merges (301) to the survivor; None when absent."""
        for _ in range(contract.MAX_MOVES + 1):
            response = self._call("GET", contract.profile_path(profile_id), READ_ROUTE)
            if response.status_code == 404:
                return None
            if response.status_code == 301 and (new_id := contract.moved_to(response)):
                profile_id = new_id
                continue
            if response.status_code != 200:
                raise ProfileRefused.from_response(response)
            return {"id": profile_id, **contract.profile_of(response)}
        msg = (
            f"the profile was merged more than {contract.MAX_MOVES} times in a "
            "row; update the record's id to the surviving profile"
        )
        raise ProfileRefused("too_many_merges", msg, 301)

    def create(self, body: dict[str, t.Any]) -> Conflict | None:
        """``POST``: None when created, the ``Conflict`` when something is taken."""
        response = self._call("POST", contract.PROFILES_PATH, CREATE_ROUTE, body)
        if contract.uniqueness_clash(response):
            return Conflict.from_response(response)
        if not response.ok:
            raise ProfileRefused.from_response(response)
        return None

    def patch(self, profile_id: str, changes: dict[str, t.Any]) -> bool:
        """``PATCH`` only the changes; False when the profile is gone (404).

        A clash (an email or mobile number held by another profile) is
        raised as a ``ProfileRefused`` naming that profile.
        """
        response = self._call(
            "PATCH", contract.profile_path(profile_id), PATCH_ROUTE, changes
        )
        if response.status_code == 404:
            return False
        if contract.uniqueness_clash(response):
            raise conflict_refusal(Conflict.from_response(response))
        if not response.ok:
            raise ProfileRefused.from_response(response)
        return True

    def delete(self, profile_id: str) -> None:
        """``DELETE`` a profile; one already gone (404) counts as deleted.

        A merged-away id (301) is refused rather than followed: the survivor
        holds more than the record named, and a delete cannot be undone.
        """
        response = self._call("DELETE", contract.profile_path(profile_id), DELETE_ROUTE)
        if response.status_code == 301:  # checked first: requests counts it "ok"
            survivor = contract.moved_to(response) or "another profile"
            msg = (
                f"the profile was merged into {survivor}, which holds the data "
                "of both; delete that profile explicitly if that is intended"
            )
            raise ProfileRefused("merged", msg, 301)
        if response.ok or response.status_code == 404:
            return
        if contract.is_invalid_state(response):
            raise ProfileRefused(
                "open_conversations", OPEN_CONVERSATIONS, 400, permanent=False
            )
        raise ProfileRefused.from_response(response)

    def create_item(self, customer_id: str, body: dict[str, t.Any]) -> bool:
        """Add an item to a customer's timeline; False when its id exists.

        A repeated id is Gladly's answer to a create that already happened
        (an earlier attempt or run), so the item is there: items never change.
        """
        response = self._call(
            "POST", contract.customer_items_path(customer_id), ITEM_ROUTE, body
        )
        if contract.uniqueness_clash(response):
            return False
        if response.status_code == 404:
            raise ProfileRefused("customer_gone", CUSTOMER_GONE, 404, permanent=False)
        if not response.ok:
            raise ProfileRefused.from_response(response)
        return True


def conflict_refusal(conflict: Conflict) -> ProfileRefused:
    """Why a record whose email, phone or id belongs to another profile is refused."""
    holder = f" (profile {conflict.holder})" if conflict.holder else ""
    if conflict.attr == "emails":
        reason, what = "email_taken", "an email of this record belongs to another"
    elif conflict.attr == "phones":
        reason = "phone_taken"
        what = (
            "a MOBILE number of this record (MOBILE numbers are unique in "
            "Gladly) belongs to another"
        )
    elif conflict.attr == "id":
        reason, what = "id_taken", "the id of this record belongs to another"
    else:
        return ProfileRefused("conflict", conflict.detail, conflict.status)
    message = f"{what} Gladly customer profile{holder}: {conflict.detail}"
    return ProfileRefused(reason, message, conflict.status, (conflict.attr,))
