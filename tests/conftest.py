"""Shared pytest fixtures."""

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from delivery_emulators import AgillicEmulator, GladlyEmulator
from tests import cli


@pytest.fixture(autouse=True)
def real_cli(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests marked ``real_cli`` run the target as a separate process."""
    if request.node.get_closest_marker("real_cli"):
        monkeypatch.setattr(cli, "IN_PROCESS", False)


@pytest.fixture
def agillic_emulator() -> Iterator[AgillicEmulator]:
    """A fresh Agillic emulator on a free port, stopped after the test."""
    with AgillicEmulator() as emulator:
        yield emulator


@pytest.fixture
def gladly_emulator() -> Iterator[GladlyEmulator]:
    """A fresh Gladly emulator on a free port, stopped after the test."""
    with GladlyEmulator() as emulator:
        yield emulator


POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of the test PostgreSQL server.

    Skips (saying why) on a developer machine without it; in CI (``CI`` set)
    a missing server fails the run instead, so these tests can never be
    silently skipped there.
    """
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must run the PostgreSQL tests)")
        pytest.skip(reason)
    return POSTGRES_ADMIN_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"delivery_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = postgres_server.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
