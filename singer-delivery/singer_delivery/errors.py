"""The errors a run expects, and how the CLI shows them.

An ``OperationalError`` is a failure a person fixes outside the code: a
refused credential, an unreachable API or ledger, a refused mirror. The CLI
prints its message as one ERROR line (the traceback only at DEBUG level);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class OperationalError(RuntimeError):
    """Stops the run with a message that names the cause and the fix."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT reached the reading thread while it waited.

    A ``BaseException`` so that no ``except Exception`` on the way swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


class Abandoned(BaseException):
    """Raised inside delivery threads once the run stops waiting for them.

    The batch's records stay unsettled: they are neither committed nor
    rejected, and no STATE after them is written.
    """
