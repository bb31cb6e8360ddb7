"""Fixtures for ``meltano run`` tests: Meltano, its plugins, a seeded warehouse.

Each test gets its own Meltano system directory (system database, state,
catalog cache), whose plugin virtualenvs are links to one installation made
per test run, shared by the pytest-xdist workers.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from filelock import FileLock

from tests.e2e.harness import PLUGINS, SCHEMA, Meltano, Warehouse, customer, order


@pytest.fixture
def warehouse(postgres_url: str) -> Warehouse:
    """A fresh database with 30 customers, 45 orders and the vip_customers view."""
    warehouse = Warehouse(postgres_url)
    warehouse.execute(SCHEMA)
    warehouse.insert("customers", (customer(i) for i in range(30)))
    warehouse.insert("orders", (order(n, n % 30) for n in range(45)))
    return warehouse


@pytest.fixture(scope="session")
def meltano_executable() -> Path:
    """Meltano from MELTANO_BIN (set by ``nox -s tests``) or PATH.

    Missing Meltano skips these tests on a developer machine, saying why,
    and fails them in CI, which must run them.
    """
    found = os.environ.get("MELTANO_BIN") or shutil.which("meltano")
    if not found or not Path(found).exists():
        reason = (
            "Meltano is not installed: run the tests with `nox -s tests`, or set "
            "MELTANO_BIN to a meltano executable"
        )
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must run the Meltano tests)")
        pytest.skip(reason)
    return Path(found)


@pytest.fixture(scope="session")
def installed_plugins(
    meltano_executable: Path,
    postgres_server: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A system directory with tap-postgres and both targets installed, once.

    The first xdist worker to get here installs under the run's shared base
    directory while holding a lock; the others wait for it and reuse the
    result. Depends on ``postgres_server`` so that a machine without
    PostgreSQL skips before spending time on the installation.
    """
    shared = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        shared = shared.parent  # the run's directory, above each worker's own
    sys_dir, done = shared / "meltano-plugins", shared / "meltano-plugins.done"
    with FileLock(shared / "meltano-plugins.lock"):
        if not done.exists():
            shutil.rmtree(sys_dir, ignore_errors=True)
            sys_dir.mkdir()
            Meltano(meltano_executable, sys_dir)("install", *PLUGINS)
            done.touch()
    return sys_dir


@pytest.fixture
def meltano(
    meltano_executable: Path, installed_plugins: Path, tmp_path: Path
) -> Meltano:
    """Meltano with a system directory (database, state) for this test only."""
    sys_dir = tmp_path / "meltano-sys"
    sys_dir.mkdir()
    for kind in ("extractors", "loaders"):
        (sys_dir / kind).symlink_to(installed_plugins / kind, target_is_directory=True)
    return Meltano(meltano_executable, sys_dir)
