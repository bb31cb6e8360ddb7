"""``delivery-ledger``: read a ledger's recent runs and open rejects.

Read-only: it never migrates or writes. The same tables can be queried with
any SQL client (the README has examples); this is the quick look.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing as t

from singer_delivery.errors import OperationalError
from singer_delivery.ledger import Ledger, LedgerUrl, default_ledger_url


def main(argv: t.Sequence[str] | None = None) -> int:
    """Print the last runs and the open rejects; 2 when the ledger is unusable."""
    options = _parser().parse_args(argv)
    url = options.ledger_url or os.environ.get("LEDGER_URL") or default_ledger_url()
    try:
        ledger = Ledger(LedgerUrl.parse(url), read_only=True)
        runs = ledger.recent_runs(options.limit)
        rejects = ledger.open_reject_list(options.limit)
    except OperationalError as exc:
        print(f"delivery-ledger: {exc}", file=sys.stderr)
        return 2
    if options.json:
        json.dump({"runs": runs, "open_rejects": rejects}, sys.stdout, default=str)
        print()
        return 0
    print(_runs_table(runs))
    print()
    print(_rejects_table(rejects))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delivery-ledger",
        description=(
            "Show the recent runs and the open rejects of a delivery ledger "
            "(read-only)."
        ),
    )
    parser.add_argument(
        "--ledger-url",
        help=(
            "the targets' ledger_url (sqlite:///… or postgresql://…); default: "
            "$LEDGER_URL, else the targets' default SQLite file"
        ),
    )
    parser.add_argument("--limit", type=int, default=10, help="rows of each list")
    parser.add_argument("--json", action="store_true", help="print JSON instead")
    return parser


def _runs_table(runs: list[dict[str, t.Any]]) -> str:
    lines = ["last runs:"]
    for run in runs:
        counts = run["counts"]
        summary = " ".join(
            f"{name}={counts[name]}"
            for name in (
                "received",
                "delivered",
                "unchanged",
                "quarantined",
                "rejected",
            )
            if counts.get(name)
        )
        lines.append(
            f"  {run['started_at']}  {run['run_id']}  {run['target']:<15} "
            f"{run['status']:<11} {summary}"
        )
    return "\n".join(lines if runs else [*lines, "  (none)"])


def _rejects_table(rejects: list[dict[str, t.Any]]) -> str:
    lines = ["open rejects:"]
    for reject in rejects:
        kind = "quarantined" if reject["permanent"] else "retried"
        lines.append(
            f"  {reject['last_seen']}  {reject['stream']}  "
            f"{reject['destination_key'] or '(hashed)'}  {reject['reason']} "
            f"({kind}): {reject['message']}"
        )
    return "\n".join(lines if rejects else [*lines, "  (none)"])


if __name__ == "__main__":
    sys.exit(main())
