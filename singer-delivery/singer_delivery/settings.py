"""Settings both targets share, and the checks that run before any input.

Each check returns a message naming the setting and the fix, so a user sees
every problem with their config at once instead of one per attempt.
"""

from __future__ import annotations

import ipaddress
import typing as t
import urllib.parse

from singer_sdk import typing as th

from singer_delivery.ledger import validate_ledger_url

MAX_REQUEST_TIMEOUT = 600


def delivery_properties() -> list[th.Property]:
    """The change-detection, reporting and resilience settings of every target."""
    return [
        th.Property(
            "ledger_url",
            th.StringType,
            secret=True,
            description=(
                "SQLAlchemy URL of the delivery ledger (sqlite:/// or "
                "postgresql://). Default: a SQLite file delivery-ledger.sqlite "
                "in $MELTANO_PROJECT_ROOT/.meltano/ when that is set, else in "
                "the working directory."
            ),
        ),
        th.Property(
            "ledger_lock_timeout",
            th.NumberType,
            default=60,
            description=(
                "Seconds to wait for another run against the same destination "
                "and ledger to finish before failing."
            ),
        ),
        th.Property(
            "skip_unchanged",
            th.BooleanType,
            default=True,
            description=(
                "Do not send a record whose mapped payload equals what was last "
                "delivered for its key."
            ),
        ),
        th.Property(
            "full_sync",
            th.BooleanType,
            default=False,
            description="Send every record regardless of the ledger (and update it).",
        ),
        th.Property(
            "dry_run",
            th.BooleanType,
            default=False,
            description=(
                "Write nothing to the destination or the ledger; write a plan of "
                "what a real run would do."
            ),
        ),
        th.Property(
            "rejects_path",
            th.StringType,
            description=(
                "JSONL file that rejected records are appended to. Default: "
                "<target>-rejects.jsonl next to the default ledger."
            ),
        ),
        th.Property(
            "rejects_include_record",
            th.BooleanType,
            default=False,
            description=(
                "Also write the full record into the rejects file (it may hold "
                "personal data)."
            ),
        ),
        th.Property(
            "max_reject_ratio",
            th.NumberType,
            default=0.1,
            description=(
                "Exit non-zero (after delivering what it could) when more than "
                "this share of the run's records is rejected."
            ),
        ),
        th.Property(
            "report_path",
            th.StringType,
            description=(
                "JSON file for the run report. A dry run writes its plan next to "
                "it as <name>.plan.jsonl."
            ),
        ),
        th.Property(
            "batch_size_rows",
            th.IntegerType,
            default=1000,
            description=(
                "Records per batch, 1 to 1000 (the APIs take at most 1000 entries "
                "per request)."
            ),
        ),
        th.Property(
            "request_timeout",
            th.NumberType,
            default=30,
            description="Seconds before an HTTP request is abandoned and retried.",
        ),
        th.Property(
            "max_retries",
            th.IntegerType,
            default=5,
            description="Retries of a request that failed transiently (429, 5xx).",
        ),
    ]


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or localhost: where plain http is acceptable."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(setting: str, value: str, example: str) -> str | None:
    """An https URL, or http on a loopback host (emulators, tunnels)."""
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return f"{setting} {value!r} is not a URL; use e.g. {example}"
    if parsed.scheme == "http" and not is_loopback(parsed.hostname):
        return (
            f"{setting} must use https for a remote host (got {value!r}); plain "
            "http is only allowed for 127.0.0.1 or localhost"
        )
    if parsed.query or parsed.fragment:
        return f"{setting} {value!r} must not have a query or fragment"
    return None


def check_delivery_settings(config: t.Mapping[str, t.Any]) -> list[str]:
    """Problems with the shared settings, each naming the setting and the fix."""
    errors = []
    if config.get("ledger_url") and (
        problem := validate_ledger_url(config["ledger_url"])
    ):
        errors.append(problem)
    ratio = config.get("max_reject_ratio", 0.1)
    if not 0 <= ratio <= 1:
        errors.append(f"max_reject_ratio must be between 0 and 1 (got {ratio})")
    timeout = config.get("request_timeout", 30)
    if not 0 < timeout <= MAX_REQUEST_TIMEOUT:
        errors.append(
            f"request_timeout must be between 0 and {MAX_REQUEST_TIMEOUT} seconds "
            f"(got {timeout})"
        )
    if config.get("max_retries", 5) < 0:
        errors.append("max_retries must be 0 or more")
    return errors
