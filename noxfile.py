"""Development sessions: tests (default), lint, typing, bench, demo.

nox installs everything else itself. ``python3 dev.py <session>`` gets nox
and uv first on a machine that has only Python 3.11+; with both installed,
``python3 -m nox -s <session>`` is the same. uv is used when present
because it installs the plugins in seconds instead of minutes.

Dependencies come from ``pyproject.toml``: the packages are the uv
workspace members, the tools its ``[dependency-groups]``, so a new member
or a new test dependency is declared once, there.
"""

from __future__ import annotations

import shutil
import sys
from fnmatch import fnmatch
from pathlib import Path

import nox

nox.needs_version = ">=2025.2.9"  # nox.project.dependency_groups
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

ROOT = Path(__file__).resolve().parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
MELTANO = "meltano>=4.4,<5"
#: Meltano's own virtualenv, shared by the tests and demo sessions.
MELTANO_VENV = ROOT / ".nox" / "meltano"
MELTANO_ENV = {"MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"}


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


def dependency_group(name: str) -> tuple[str, ...]:
    """The requirements of one ``[dependency-groups]`` entry of pyproject.toml."""
    return nox.project.dependency_groups(PYPROJECT, name)


def install_packages(session: nox.Session) -> None:
    """Every workspace package, editable, in one resolver pass."""
    members = [f"./{member.relative_to(ROOT)}" for member in workspace_members()]
    session.install(*[arg for member in members for arg in ("-e", member)])


def install_meltano(session: nox.Session) -> Path:
    """Meltano in a virtualenv of its own; returns its executable.

    Meltano pins its own dependencies (SQLAlchemy, click, structlog...), which
    must not choose the versions the targets are tested with; the plugins it
    runs get virtualenvs of their own from Meltano anyway.
    """
    venv, python = str(MELTANO_VENV), str(MELTANO_VENV / "bin" / "python")
    if uv := shutil.which("uv"):
        create = [uv, "venv", "--quiet", "--python", sys.executable, venv]
        install = [uv, "pip", "install", "--quiet", "--python", python, MELTANO]
    else:
        create = [sys.executable, "-m", "venv", venv]
        install = [python, "-m", "pip", "install", "--quiet", MELTANO]
    if not Path(python).exists():
        session.run_install(*create, external=True)
    session.run_install(*install, external=True)
    return MELTANO_VENV / "bin" / "meltano"


@nox.session
def tests(session: nox.Session) -> None:
    """Unit, emulator and end-to-end (PostgreSQL and Meltano) tests."""
    install_packages(session)
    session.install(*dependency_group("test"))
    meltano = install_meltano(session)
    session.run(
        "pytest", *session.posargs, env={**MELTANO_ENV, "MELTANO_BIN": str(meltano)}
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*dependency_group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    """mypy on every workspace package."""
    install_packages(session)
    session.install(*dependency_group("typing"))
    session.run("mypy", *import_packages())


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Throughput figures against the emulators (prints, never asserts).

    target-agillic against singer-sdk no-op targets, at scale and with
    quarantined records, then target-gladly at 10 requests/s (about ten minutes;
    ``nox -s bench -- --records 5000 --pairs 3 --skip-1m --skip-gladly`` is a
    quick run, ``nox -s bench -- --help`` lists the options).
    """
    install_packages(session)
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
