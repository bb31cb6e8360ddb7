"""Finding a customer's profile, and creating it when nobody has one.

Upsert's rules, shared by every sink that names customers by a contact
(an email, or a phone number for activity): a find that returns several
profiles is refused rather than guessed; a create uses an id derived from
the contact, so a repeated create (a retry, a rerun after a crash) answers
409 instead of making a second profile; and a create that collides with a
profile created meanwhile (another writer, or an earlier attempt whose
answer was lost) takes that profile instead.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from target_gladly import contract
from target_gladly.client import (
    Conflict,
    GladlyClient,
    ProfileRefused,
    conflict_refusal,
)

Profile = dict[str, t.Any]

MOVED_MEANWHILE = (
    "the profile was merged or deleted in Gladly while this record was being "
    "written; it is sent again on the next run"
)


def moved_meanwhile(http_status: int | None = None) -> ProfileRefused:
    """The profile moved while it was written: worth a retry, not quarantine."""
    return ProfileRefused(
        "moved_meanwhile", MOVED_MEANWHILE, http_status, permanent=False
    )


@dataclass(frozen=True)
class Contact:
    """What names a customer: a normalized email or an E.164 phone number."""

    kind: t.Literal["email", "phone"]
    value: str

    @property
    def attr(self) -> str:
        """The profile field that holds it (a clash names this field)."""
        return "emails" if self.kind == "email" else "phones"

    @property
    def words(self) -> str:
        """How messages name it (never the value: it is personal data)."""
        return "email" if self.kind == "email" else "phone number"


class Customers:
    """Finds and creates profiles through one stream's client."""

    def __init__(self, client: GladlyClient) -> None:
        self.client = client

    def find(self, contact: Contact) -> Profile | None:
        """The one profile holding the contact, or None; several is refused."""
        if contact.kind == "email":
            found = self.client.find_by_email(contact.value)
        else:
            found = self.client.find_by_phone(contact.value)
        if len(found) > 1:
            ids = ", ".join(str(p["id"]) for p in found[:5])
            msg = (
                f"{len(found)} Gladly profiles hold this {contact.words} ({ids}); "
                "merge them in Gladly so the record has one profile"
            )
            raise ProfileRefused(f"ambiguous_{contact.kind}", msg)
        return found[0] if found else None

    def find_or_create(
        self, contact: Contact, body: Profile, *, derived: bool
    ) -> Profile | None:
        """The profile holding the contact, or None once ``body`` was created.

        ``derived`` says whether ``body["id"]`` was derived from the contact
        (then a clash on it is an earlier create of ours) or mapped from the
        record (then it may name anyone's profile).
        """
        profile = self.find(contact)
        if profile is not None:
            return profile
        conflict = self.client.create(body)
        if conflict is None:
            return None
        return self.collided(contact, conflict, body["id"], derived=derived)

    def collided(
        self, contact: Contact, conflict: Conflict, sent_id: str, *, derived: bool
    ) -> Profile:
        """The profile a create collided with, when it is the contact's own.

        Its contact was taken in between (another writer was quicker), or
        our derived id exists (an earlier attempt created it but its answer
        was lost): both are this record's profile. A mapped id, or another
        field held by someone else, is not.
        """
        if conflict.attr == contact.attr:
            profile = (
                self.client.read(conflict.holder)
                if conflict.holder
                else self.find(contact)
            )
        elif conflict.attr == "id" and derived:
            profile = self.client.read(sent_id)
        else:
            raise conflict_refusal(conflict)
        if profile is None:
            raise moved_meanwhile(409)
        return profile

    @staticmethod
    def new_profile(contact: Contact, phone_type: str | None) -> Profile:
        """The body that creates a profile holding just the contact."""
        entry: dict[str, str] = {"original": contact.value}
        if contact.kind == "phone" and phone_type:
            entry["type"] = phone_type
        return {"id": contract.derived_id(contact.value), contact.attr: [entry]}
