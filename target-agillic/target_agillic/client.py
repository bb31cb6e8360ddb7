"""Agillic API calls, one method per call this target makes."""

from __future__ import annotations

import logging
import threading
import time
import typing as t
import urllib.parse
from dataclasses import dataclass, field

import requests

from singer_delivery.errors import Abandoned
from singer_delivery.http import CallObserver, FatalApiError, Transport
from singer_delivery.serialization import dumps
from target_agillic import contract

logger = logging.getLogger(__name__)

#: Task polling: first look soon (small batches finish fast), then back off.
POLL_FIRST = 0.05
POLL_FACTOR = 2.0
POLL_CAP = 10.0
#: Calls a batch is expected to need (the POST and two polls): set aside from
#: the daily budget before it starts, so no batch is left half polled.
BATCH_CALLS = 3


class WarnOnce:
    """WARNINGs given once per run, whichever stream's client comes first.

    Held by the run's resources rather than the module, so each run (and
    each in-process test) warns afresh.
    """

    def __init__(self) -> None:
        self._given: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, message: str, *args: object) -> None:
        text = message % args
        with self._lock:
            if text in self._given:
                return
            self._given.add(text)
        logger.warning("%s", text)


@dataclass
class AgillicClient:
    """The calls of one stream, counted into that stream's observer."""

    transport: Transport
    observer: CallObserver | None = None
    task_timeout: float = 600.0
    warn_once: WarnOnce = field(default_factory=WarnOnce)

    def _call(
        self,
        method: str,
        path: str,
        route: str,
        body: bytes | None = None,
        params: dict[str, str] | None = None,
    ) -> requests.Response:
        return self.transport.request(
            method, path, route=route, body=body, params=params, observer=self.observer
        )

    def create_recipient(self, person_data: dict[str, t.Any]) -> requests.Response:
        """``POST /recipients``: 201, or 409 when the ID exists."""
        body = dumps({"personData": person_data})
        return self._call("POST", contract.RECIPIENTS_PATH, "POST /recipients", body)

    def put_recipient(
        self, recipient_id: str, person_data: dict[str, t.Any]
    ) -> requests.Response:
        """``PUT /recipients/{id}``: 200 updated, 201 created (!)."""
        body = dumps({"personData": person_data})
        return self._call(
            "PUT", contract.recipient_path(recipient_id), "PUT /recipients/{id}", body
        )

    def get_recipient(self, recipient_id: str) -> requests.Response:
        """``GET /recipients/{id}``: 200 or 404."""
        return self._call(
            "GET", contract.recipient_path(recipient_id), "GET /recipients/{id}"
        )

    def delete_recipient(self, recipient_id: str) -> requests.Response:
        """``DELETE /recipients/{id}``: 200, or 404 when it is already gone."""
        return self._call(
            "DELETE", contract.recipient_path(recipient_id), "DELETE /recipients/{id}"
        )

    def fire_event(
        self, recipient_id: str, event: str, context_parameters: dict[str, t.Any]
    ) -> requests.Response:
        """Fire ``event`` for one recipient: 200, or 404 (recipient or event)."""
        body = dumps(contract.event_body(context_parameters))
        return self._call(
            "POST",
            contract.event_path(recipient_id, event),
            "POST /recipients/{id}/events/{event}/:achieveWithContext",
            body,
        )

    def list_recipients(
        self, id_field: str, recipient_ids: list[str]
    ) -> list[dict[str, t.Any]] | None:
        """Person Data of the given recipients in one filtered list call.

        None when the instance refuses the filtered list (then the caller
        falls back to one read per recipient).
        """
        params = {
            "filter": contract.list_filter(id_field, recipient_ids),
            "pageSize": str(len(recipient_ids)),
            "pageStart": "0",
        }
        response = self._call(
            "GET", contract.LIST_PATH, "GET /recipients?filter=", params=params
        )
        if response.status_code in (400, 404, 405):
            return None
        self.raise_for_status(response, "listing recipients")
        return contract.listed_recipients(response)

    def persondata_fields(self) -> list[str]:
        """The instance's Person Data field names."""
        response = self._call(
            "GET", contract.PERSONDATA_PATH, "GET /discovery/persondata"
        )
        self.raise_for_status(response, "reading the Person Data fields")
        return contract.persondata_fields(response)

    def target_groups(self) -> list[contract.TargetGroup]:
        """Every target group of the instance."""
        response = self._call(
            "GET", contract.TARGET_GROUPS_PATH, "GET /discovery/targetgroups"
        )
        self.raise_for_status(response, "listing target groups")
        return contract.target_groups(response)

    def one_to_many_table(self, name: str) -> contract.OneToManyTable | None:
        """A table's definition, or None when the instance has no such table."""
        path = contract.OTM_TABLE_PATH.format(table=urllib.parse.quote(name, safe=""))
        response = self._call("GET", path, "GET /discovery/onetomany/{table}")
        if response.status_code == 404:
            return None
        self.raise_for_status(response, f"reading one-to-many table {name}")
        return contract.one_to_many_table(name, response)

    def one_to_many_rows(self, recipient_id: str, table: str) -> requests.Response:
        """One recipient's rows (dry-run existence checks)."""
        return self._call(
            "GET",
            contract.otm_rows_path(recipient_id, table),
            "GET /recipients/{id}/oneToManyTables/{table}",
        )

    def change_group(
        self, operation: str, group: str, recipient_ids: list[str]
    ) -> dict[str, tuple[str, str]]:
        """Add to or remove from a static group; return per-recipient errors."""
        path = contract.GROUP_PATHS[operation]
        body = contract.group_change_body(group, recipient_ids)
        response = self._call("POST", path, f"POST {path}", body)
        self.raise_for_status(response, f"{operation} members of target group {group}")
        return contract.group_errors(response)

    def run_batch(self, path: str, route: str, body: bytes) -> contract.TaskStatus:
        """Submit an async batch and wait for its task to finish.

        A task that ends ``failed`` applied nothing, so the same body is sent
        again (up to the transport's retry budget).
        """
        for _ in range(self.transport.retry.total + 1):
            with self.transport.set_aside(BATCH_CALLS):
                status = self._submit_and_wait(path, route, body)
            if status.status == "completed":
                if not status.verified:
                    self.warn_once(
                        "Agillic completed a batch task without per-entry results "
                        "(%s), so single entries cannot be confirmed: they are "
                        "counted as unverified. Set verify_deliveries to sample or "
                        "all to read them back.",
                        status.shape,
                    )
                return status
        msg = (
            f"{route}: every attempt ended as a failed task; Agillic applied "
            "none of the batch"
        )
        raise FatalApiError(msg)

    def _submit_and_wait(
        self, path: str, route: str, body: bytes
    ) -> contract.TaskStatus:
        response = self._call("POST", path, route, body)
        if response.status_code != 202:
            self.raise_for_status(response, route)
        task_id = contract.task_id_of(response)
        if task_id is None:
            msg = f"{route} answered {response.status_code} without a taskId"
            raise FatalApiError(msg, status=response.status_code)
        return self.wait_for_task(task_id)

    def wait_for_task(self, task_id: str) -> contract.TaskStatus:
        """Poll with backoff until the task is finished or ``task_timeout`` passes.

        Any status word that is not terminal counts as still running. A
        stopping run abandons the wait (the batch is sent again next run).
        """
        deadline = time.monotonic() + self.task_timeout
        delay = POLL_FIRST
        path = contract.TASK_PATH.format(task_id=task_id)
        while True:
            if self.transport.stop.wait(delay):
                raise Abandoned
            response = self._call("GET", path, "GET /recipients/v2/task/{taskId}")
            self.raise_for_status(response, "polling a batch task")
            status = contract.parse_task(response)
            if status.finished:
                return status
            if time.monotonic() + delay > deadline:
                msg = (
                    f"batch task {task_id} was still {status.status} after "
                    f"{self.task_timeout:.0f} s; raise task_timeout or check the "
                    "instance's task queue"
                )
                raise FatalApiError(msg)
            delay = min(delay * POLL_FACTOR, POLL_CAP)

    @staticmethod
    def raise_for_status(response: requests.Response, doing: str) -> None:
        """An unexpected answer stops the run, in the API's words.

        Callers that can act on a status (413: split the body) catch it as
        ``ApiError`` and look at ``status``.
        """
        if response.ok:
            return
        code, message = contract.error_of(response)
        raise FatalApiError(
            f"{doing} failed: HTTP {response.status_code} {code}: {message}",
            status=response.status_code,
            code=code,
        )
