"""Development sessions: tests (default), lint, typing, bench, demo.

nox installs everything else itself; a machine needs only Python 3.11+ and
pip (``python3 -m pip install nox uv``). uv is used when present because it
installs the plugins in seconds instead of minutes.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

PACKAGES = ("./singer-delivery", "./target-agillic", "./target-gladly")
TEST_REQUIREMENTS = (
    "pytest>=8.3,<10",
    "pytest-timeout>=2.3,<3",
    "requests-mock>=1.12,<2",
)


def install_packages(session: nox.Session) -> None:
    """The three workspace packages, editable, in one resolver pass."""
    args = [arg for package in PACKAGES for arg in ("-e", package)]
    session.install(*args)


@nox.session
def tests(session: nox.Session) -> None:
    """Unit, emulator and end-to-end tests."""
    install_packages(session)
    session.install(*TEST_REQUIREMENTS)
    session.run("pytest", *session.posargs)


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

    About two minutes; ``nox -s bench -- --records 2000 --ledger-keys 10000``
    is a quick run.
    """
    install_packages(session)
    session.run("python", "-m", "tests.bench", *session.posargs)
