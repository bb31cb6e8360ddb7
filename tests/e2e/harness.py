"""What the ``meltano run`` tests drive: the Meltano CLI and the warehouse.

The tests run the repository's own meltano.yml in its ``prod`` environment,
so credentials and endpoints arrive as environment variables exactly as in
production; only the endpoints point at the emulators.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import typing as t
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ("tap-postgres", "target-agillic", "target-gladly")
#: Variables from the caller's shell that Meltano would hand to the plugins
#: (a developer's real credentials among them); tests set their own.
PLUGIN_ENV_PREFIXES = ("MELTANO_", "TAP_", "TARGET_")
TIERS = ("bronze", "silver", "gold")
#: Meltano's state after a complete run: tap-postgres bookmarks nothing in a
#: FULL_TABLE stream, but names each stream once all its records are handled.
COMPLETE_STATE: dict[str, t.Any] = {
    "bookmarks": {
        "public-customers": {},
        "public-orders": {},
        "public-vip_customers": {},
    }
}

SCHEMA = """
CREATE TABLE customers (
    customer_id text PRIMARY KEY,
    email text NOT NULL UNIQUE,
    first_name text NOT NULL,
    last_name text NOT NULL,
    full_name text GENERATED ALWAYS AS (first_name || ' ' || last_name) STORED,
    phone text,
    country text,
    tier text NOT NULL,
    lifetime_value numeric(12, 2),
    birthdate date,
    opt_in boolean
);
CREATE TABLE orders (
    order_id text PRIMARY KEY,
    email text NOT NULL REFERENCES customers (email),
    amount numeric(10, 2) NOT NULL,
    ordered_on date NOT NULL,
    status text NOT NULL
);
CREATE VIEW vip_customers AS
    SELECT email, first_name FROM customers WHERE tier = 'gold';
"""


def customer(i: int, **changes: t.Any) -> dict[str, t.Any]:
    """A deterministic customers row; every third one is gold (a VIP)."""
    row = {
        "customer_id": f"C{i:03d}",
        "email": f"customer{i:03d}@example.com",
        "first_name": f"First{i}",
        "last_name": f"Last{i}",
        "phone": f"+4530{i:06d}",
        "country": ("DK", "SE", "NO")[i % 3],
        "tier": TIERS[i % 3],
        "lifetime_value": Decimal(i) * Decimal("10.25"),
        "birthdate": datetime.date(1970 + i % 30, 1 + i % 12, 1 + i % 28),
        "opt_in": i % 2 == 0,
    }
    row.update(changes)
    return row


def order(n: int, customer_index: int, **changes: t.Any) -> dict[str, t.Any]:
    """A deterministic orders row belonging to ``customer(customer_index)``."""
    row = {
        "order_id": f"O{n:03d}",
        "email": customer(customer_index)["email"],
        "amount": Decimal(10) + Decimal(n) * Decimal("1.25"),
        "ordered_on": datetime.date(2024, 1 + n % 12, 1 + n % 28),
        "status": ("new", "shipped", "delivered")[n % 3],
    }
    row.update(changes)
    return row


@dataclass
class Warehouse:
    """The seeded source database: what tap-postgres reads."""

    url: str

    @property
    def tap_url(self) -> str:
        """The URL for tap-postgres, which insists on a password in it.

        The test server trusts local connections, so a placeholder does; a
        ``TEST_POSTGRES_URL`` with a real password keeps it.
        """
        url = make_url(self.url)
        if url.password is None:
            url = url.set(password="unused")
        return url.render_as_string(hide_password=False)

    def execute(self, sql: str, *params: t.Any) -> list[tuple[t.Any, ...]]:
        """Run SQL (several statements only without parameters), committed."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(sql, params or None)
            return cursor.fetchall() if cursor.description else []

    def insert(self, table: str, rows: t.Iterable[dict[str, t.Any]]) -> None:
        """Insert dict rows (all with the same keys)."""
        rows = list(rows)
        columns = list(rows[0])
        placeholders = ", ".join(["%s"] * len(columns))
        with psycopg.connect(self.url, autocommit=True) as conn, conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})",
                [[row[c] for c in columns] for row in rows],
            )

    def column(self, sql: str) -> set[t.Any]:
        """The first column of a query, as a set."""
        return {row[0] for row in self.execute(sql)}


@dataclass
class Meltano:
    """The Meltano CLI on the repository's project, with one system directory."""

    executable: Path
    sys_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def __call__(
        self, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(PLUGIN_ENV_PREFIXES)
        }
        env.update(
            MELTANO_SYS_DIR_ROOT=str(self.sys_dir),
            MELTANO_ENVIRONMENT="prod",
            MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
            **self.env,
        )
        result = subprocess.run(
            [str(self.executable), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        if check and result.returncode != 0:
            tail = "\n".join(result.stderr.splitlines()[-60:])
            raise AssertionError(f"meltano {' '.join(args)} failed:\n{tail}")
        return result

    def state(self, state_id: str) -> dict[str, t.Any]:
        """``meltano state get``: the Singer state Meltano stored, {} if none."""
        stored = json.loads(self("state", "get", state_id).stdout)
        return t.cast(dict[str, t.Any], stored.get("singer_state", {}))
