"""target-agillic-probe: check the Agillic shapes target-agillic assumes.

``target-agillic-probe --config config.json [--output FILE] [--write]``
puts each shape of ``contract`` that no public source confirms to a real
instance and prints one row per shape (see ``singer_delivery.probe``).

Read-only (at most 7 API calls): the token request (``auth_method`` oauth2),
Person Data discovery (also the credential check), target-group discovery,
the status of an unknown task at the assumed path (and, when that is no
endpoint, at ``/messages/v2/task/{id}``), a filtered list for an ID nobody
has, and an add to a static group with an empty ID list. That last one is
a POST, but *inert*: Agillic must refuse an empty list (1..100 IDs), so it
changes nothing; it is the only write-method call without ``--write`` and
is listed under ``write_calls`` in the output file.

With ``--write`` (at most 11 more): one synthetic recipient
(``probe-<random>@example.invalid``, or ``probe-<random>`` when the
recipient ID field is not ``EMAIL``) is upserted in a batch of one, its
task polled (at most ``MAX_POLLS`` times), read back by filter, added to
and removed from a static group, and deleted again. Use a staging
instance: a flow listening on new recipients or group members runs for it.
"""

from __future__ import annotations

import time
import typing as t
import uuid

from singer_delivery import probe as shared
from singer_delivery.http import ApiError
from singer_delivery.probe import (
    CONFIRMED,
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
from target_agillic import contract, settings
from target_agillic.auth import BASIC
from target_agillic.target import QUOTA_STREAK, TargetAgillic

NAME = "target-agillic"
#: Where a third-party client polls tasks (tried when the assumed path is none).
MESSAGES_TASK_PATH = "/messages/v2/task/{task_id}"
#: Status words the contract documents (any other word reads as still running).
DOCUMENTED_WORDS = ("queued", "running", *sorted(contract.TERMINAL_STATUSES))
#: Seconds before each task poll: a batch of one finishes fast, a busy queue not.
POLL_DELAYS = (0.2, 0.4, 0.8, 1.6, 3.2, 5.0)
MAX_POLLS = len(POLL_DELAYS)
ADD, REMOVE = contract.GROUP_PATHS["add"], contract.GROUP_PATHS["remove"]


def shown(template: str) -> str:
    """A task path as rows and routes show it: ``.../task/{taskId}``."""
    return template.format(task_id="{taskId}")


AUTH = Shape(
    "authentication",
    f"POST {contract.TOKEN_PATH} answers 200 with access_token, token_type "
    "bearer and expires_in",
)
PERSONDATA = Shape(
    "Person Data discovery",
    f"GET {contract.PERSONDATA_PATH} answers 200 with a JSON array of "
    "{name, type, identifier}, the recipient ID field among them",
)
GROUPS = Shape(
    "target group discovery",
    f"GET {contract.TARGET_GROUPS_PATH} answers 200 with a JSON array of "
    "{name, static (boolean), ...}",
)
TASK_PATH = Shape(
    "task status path",
    f"GET {shown(contract.TASK_PATH)} for an unknown task answers 404 with the error "
    "envelope (the endpoint exists)",
)
LIST = Shape(
    "filtered list",
    f'GET {contract.LIST_PATH}?filter=FIELD=="id"&pageSize=1 answers 200 with a '
    "JSON array, empty for an ID nobody has",
)
GROUP_API = Shape(
    "static group endpoints",
    f"POST {ADD} with an empty recipientIds answers 400 (the endpoint exists "
    f"and checks 1..{contract.MAX_GROUP_IDS} IDs)",
)
ENVELOPE = Shape(
    "error envelope",
    "every 4xx answer is {status, code, message}, status equal to the HTTP status",
)
QUOTA = Shape(
    "daily quota signal",
    f"a spent daily quota answers 429 with code {contract.QUOTA_CODE}",
)
UPSERT = Shape(
    "batch upsert",
    f"POST {contract.UPSERT_PATH} with one entry answers 202 with a taskId",
    needs_write=True,
)
STATUS_WORDS = Shape(
    "task status words",
    f"task status is one of {', '.join(DOCUMENTED_WORDS)}",
    needs_write=True,
)
TASK_RESULT = Shape(
    "task per-entry results",
    "a completed task has details.result with an errors list (per-entry results)",
    needs_write=True,
)
READ_BACK = Shape(
    "read back by filter",
    "the filtered list finds the upserted recipient by its ID",
    needs_write=True,
)
GROUP_ADD = Shape(
    "add to static group",
    f"POST {ADD} with the recipient answers 200 {{processed, errors}} without an "
    "error for it",
    needs_write=True,
)
GROUP_REMOVE = Shape(
    "remove from static group",
    f"POST {REMOVE} with the recipient answers 200 {{processed, errors}} without "
    "an error for it",
    needs_write=True,
)
DELETE = Shape(
    "delete recipient", "DELETE /recipients/{id} answers 200", needs_write=True
)
SHAPES = (
    AUTH,
    PERSONDATA,
    GROUPS,
    TASK_PATH,
    LIST,
    GROUP_API,
    ENVELOPE,
    QUOTA,
    UPSERT,
    STATUS_WORDS,
    TASK_RESULT,
    READ_BACK,
    GROUP_ADD,
    GROUP_REMOVE,
    DELETE,
)

Config = t.Mapping[str, t.Any]


def main(argv: t.Sequence[str] | None = None) -> int:
    """The ``target-agillic-probe`` command."""
    return run(NAME, TargetAgillic, probe, SHAPES, argv)


def probe(target: TargetAgillic, prober: Prober) -> None:
    """Every check, read-only first; the envelope and quota rows come last
    because they look at every answer, also when the probe stops early."""
    config = target.config
    try:
        fields = first_contact(prober, config)
        check_auth(prober, config, fields)
        check_persondata(prober, config, fields)
        group = check_groups(prober, config)
        task_path = check_task_path(prober)
        check_list(prober, config)
        group_api = check_group_api(prober, group)
        if prober.write:
            probe_writes(prober, config, task_path, group if group_api else None)
    finally:
        check_envelope(prober)
        check_quota(prober)


# --- read-only ---------------------------------------------------------------


def first_contact(prober: Prober, config: Config) -> Answer:
    """Person Data discovery: the first authenticated call, as in preflight.

    Anything but a 2xx means the probe cannot go on (wrong endpoint, or
    credentials refused): it stops with one line.
    """
    try:
        answer = prober.call(
            "GET", contract.PERSONDATA_PATH, f"GET {contract.PERSONDATA_PATH}"
        )
    except ApiError as exc:
        if exc.status != 401 or config["auth_method"] != BASIC:
            raise
        msg = (
            "Agillic refused HTTP Basic with the developer key and secret (401); "
            "check them, or set auth_method to oauth2"
        )
        raise ProbeStopped(msg) from exc
    if not answer.response.ok:
        msg = (
            f"{answer.label} with {body_shape(answer)}; check that api_endpoint "
            "is the Agillic API of your instance"
        )
        raise ProbeStopped(msg)
    return answer


def check_auth(prober: Prober, config: Config, fields: Answer) -> None:
    """The token answer's shape, or that Basic alone signed the call in."""
    if config["auth_method"] == BASIC:
        prober.record(
            AUTH,
            CONFIRMED,
            f"{fields.label} with HTTP Basic, no token requested",
            fields,
            expected="API calls answer with HTTP Basic (developer key and secret)",
        )
        return
    tokens = prober.counter.answered(contract.TOKEN_PATH)
    if not tokens:
        prober.skip(AUTH, "no token request was made")
        return
    token = Answer("POST", f"POST {contract.TOKEN_PATH}", tokens[0])
    problems, seen = token_shape(token)
    if problems:
        prober.differ(AUTH, "; ".join([*problems, seen]), token)
    else:
        prober.confirm(AUTH, seen, token)


def token_shape(token: Answer) -> tuple[list[str], str]:
    """What is wrong with a token answer, and the answer in words (no token)."""
    body = token.json()
    if token.status != 200 or not isinstance(body, dict):
        return ["not 200 JSON"], f"{token.status} with {body_shape(token)}"
    problems = []
    if not isinstance(body.get("access_token"), str) or not body["access_token"]:
        problems.append("no access_token string")
    kind = safe_word(body.get("token_type") or "none")
    if kind.lower() != "bearer":
        problems.append(f"token_type is {kind}, not bearer")
    lifetime = body.get("expires_in")
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool):
        problems.append("no numeric expires_in (the target then assumes 7200 s)")
    seen = f"200 with access_token, token_type {kind}, expires_in {safe_word(lifetime)}"
    return problems, seen


def check_persondata(prober: Prober, config: Config, fields: Answer) -> None:
    """A list of named fields holding the recipient ID field."""
    body = fields.json()
    id_field = config["recipient_id_field"]
    if not isinstance(body, list):
        prober.differ(PERSONDATA, f"200 with {body_shape(fields)}", fields)
        return
    named = [f for f in body if isinstance(f, dict) and isinstance(f.get("name"), str)]
    entry = next((f for f in named if f["name"] == id_field), None)
    seen = f"a JSON array of {len(body)} fields, {len(named)} with a name"
    if len(named) < len(body):
        prober.differ(PERSONDATA, f"{seen}: the target reads only named ones", fields)
    elif entry is None:
        prober.differ(
            PERSONDATA,
            f"{seen}; recipient_id_field {id_field} is not among them",
            fields,
        )
    else:
        marked = "marked" if entry.get("identifier") is True else "not marked"
        seen = f"{seen}; {id_field} among them, {marked} identifier"
        prober.confirm(PERSONDATA, seen, fields)


def check_groups(prober: Prober, config: Config) -> str | None:
    """Discovery of target groups; returns the static group to try calls on.

    A configured ``target_group_name`` that is static comes first (it is
    what the target changes), else the first static group listed.
    """
    answer = prober.call(
        "GET", contract.TARGET_GROUPS_PATH, f"GET {contract.TARGET_GROUPS_PATH}"
    )
    body = answer.json()
    if answer.status != 200 or not isinstance(body, list):
        prober.differ(GROUPS, f"{answer.status} with {body_shape(answer)}", answer)
        return None
    well_formed = [
        g
        for g in body
        if isinstance(g, dict)
        and isinstance(g.get("name"), str)
        and isinstance(g.get("static"), bool)
    ]
    static = [g["name"] for g in well_formed if g["static"]]
    seen = f"a JSON array of {len(body)} group(s), {len(static)} static"
    if len(well_formed) < len(body):
        prober.differ(GROUPS, f"{seen}; some lack a name or a boolean static", answer)
    else:
        prober.confirm(GROUPS, seen, answer)
    configured = sorted(settings.configured(config, "target_group_name"))
    return next((name for name in configured if name in static), None) or next(
        iter(static), None
    )


def check_task_path(prober: Prober) -> str | None:
    """Where task status lives, from the answers for a task that does not exist.

    An endpoint answers an unknown task with the API's error envelope; no
    endpoint answers ``no endpoint ...`` (the emulator) or a body without
    the envelope (a real server's HTML or framework error). Returns the
    path template that exists, or None.
    """
    task_id = str(uuid.uuid4())
    assumed = poll(prober, contract.TASK_PATH, task_id)
    if is_endpoint(assumed):
        prober.confirm(TASK_PATH, f"{describe(assumed)} for an unknown task", assumed)
        return contract.TASK_PATH
    other = poll(prober, MESSAGES_TASK_PATH, task_id)
    for answer in (assumed, other):
        if is_endpoint(answer) is False:
            prober.unknown_routes.append(answer)
    if is_endpoint(other):
        seen = (
            f"task status is served at {shown(MESSAGES_TASK_PATH)} "
            f"({describe(other)}); {shown(contract.TASK_PATH)} answered "
            f"{describe(assumed)}"
        )
        prober.differ(TASK_PATH, seen, assumed, other)
        return MESSAGES_TASK_PATH
    seen = (
        f"neither path answered like a task endpoint: {shown(contract.TASK_PATH)} "
        f"{describe(assumed)}, {shown(MESSAGES_TASK_PATH)} {describe(other)}"
    )
    prober.differ(TASK_PATH, seen, assumed, other)
    return None


def poll(prober: Prober, template: str, task_id: str) -> Answer:
    """One task status request."""
    path = template.format(task_id=task_id)
    return prober.call("GET", path, f"GET {shown(template)}")


def is_endpoint(answer: Answer) -> bool | None:
    """True: an endpoint refused the request; False: no endpoint; None: unclear.

    Only a 4xx tells: an endpoint speaks the API's envelope (it has a
    ``code``), an unknown route does not, or says ``no endpoint``.
    """
    if not 400 <= answer.status < 500:
        return None
    body = answer.json()
    if not isinstance(body, dict) or "code" not in body:
        return False
    return not str(body.get("message") or "").lower().startswith("no endpoint")


def describe(answer: Answer) -> str:
    """An answer in words: status and error code, or the body's shape."""
    if is_endpoint(answer) is False:
        return f"{answer.status} from no endpoint ({body_shape(answer)})"
    body = answer.json()
    if isinstance(body, dict) and "code" in body:
        return f"{answer.status} {safe_word(body['code'])}"
    return f"{answer.status} with {body_shape(answer)}"


def check_list(prober: Prober, config: Config) -> None:
    """The filtered list the target reads recipients back with."""
    nobody = probe_id(email=True)
    answer = list_recipient(prober, config["recipient_id_field"], nobody)
    body = answer.json()
    if answer.status == 200 and isinstance(body, list):
        if body:
            seen = f"200 with {len(body)} entries for an ID nobody has: the filter "
            prober.differ(LIST, seen + "looks ignored", answer)
        else:
            prober.confirm(LIST, "200 with an empty JSON array", answer)
    elif answer.status == 200:
        prober.differ(LIST, f"200 with {body_shape(answer)}, not an array", answer)
    else:
        seen = (
            f"{describe(answer)}: the target falls back to one GET /recipients/{{id}} "
            "per recipient"
        )
        prober.differ(LIST, seen, answer)


def list_recipient(prober: Prober, id_field: str, recipient: str) -> Answer:
    """``GET /recipients?filter=FIELD=="id"``, as the target builds it."""
    params = {
        "filter": contract.list_filter(id_field, [recipient]),
        "pageSize": "1",
        "pageStart": "0",
    }
    route = f"GET {contract.LIST_PATH}?filter="
    return prober.call("GET", contract.LIST_PATH, route, params=params)


def check_group_api(prober: Prober, group: str | None) -> bool:
    """An add with no IDs: refused (400) by an endpoint, changing nothing.

    Returns whether the endpoint exists, so ``--write`` only uses it then.
    """
    if group is None:
        prober.skip(GROUP_API, "the instance lists no static target group to try")
        return False
    answer = change_group(prober, ADD, group, [])
    exists = is_endpoint(answer)
    if answer.status == 400 and exists:
        seen = f"{describe(answer)}: the endpoint exists and refused the empty list"
        prober.confirm(GROUP_API, seen, answer)
    elif exists is False:
        prober.unknown_routes.append(answer)
        prober.differ(GROUP_API, f"{describe(answer)}: no such endpoint", answer)
    elif answer.response.ok:
        seen = f"{answer.status}: the endpoint exists but accepted an empty list"
        prober.differ(GROUP_API, seen, answer)
    else:
        prober.differ(GROUP_API, f"{describe(answer)} for a static group", answer)
    return exists is not False


def change_group(prober: Prober, path: str, group: str, ids: list[str]) -> Answer:
    """An add or remove call, with the body the target sends."""
    body = {"targetGroupName": group, "recipientIds": ids}
    return prober.call("POST", path, f"POST {path}", body=body)


def check_envelope(prober: Prober) -> None:
    """Every 4xx answer from an endpoint against ``{status, code, message}``."""
    errors = [
        a
        for a in prober.answers
        if 400 <= a.status < 500 and a not in prober.unknown_routes
    ]
    shared.check_envelope(prober, ENVELOPE, errors, fits_envelope, describe)


def fits_envelope(answer: Answer) -> bool:
    """``{status: <the HTTP status>, code: str, message: str}``."""
    body = answer.json()
    return (
        isinstance(body, dict)
        and body.get("status") == answer.status
        and isinstance(body.get("code"), str)
        and isinstance(body.get("message"), str)
    )


def check_quota(prober: Prober) -> None:
    """Only a 429 this probe happened to get can say anything about the quota."""
    codes = {contract.error_of(r)[0] for r in prober.counter.statuses(429)}
    if contract.QUOTA_CODE in codes:
        seen = f"429 with code {contract.QUOTA_CODE}: the daily quota is spent now"
        prober.confirm(QUOTA, seen)
    elif codes:
        seen = (
            f"429 with code {', '.join(sorted(map(safe_word, codes)))} to a probe "
            "sending one request at a time, so probably a spent quota without "
            f"the assumed code; the target then stops after {QUOTA_STREAK} 429s "
            "in a row over 2 minutes"
        )
        prober.skip(QUOTA, seen)
    else:
        seen = (
            "cannot be seen without spending the daily quota (5 x active "
            f"recipients; 5,000 calls a day on staging). The target stops on a 429 "
            f"with this code, or after {QUOTA_STREAK} 429s in a row over 2 minutes"
        )
        prober.skip(QUOTA, seen)


# --- with --write ------------------------------------------------------------


def probe_writes(
    prober: Prober, config: Config, task_path: str | None, group: str | None
) -> None:
    """Upsert one synthetic recipient, follow its task, group it, delete it.

    The delete runs whatever happened before, so the probe leaves nothing
    behind unless the instance refuses it (then the ID is reported).
    """
    id_field = config["recipient_id_field"]
    recipient = probe_id(email=id_field == "EMAIL")
    finished = False
    try:
        finished = upsert_and_wait(prober, id_field, recipient, task_path)
        if finished:
            check_read_back(prober, id_field, recipient)
            check_group_changes(prober, group, recipient)
        else:
            why = "the batch task did not complete, so the recipient may not exist"
            for shape in (READ_BACK, GROUP_ADD, GROUP_REMOVE):
                prober.skip(shape, why)
    finally:
        delete_recipient(prober, recipient, finished)


def upsert_and_wait(
    prober: Prober, id_field: str, recipient: str, task_path: str | None
) -> bool:
    """The batch upsert of one entry and its task; True when it completed."""
    body = {"recipients": [{"personData": {id_field: recipient}}]}
    route = f"POST {contract.UPSERT_PATH}"
    answer = prober.call("POST", contract.UPSERT_PATH, route, body=body)
    task_id = contract.task_id_of(answer.response)
    if answer.status != 202 or task_id is None:
        prober.differ(UPSERT, f"{describe(answer)} with {body_shape(answer)}", answer)
        return False
    prober.confirm(UPSERT, "202 with a taskId", answer)
    polls = follow_task(prober, task_path or contract.TASK_PATH, task_id)
    report_words(prober, polls)
    return report_result(prober, polls)


def follow_task(prober: Prober, template: str, task_id: str) -> list[Answer]:
    """Poll until the task finishes, a poll fails, or ``MAX_POLLS`` are made."""
    polls: list[Answer] = []
    for delay in POLL_DELAYS:
        time.sleep(delay)
        answer = poll(prober, template, task_id)
        polls.append(answer)
        if answer.status != 200 or contract.parse_task(answer.response).finished:
            break
    return polls


def raw_word(answer: Answer) -> str:
    """The status word as the instance wrote it (case kept)."""
    body = answer.json()
    word = body.get("status") if isinstance(body, dict) else None
    return safe_word(word) if word is not None else "<none>"


def report_words(prober: Prober, polls: list[Answer]) -> None:
    """The status words seen, in order, against the documented ones."""
    last = polls[-1]
    if last.status != 200:
        prober.differ(STATUS_WORDS, f"a poll answered {describe(last)}", *polls)
        return
    words = list(dict.fromkeys(raw_word(a) for a in polls))
    seen = " then ".join(words)
    unknown = [w for w in words if w not in DOCUMENTED_WORDS]
    if unknown:
        seen += (
            f": {', '.join(unknown)} is not documented; the target reads any "
            "unknown word as still running"
        )
        prober.differ(STATUS_WORDS, seen, *polls)
    else:
        prober.confirm(STATUS_WORDS, seen, *polls)


def report_result(prober: Prober, polls: list[Answer]) -> bool:
    """Whether the completed task lists per-entry results; True when completed."""
    last = polls[-1]
    status = contract.parse_task(last.response)
    if last.status != 200 or not status.finished:
        waited = sum(POLL_DELAYS[: len(polls)])
        why = f"the task was still {raw_word(last)} after {len(polls)} polls"
        prober.skip(TASK_RESULT, f"{why} ({waited:.0f} s)", last)
        return False
    if status.status != "completed":
        prober.skip(TASK_RESULT, f"the task ended {raw_word(last)}", last)
        return False
    if status.verified:
        seen = (
            f"{status.shape}; errors list of {len(status.errors)}, created "
            f"{status.created}, updated {status.updated}"
        )
        prober.confirm(TASK_RESULT, seen, last)
    else:
        seen = (
            f"{status.shape}: no per-entry results, so single entries cannot be "
            "confirmed (the target counts them unverified and reads them back "
            "as verify_deliveries says)"
        )
        prober.differ(TASK_RESULT, seen, last)
    return True


def check_read_back(prober: Prober, id_field: str, recipient: str) -> None:
    """The filtered list finds the new recipient (what verify_deliveries reads)."""
    answer = list_recipient(prober, id_field, recipient)
    found = [p for p in contract.listed_recipients(answer.response) if p.get(id_field)]
    if answer.status == 200 and [str(p[id_field]) for p in found] == [recipient]:
        prober.confirm(READ_BACK, "200 with exactly the probe recipient", answer)
    else:
        seen = f"{describe(answer)} with {len(found)} matching entries, not 1"
        prober.differ(READ_BACK, seen, answer)


def check_group_changes(prober: Prober, group: str | None, recipient: str) -> None:
    """Add the recipient to a static group, then remove it again."""
    if group is None:
        why = "no static group with working endpoints (see the read-only rows)"
        prober.skip(GROUP_ADD, why)
        prober.skip(GROUP_REMOVE, why)
        return
    for shape, path in ((GROUP_ADD, ADD), (GROUP_REMOVE, REMOVE)):
        answer = change_group(prober, path, group, [recipient])
        refused = contract.group_errors(answer.response).get(recipient)
        if answer.status == 200 and refused is None:
            prober.confirm(shape, f"200 with {body_shape(answer)}", answer)
        elif refused is not None:
            seen = f"200, but an error for the recipient: {safe_word(refused[0])}"
            prober.differ(shape, seen, answer)
        else:
            prober.differ(shape, describe(answer), answer)


def delete_recipient(prober: Prober, recipient: str, finished: bool) -> None:
    """Remove the probe recipient; report its ID when it may be left behind."""
    path = contract.recipient_path(recipient)
    try:
        answer = prober.call("DELETE", path, "DELETE /recipients/{id}")
    except (ApiError, CallCapReached) as exc:
        prober.left_behind.append(recipient)
        prober.skip(DELETE, f"the delete could not be sent ({exc})")
        return
    if answer.status == 200:
        prober.confirm(DELETE, "200", answer)
    elif answer.status == 404:
        seen = "404: the probe recipient did not exist (see the rows above)"
        prober.skip(DELETE, seen, answer)
        if not finished:
            prober.left_behind.append(f"{recipient} (if its batch task still applies)")
    else:
        if not answer.response.ok:
            prober.left_behind.append(recipient)
        prober.differ(DELETE, describe(answer), answer)


if __name__ == "__main__":
    raise SystemExit(main())
