"""Development sessions: tests (default), lint, typing, bench, demo.

nox installs everything else itself; a machine needs only Python 3.11+ and
pip (``python3 -m pip install nox uv``). uv is used when present because it
installs the plugins in seconds instead of minutes.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

PACKAGES = ("./singer-delivery", "./target-agillic", "./target-gladly", "./emulators")
TEST_REQUIREMENTS = (
    "pytest>=8.3,<10",
    "pytest-timeout>=2.3,<3",
    "requests-mock>=1.12,<2",
)
MELTANO = "meltano>=4.4,<5"
#: Meltano's own virtualenv, shared by the tests and demo sessions.
MELTANO_VENV = Path(__file__).resolve().parent / ".nox" / "meltano"
MELTANO_ENV = {"MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false"}


def install_packages(session: nox.Session) -> None:
    """The three workspace packages, editable, in one resolver pass."""
    args = [arg for package in PACKAGES for arg in ("-e", package)]
    session.install(*args)


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
    session.install(*TEST_REQUIREMENTS)
    meltano = install_meltano(session)
    session.run(
        "pytest", *session.posargs, env={**MELTANO_ENV, "MELTANO_BIN": str(meltano)}
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.8,<1")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    """mypy on the three packages."""
    install_packages(session)
    session.install("mypy>=1.13,<3", "types-requests>=2.32,<3")
    session.run(
        "mypy",
        "singer-delivery/singer_delivery",
        "target-agillic/target_agillic",
        "target-gladly/target_gladly",
    )


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Throughput figures against the emulators (prints, never asserts).

    target-agillic against a stock no-op target (about two minutes;
    ``nox -s bench -- --records 2000 --ledger-keys 10000`` is a quick run),
    then target-gladly's pacing at 10 requests/s (about 100 s).
    """
    install_packages(session)
    session.run("python", "-m", "tests.bench", *session.posargs)
    session.run("python", "-m", "tests.bench_gladly")


@nox.session(venv_backend="none", default=False)
def demo(session: nox.Session) -> None:
    """Both targets through Meltano against the emulators, run twice (~1 min).

    Prints each run's report; logs and reports stay in .meltano/demo/.
    """
    meltano = install_meltano(session)
    session.run(
        str(meltano.parent / "python"), "demo/run.py", env=MELTANO_ENV, external=True
    )
