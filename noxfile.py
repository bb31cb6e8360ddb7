"""Sessions: tests (default), lint, typing, bench, demo, sdk_next, lock_meltano.

``python3 dev.py <session>`` gets nox and uv first on a machine that has
only Python 3.11+; with both installed, ``python3 -m nox -s <session>`` is
the same. Every environment is built by ``uv sync --locked`` from
``uv.lock``: the packages are the uv workspace members, the tools the
``[dependency-groups]`` of ``pyproject.toml``, so a new member or a new test
dependency is declared once, there, and every run gets the same versions.
After changing a dependency, ``uv lock`` updates the lock file.
"""

from __future__ import annotations

import os
import sys
from fnmatch import fnmatch
from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv"
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).resolve().parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
#: The Meltano releases the tests and the demo accept; ``nox -s lock_meltano``
#: pins one, with every dependency and hash, in MELTANO_LOCK.
MELTANO = "meltano>=4.4,<5"
MELTANO_LOCK = ROOT / "requirements-meltano.txt"
#: Meltano's own virtualenv, shared by the tests and demo sessions.
MELTANO_VENV = ROOT / ".nox" / "meltano"
MELTANO_ENV = {"MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"}
#: uv leaves bytecode to the first import, which never writes it where
#: PYTHONDONTWRITEBYTECODE is set (some CI images): then every target process
#: would compile singer-sdk again, about a second each.
INSTALL_ENV = {"UV_COMPILE_BYTECODE": "1"}
#: Type-checked beside the packages (hub/generate.py through the tests' imports).
TYPED_SOURCES = ["tests"]


def workspace_members() -> list[Path]:
    """Top-level directories with a pyproject.toml that uv counts as members.

    Read from ``[tool.uv.workspace]`` (``members`` globs minus ``exclude``)
    rather than listed here, so that adding a package is one line there.
    """
    workspace = PYPROJECT["tool"]["uv"]["workspace"]
    members, excluded = workspace["members"], workspace.get("exclude", [])
    return [
        path.parent
        for path in sorted(ROOT.glob("*/pyproject.toml"))
        if any(fnmatch(path.parent.name, pattern) for pattern in members)
        and not any(fnmatch(path.parent.name, pattern) for pattern in excluded)
    ]


def import_packages() -> list[str]:
    """The importable package directories of every member, for mypy."""
    return [
        str(init.parent.relative_to(ROOT))
        for member in workspace_members()
        for init in sorted(member.glob("*/__init__.py"))
    ]


def sync(session: nox.Session, group: str, *, packages: bool = True) -> None:
    """Install exactly what uv.lock pins: the workspace and one dependency group.

    ``--locked`` fails when pyproject.toml has changed since the lock was
    written, rather than quietly resolving something else than CI tests.
    """
    scope = ["--group", group] if packages else ["--only-group", group]
    session.run_install(
        "uv",
        "sync",
        "--locked",
        "--no-default-groups",
        *scope,
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location, **INSTALL_ENV},
    )


def install_meltano(session: nox.Session) -> Path:
    """Meltano in a virtualenv of its own, as MELTANO_LOCK pins it; returns
    its executable.

    Meltano pins its own dependencies (SQLAlchemy, click, structlog...), which
    must not choose the versions the targets are tested with; the plugins it
    runs get virtualenvs of their own from Meltano anyway. Installing from
    the pinned file means a new Meltano release changes nothing here until
    the file is regenerated.
    """
    python = MELTANO_VENV / "bin" / "python"
    if not python.exists():
        session.run_install(
            "uv", "venv", "--quiet", "--python", sys.executable, str(MELTANO_VENV)
        )
    session.run_install(
        "uv",
        "pip",
        "install",
        "--quiet",
        "--python",
        str(python),
        "--requirement",
        str(MELTANO_LOCK),
        env=INSTALL_ENV,
    )
    return MELTANO_VENV / "bin" / "meltano"


@nox.session(venv_backend="none", default=False)
def lock_meltano(session: nox.Session) -> None:
    """Pin the newest Meltano in MELTANO's range, with its dependencies' hashes."""
    wanted = Path(session.create_tmp()) / "meltano.in"
    wanted.write_text(f"{MELTANO}\n")
    session.run(
        "uv",
        "pip",
        "compile",
        "--universal",
        "--python-version",
        PYPROJECT["project"]["requires-python"].removeprefix(">="),
        "--generate-hashes",
        "--custom-compile-command",
        "python3 dev.py lock_meltano",
        "--quiet",
        "--output-file",
        str(MELTANO_LOCK),
        str(wanted),
        external=True,
    )


def test_workers() -> str:
    """Twice the CPUs: much of a test's time is spent waiting on an emulator,
    a target process or Meltano, not computing."""
    return str(2 * (os.cpu_count() or 1))


@nox.session
def tests(session: nox.Session) -> None:
    """Unit, emulator and end-to-end (PostgreSQL and Meltano) tests."""
    sync(session, "test")
    meltano = install_meltano(session)
    session.run(
        "pytest",
        "--numprocesses",
        test_workers(),
        *session.posargs,
        env={**MELTANO_ENV, "MELTANO_BIN": str(meltano)},
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    sync(session, "lint", packages=False)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict on every workspace package, the tests and the hub generator."""
    sync(session, "typing")
    session.run("mypy", *import_packages(), *TYPED_SOURCES)


@nox.session(default=False)
def sdk_next(session: nox.Session) -> None:
    """The tests against the newest singer-sdk, pre-releases included.

    The targets override a few of the SDK's private methods (each marked
    ``@override``); this session shows a rename or a changed signature before
    a release forces the upgrade. It ignores the lock and the version range on
    purpose, so it may fail while ``tests`` passes: that is its point. The
    Meltano tests are left out: Meltano installs the targets with the released
    singer-sdk their version range allows.
    """
    sync(session, "test")
    session.run_install(
        "uv", "pip", "install", "--upgrade", "--prerelease=allow", "singer-sdk[msgspec]"
    )
    session.run(
        "python",
        "-c",
        "from importlib.metadata import version; print(version('singer-sdk'))",
    )
    session.run(
        "pytest",
        "--numprocesses",
        test_workers(),
        "-m",
        "not meltano",
        *session.posargs,
    )


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Throughput figures against the emulators (prints, never asserts).

    target-agillic against singer-sdk no-op targets, at scale and with
    quarantined records, then target-gladly at 10 requests/s (about 10 minutes;
    ``nox -s bench -- --records 5000 --pairs 3 --skip-1m --skip-gladly`` is a
    quick run, ``nox -s bench -- --help`` lists the options).
    """
    sync(session, "test")
    session.run("python", "-m", "tests.bench", *session.posargs)


@nox.session(venv_backend="none", default=False)
def demo(session: nox.Session) -> None:
    """Both targets through Meltano against the emulators, run twice (~1 min).

    Prints each run's report; logs and reports stay in .meltano/demo/.
    """
    meltano = install_meltano(session)
    session.run(
        str(meltano.parent / "python"), "demo/run.py", env=MELTANO_ENV, external=True
    )
