"""Reading Singer messages: one bad line is a reject, never the end of the run.

singer-sdk's readers stop the whole run at the first line that is not JSON,
and log the line (personal data included) on the way. This reader counts
lines, hands an unreadable one to ``on_unreadable`` with its line number
only, and lets the run wait for input in a way a SIGTERM can interrupt.
"""

from __future__ import annotations

import collections
import contextlib
import decimal
import sys
import threading
import typing as t

import msgspec
from singer_sdk.io_base import GenericSingerReader
from typing_extensions import override

from singer_delivery.errors import Interrupted

#: ``(line number, why)`` for a line that is not a Singer message.
UnreadableHandler = t.Callable[[int, str], None]

_DECODER = msgspec.json.Decoder(float_hook=decimal.Decimal)


class DeliveryReader(GenericSingerReader[str]):
    """Numbered, forgiving, interruptible reading of stdin (or a file)."""

    def __init__(self) -> None:
        super().__init__()
        self.on_unreadable: UnreadableHandler = _refuse
        self.gate = Gate()
        self.line_number = 0

    @property
    @override
    def default_input(self) -> t.IO[str]:
        return sys.stdin

    @override
    def deserialize_json(self, line: str) -> dict[str, t.Any]:
        message = _DECODER.decode(line)
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise msgspec.DecodeError("not a Singer message (no 'type')")
        return message

    @override
    def process_lines(
        self,
        file_input: t.IO[str] | None,
        callbacks: dict[str, t.Callable[[dict[str, t.Any]], None]],
    ) -> collections.Counter[str]:
        """Call the callback of each message's type, line by line.

        Waiting for the next line happens inside ``waiting()``, where a
        SIGTERM may interrupt it; handling a message never does.
        """
        counts: collections.Counter[str] = collections.Counter()
        lines = iter(file_input or self.default_input)
        gate = self.gate
        while True:
            gate.check()
            gate.waiting = True
            line = next(lines, None)
            gate.waiting = False
            if line is None:
                return counts
            self.line_number += 1
            if not line.strip():
                continue
            try:
                message = self.deserialize_json(line)
            except msgspec.DecodeError as exc:
                self.on_unreadable(self.line_number, _reason(exc))
                continue
            kind = message["type"]
            callback = callbacks.get(kind)
            if callback is None:
                self.on_unreadable(self.line_number, f"unknown message type {kind!r}")
                continue
            callback(message)
            counts[kind] += 1


class Gate:
    """Where a signal may interrupt the reading thread, and whether one came.

    Plain attributes rather than a context manager: the reader passes
    through here once per line. A signal handler sets ``signal``, and raises
    ``Interrupted`` itself only while ``waiting`` (blocked on input or on a
    batch); otherwise the reader raises it at the next ``check``.
    """

    def __init__(self) -> None:
        self.waiting = False
        self.signal: int | None = None

    def check(self) -> None:
        """Raise ``Interrupted`` if a signal came meanwhile."""
        if self.signal is not None:
            raise Interrupted(self.signal)

    @contextlib.contextmanager
    def wait(self) -> t.Iterator[None]:
        """A wait a signal may interrupt (reading thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self.check()
        self.waiting = True
        try:
            yield
        finally:
            self.waiting = False


def _reason(exc: msgspec.DecodeError) -> str:
    """The decoder's complaint, which names positions, never content."""
    return str(exc).split("\n", 1)[0][:120]


def _refuse(line_number: int, reason: str) -> None:
    msg = f"input line {line_number} is not a Singer message: {reason}"
    raise ValueError(msg)
