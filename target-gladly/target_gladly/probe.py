"""target-gladly-probe: check the Gladly shapes target-gladly assumes.

``target-gladly-probe --config config.json [--output FILE] [--write]``
puts each shape of ``contract`` that Gladly's OpenAPI file leaves open to a
real organization and prints one row per shape (see
``singer_delivery.probe``).

Read-only (5 API calls): the organization (also the credential check), a
find by an email nobody has, a read and a PATCH of an id nobody has, and a
find by ``externalCustomerId``. The rate-limit headers of these answers
show whether GET and PATCH share one budget.

The PATCH is the one write-method call without ``--write``, and it is
*inert*: its id was just read as absent (404) and its body is ``{}``, so
Gladly answers 404 and changes nothing. It is needed because only a
non-GET answer can tell a shared budget from separate ones. The output
file lists it under ``write_calls``; a test asserts the organization's
profiles are untouched.

With ``--write`` (6 or 7 more): one synthetic profile (id
``probe-<random>``, email ``probe-<random>@example.invalid``) is created,
found by its email in upper case, patched, read back, created a second time
to see the uniqueness clash, and deleted. Deleting needs the Compliance
Admin role: without it the profile stays, and the report gives its id.
"""

from __future__ import annotations

import contextlib
import typing as t

from singer_delivery import probe as shared
from singer_delivery.http import ApiError
from singer_delivery.probe import (
    Answer,
    CallCapReached,
    Prober,
    ProbeStopped,
    Shape,
    body_shape,
    probe_id,
    run,
    safe_word,
)
from target_gladly import contract
from target_gladly.target import TargetGladly

NAME = "target-gladly"
PROFILES = contract.PROFILES_PATH
REMAINING_HEADER = "Ratelimit-Remaining-Second"
#: How far apart the two budget predictions must be for the counts to tell.
DISTINCT_COUNTS = 3
#: Custom attributes of the probe profile: one set on create, one by PATCH.
CREATED_KEY, PATCHED_KEY = "probeCreated", "probePatched"
PATCHED_NAME = "target-gladly-probe (patched)"

ORGANIZATION = Shape(
    "organization",
    f"GET {contract.ORGANIZATION_PATH} answers 200 with a JSON object",
)
FIND = Shape(
    "find by email",
    f"GET {PROFILES}?email=<address> answers 200 with a JSON array, empty for "
    "an address nobody has",
)
READ_MISSING = Shape(
    "read unknown id", f"GET {PROFILES}/{{id}} for an id nobody has answers 404"
)
PATCH_MISSING = Shape(
    "PATCH unknown id",
    f"PATCH {PROFILES}/{{id}} for an id nobody has answers 404 (and writes nothing)",
)
EXTERNAL_ID = Shape(
    "externalCustomerId search",
    f"GET {PROFILES}?externalCustomerId=<value> answers 200 with a JSON array",
)
HEADERS = Shape(
    "rate-limit headers",
    f"every answer carries {contract.LIMIT_HEADER} and {REMAINING_HEADER}",
)
BUDGET = Shape(
    "rate budget per method",
    "GET and PATCH each have their own budget of Ratelimit-Limit-Second "
    "(Gladly lists 10 requests/s for each method)",
)
ENVELOPE = Shape(
    "error envelope",
    "every 4xx answer is {errors: [{code, detail, attr?, meta?}]} (a list or "
    "one object)",
)
CREATE = Shape(
    "create with a client id",
    f"POST {PROFILES} with an id answers 201 with Location {PROFILES}/{{id}} "
    "and no body",
    needs_write=True,
)
FIND_CASE = Shape(
    "find ignores email case",
    "a find with the address in upper case answers the new profile, with id, "
    "createdAt and updatedAt",
    needs_write=True,
)
UPDATE = Shape(
    "update",
    "PATCH with name and customAttributes answers 204 with no body",
    needs_write=True,
)
READ = Shape(
    "read one",
    f"GET {PROFILES}/{{id}} answers 200 with the profile as patched",
    needs_write=True,
)
MERGE = Shape(
    "customAttributes merge",
    "a PATCH sets the customAttributes keys it sends and keeps the others",
    needs_write=True,
)
CLASH = Shape(
    "uniqueness clash",
    "a second create with the same email answers 409, or 400 with code taken, "
    "attr emails and meta.id the holder",
    needs_write=True,
)
DELETE = Shape(
    "delete profile",
    f"DELETE {PROFILES}/{{id}} answers 204 (needs the Compliance Admin role)",
    needs_write=True,
)
SHAPES = (
    ORGANIZATION,
    FIND,
    READ_MISSING,
    PATCH_MISSING,
    EXTERNAL_ID,
    HEADERS,
    BUDGET,
    ENVELOPE,
    CREATE,
    FIND_CASE,
    UPDATE,
    READ,
    MERGE,
    CLASH,
    DELETE,
)


def main(argv: t.Sequence[str] | None = None) -> int:
    """The ``target-gladly-probe`` command."""
    return run(NAME, TargetGladly, probe, SHAPES, argv)


def probe(target: TargetGladly, prober: Prober) -> None:
    """Four GETs, then the inert PATCH right after them (the budget evidence
    needs them close together), then the writes; the header and envelope
    rows come last because they look at every answer."""
    try:
        organization = first_contact(prober)
        find = check_find(prober)
        missing_id = probe_id(email=False)
        read = check_read_missing(prober, missing_id)
        external = check_external_id(prober)
        gets = [organization, find, read, external]
        if read.status == 404:
            patch = check_patch_missing(prober, missing_id)
            check_budget(prober, target.config["rate_limit_scope"], gets, patch)
        else:
            why = "the random id did not read as absent, so no PATCH was sent"
            prober.skip(PATCH_MISSING, why)
            prober.skip(BUDGET, why)
        if prober.write:
            probe_writes(prober)
    finally:
        check_headers(prober)
        check_envelope(prober)


def describe(answer: Answer) -> str:
    """Status, plus the first error's code and attr, or the body's shape."""
    problem = first_error(answer)
    if problem is None:
        return f"{answer.status} with {body_shape(answer)}"
    code = safe_word(problem.get("code", "no code"))
    attr = f", attr {safe_word(problem['attr'])}" if problem.get("attr") else ""
    return f"{answer.status} {code}{attr}"


def first_error(answer: Answer) -> dict[str, t.Any] | None:
    """The first entry of the ``errors`` envelope, when there is one."""
    body = answer.json()
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, dict):
        return errors
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return errors[0]
    return None


def is_array(answer: Answer) -> bool:
    """A 200 with a JSON array, as a find answers."""
    return answer.status == 200 and isinstance(answer.json(), list)


# --- read-only ---------------------------------------------------------------


def first_contact(prober: Prober) -> Answer:
    """The organization: 401/403 stop the probe in the transport already."""
    path = contract.ORGANIZATION_PATH
    answer = prober.call("GET", path, f"GET {path}")
    if answer.status != 200:
        msg = (
            f"{answer.label} with {body_shape(answer)}; check that domain (or "
            "base_url) names your Gladly organization"
        )
        raise ProbeStopped(msg)
    prober.confirm(ORGANIZATION, f"200 with {body_shape(answer)}", answer)
    return answer


def find(prober: Prober, key: str, value: str) -> Answer:
    """``GET /api/v1/customer-profiles?<key>=<value>``."""
    route = f"GET {PROFILES}?{key}="
    return prober.call("GET", PROFILES, route, params={key: value})


def check_find(prober: Prober) -> Answer:
    """A find by an address nobody has: an empty array."""
    answer = find(prober, "email", probe_id(email=True))
    if is_array(answer) and not answer.json():
        prober.confirm(FIND, "200 with an empty JSON array", answer)
    elif is_array(answer):
        seen = f"200 with {len(answer.json())} profiles for an address nobody has"
        prober.differ(FIND, seen, answer)
    else:
        prober.differ(FIND, describe(answer), answer)
    return answer


def check_read_missing(prober: Prober, profile_id: str) -> Answer:
    """A read of a random id: 404 (the target reads that as absent)."""
    path = contract.profile_path(profile_id)
    answer = prober.call("GET", path, f"GET {PROFILES}/{{id}}")
    if answer.status == 404:
        prober.confirm(READ_MISSING, describe(answer), answer)
    else:
        prober.differ(READ_MISSING, describe(answer), answer)
    return answer


def check_external_id(prober: Prober) -> Answer:
    """Searchable (200 array), or locked by a lookup adaptor (400)."""
    answer = find(prober, "externalCustomerId", probe_id(email=False))
    if is_array(answer):
        prober.confirm(EXTERNAL_ID, f"200 with {body_shape(answer)}", answer)
    elif answer.status == 400:
        seen = (
            f"externalCustomerId cannot be searched on this organization "
            f"({describe(answer)}): its profiles are linked to a lookup adaptor, "
            "so do not map externalCustomerId"
        )
        prober.differ(EXTERNAL_ID, seen, answer)
    else:
        prober.differ(EXTERNAL_ID, describe(answer), answer)
    return answer


def check_patch_missing(prober: Prober, profile_id: str) -> Answer:
    """The inert PATCH: an id just read as absent, an empty body."""
    path = contract.profile_path(profile_id)
    answer = prober.call("PATCH", path, f"PATCH {PROFILES}/{{id}}", body={})
    if answer.status == 404:
        prober.confirm(PATCH_MISSING, describe(answer), answer)
    else:
        prober.differ(PATCH_MISSING, describe(answer), answer)
    return answer


def check_budget(prober: Prober, scope: str, gets: list[Answer], patch: Answer) -> None:
    """Shared or per-method budget, from the remaining counts.

    Right after several GETs, a PATCH on its own budget finds it nearly
    full (limit - 1); on a shared budget it continues the GETs' count
    (the last GET's remaining - 1, or a little more as old requests age
    out of the window). The counts tell only when the two are at least
    ``DISTINCT_COUNTS`` apart.
    """
    counts = [count(a, REMAINING_HEADER) for a in [*gets, patch]]
    limit = count(patch, contract.LIMIT_HEADER)
    answers = [*gets, patch]
    if limit is None or None in counts:
        prober.skip(BUDGET, "answers lacked the rate-limit headers", *answers)
        return
    *before, after = t.cast(list[int], counts)
    seen = (
        f"GET remaining {', '.join(map(str, before))} of {limit}, then PATCH "
        f"remaining {after}"
    )
    last = before[-1]
    if limit - last < DISTINCT_COUNTS:
        why = f"{seen}: the GETs were too far apart to tell (slow answers?)"
        prober.skip(BUDGET, why, *answers)
    elif after <= last:
        seen += ": the PATCH continued the GETs' count, one budget for all. "
        prober.differ(BUDGET, seen + shared_advice(scope), *answers)
    elif after >= limit - 2:
        seen += ": the PATCH found its own budget nearly full"
        prober.confirm(BUDGET, seen + per_method_advice(scope), *answers)
    else:
        seen += (
            f": between the predictions ({last - 1} if shared, {limit - 1} if "
            "per method); another client may be using the budget"
        )
        prober.skip(BUDGET, seen, *answers)


def count(answer: Answer, header: str) -> int | None:
    """A rate-limit header as a number, None when absent or garbled."""
    value = (answer.header(header) or "").strip()
    return int(value) if value.isdigit() else None


def shared_advice(scope: str) -> str:
    """What a shared budget means for the configured ``rate_limit_scope``."""
    if scope == "shared":
        return "rate_limit_scope shared fits."
    if scope == "auto":
        return "rate_limit_scope auto learns this within a few answers; shared fits."
    return "Set rate_limit_scope to shared (or auto), or expect 429 answers."


def per_method_advice(scope: str) -> str:
    """What separate budgets mean for the configured ``rate_limit_scope``."""
    if scope == "shared":
        return ". rate_limit_scope shared is slower than needed; per_method fits."
    return ""


def check_headers(prober: Prober) -> None:
    """Both rate-limit headers on every answer the probe got."""
    answers = prober.answers
    if not answers:
        return
    carrying = [
        a
        for a in answers
        if count(a, contract.LIMIT_HEADER) is not None
        and count(a, REMAINING_HEADER) is not None
    ]
    seen = f"{len(carrying)} of {len(answers)} answers carried both"
    if len(carrying) == len(answers):
        limit = count(answers[0], contract.LIMIT_HEADER)
        prober.confirm(HEADERS, f"{seen}; limit {limit} per second", *answers)
    else:
        lacking = sorted({a.label for a in answers if a not in carrying})
        seen += f"; lacking: {', '.join(lacking)}"
        prober.differ(HEADERS, seen, *answers)


def check_envelope(prober: Prober) -> None:
    """Every 4xx answer against ``{errors: [{code, detail, ...}]}``."""
    errors = [a for a in prober.answers if 400 <= a.status < 500]
    shared.check_envelope(prober, ENVELOPE, errors, fits_envelope, describe)


def fits_envelope(answer: Answer) -> bool:
    """``errors`` as a list of, or one, ``{code: str, detail: str, ...}``."""
    body = answer.json()
    errors = body.get("errors") if isinstance(body, dict) else None
    entries = [errors] if isinstance(errors, dict) else errors
    return (
        isinstance(entries, list)
        and bool(entries)
        and all(
            isinstance(e, dict)
            and isinstance(e.get("code"), str)
            and isinstance(e.get("detail"), str)
            for e in entries
        )
    )


# --- with --write ------------------------------------------------------------


def probe_writes(prober: Prober) -> None:
    """Create one synthetic profile, look at it, clash with it, delete it."""
    profile_id = probe_id(email=False)
    email = f"{profile_id}@example.invalid"
    if not create(prober, profile_id, email):
        why = "the probe profile could not be created"
        for shape in (FIND_CASE, UPDATE, READ, MERGE, CLASH, DELETE):
            prober.skip(shape, why)
        return
    try:
        check_find_case(prober, email, profile_id)
        check_update(prober, profile_id)
        check_clash(prober, email, profile_id)
    finally:
        delete(prober, DELETE, profile_id)


def create(prober: Prober, profile_id: str, email: str) -> bool:
    """Create the probe profile with a client id; True when it exists."""
    body = {
        "id": profile_id,
        "name": "target-gladly-probe",
        "emails": [{"original": email, "primary": True}],
        "customAttributes": {CREATED_KEY: "yes"},
    }
    answer = prober.call("POST", PROFILES, f"POST {PROFILES}", body=body)
    if answer.status != 201:
        prober.differ(CREATE, describe(answer), answer)
        return False
    location = answer.header("Location") or ""
    problems = []
    if not location.rstrip("/").endswith(contract.profile_path(profile_id)):
        problems.append("Location does not end in the profile's path")
    if answer.response.content:
        problems.append(f"a body ({body_shape(answer)})")
    if problems:
        prober.differ(CREATE, f"201, but {' and '.join(problems)}", answer)
    else:
        prober.confirm(CREATE, "201 with Location of the id and no body", answer)
    return True


def check_find_case(prober: Prober, email: str, profile_id: str) -> None:
    """A find with the address upper-cased answers the new profile."""
    answer = find(prober, "email", email.upper())
    profiles = answer.json() if is_array(answer) else []
    found = [p for p in profiles if isinstance(p, dict) and p.get("id") == profile_id]
    if not found:
        seen = f"{describe(answer)} without the probe profile (case, or search lag)"
        prober.differ(FIND_CASE, seen, answer)
        return
    missing = [k for k in ("id", "createdAt", "updatedAt") if k not in found[0]]
    if missing:
        seen = f"found it, but without {', '.join(missing)}"
        prober.differ(FIND_CASE, seen, answer)
    else:
        prober.confirm(
            FIND_CASE, f"200, the probe profile among {len(profiles)}", answer
        )


def check_update(prober: Prober, profile_id: str) -> None:
    """PATCH a name and one more custom attribute, then read both back."""
    path = contract.profile_path(profile_id)
    body = {"name": PATCHED_NAME, "customAttributes": {PATCHED_KEY: "yes"}}
    patch = prober.call("PATCH", path, f"PATCH {PROFILES}/{{id}}", body=body)
    if patch.status == 204 and not patch.response.content:
        prober.confirm(UPDATE, "204 with no body", patch)
    else:
        prober.differ(UPDATE, f"{describe(patch)} with {body_shape(patch)}", patch)
    read = prober.call("GET", path, f"GET {PROFILES}/{{id}}")
    profile = read.json()
    if read.status != 200 or not isinstance(profile, dict):
        prober.differ(READ, describe(read), read)
        prober.skip(MERGE, "the profile could not be read back", read)
        return
    keys = ", ".join(sorted(map(str, profile)))
    if profile.get("name") == PATCHED_NAME:
        prober.confirm(READ, f"200 with keys {keys}; the name as patched", read)
    else:
        prober.differ(READ, f"200 with keys {keys}; the name not as patched", read)
    check_merge(prober, profile, patch, read)


def check_merge(
    prober: Prober, profile: dict[str, t.Any], patch: Answer, read: Answer
) -> None:
    """Both custom attributes there: the PATCH merged instead of replacing."""
    attributes = profile.get("customAttributes")
    if not isinstance(attributes, dict):
        seen = (
            f"the profile has no customAttributes object ({type(attributes).__name__})"
        )
        prober.differ(MERGE, seen, patch, read)
    elif CREATED_KEY in attributes and PATCHED_KEY in attributes:
        prober.confirm(
            MERGE, "the created and the patched key are both there", patch, read
        )
    elif PATCHED_KEY in attributes:
        seen = (
            "the PATCH replaced customAttributes: the key it did not send is gone "
            "(the target sends only the keys that changed)"
        )
        prober.differ(MERGE, seen, patch, read)
    else:
        prober.differ(MERGE, "the patched key is missing", patch, read)


def check_clash(prober: Prober, email: str, holder: str) -> None:
    """A second create with the probe's email: 409, or 400 taken."""
    body = {"emails": [{"original": email}]}
    answer = prober.call("POST", PROFILES, f"POST {PROFILES}", body=body)
    problem = first_error(answer) or {}
    taken = str(problem.get("code", "")).lower() == contract.TAKEN
    if answer.status == 201:
        seen = "201: a second profile with the same email was created"
        prober.differ(CLASH, seen, answer)
        duplicate = (answer.header("Location") or "").rstrip("/").rsplit("/", 1)[-1]
        if duplicate:
            delete(prober, None, duplicate)
        return
    if answer.status not in (409, 400) or not taken:
        prober.differ(CLASH, describe(answer), answer)
        return
    notes = [f"{answer.status} with code taken"]
    if answer.status == 400:
        notes.append("not 409 (the target reads both as a clash)")
    if problem.get("attr") != "emails":
        notes.append(f"attr {safe_word(problem.get('attr'))}, not emails")
    meta = problem.get("meta")
    if not isinstance(meta, dict) or meta.get("id") != holder:
        notes.append("no meta.id of the holder (rejects cannot name it)")
    prober.confirm(CLASH, "; ".join(notes), answer)


def delete(prober: Prober, shape: Shape | None, profile_id: str) -> None:
    """Delete a probe profile; a refusal leaves it behind, reported by id.

    A 403 is an answer here (the Compliance Admin role is missing), not a
    reason to stop, so the transport's credential check is set aside.
    """
    path = contract.profile_path(profile_id)
    try:
        with without_fatal_check(prober):
            answer = prober.call("DELETE", path, f"DELETE {PROFILES}/{{id}}")
    except (ApiError, CallCapReached) as exc:
        prober.left_behind.append(f"customer profile {profile_id}")
        if shape:
            prober.skip(shape, f"the delete could not be sent ({exc})")
        return
    if answer.status != 204:
        prober.left_behind.append(f"customer profile {profile_id}")
    if shape is None:
        return
    if answer.status == 204:
        prober.confirm(shape, "204", answer)
    elif answer.status == 403:
        seen = (
            f"{describe(answer)}: the API user lacks the Compliance Admin role; "
            f"the probe profile {profile_id} is left behind"
        )
        prober.skip(shape, seen, answer)
    else:
        seen = f"{describe(answer)}; the probe profile {profile_id} is left behind"
        prober.differ(shape, seen, answer)


@contextlib.contextmanager
def without_fatal_check(prober: Prober) -> t.Iterator[None]:
    """Let a 401/403 come back as an answer instead of stopping the probe."""
    check, prober.transport.fatal_check = prober.transport.fatal_check, None
    try:
        yield
    finally:
        prober.transport.fatal_check = check


if __name__ == "__main__":
    raise SystemExit(main())
