"""Run a nox session on a machine that has nothing but Python 3.11+.

    python3 dev.py demo                  # the demo
    python3 dev.py tests                 # the test suite (what CI runs)
    python3 dev.py tests -- -k mirror    # any session, arguments after --

Debian and Ubuntu ship a Python without pip, whose ``python3 -m venv``
fails (ensurepip is split off into python3-venv) and which refuses
``pip install`` into the system. So this script uses the standard library
only. It makes a private virtualenv, ``.venv-dev/``, without pip when
ensurepip is missing; finds uv (on PATH, else pip-installed into that
virtualenv when it has pip, else the uv wheel from PyPI unpacked into it);
installs nox with uv; and runs nox, passing its exit code through. nox then
builds every other environment with uv. A second run reuses all of it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import typing as t
import urllib.parse
import urllib.request
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv-dev"
BIN = VENV / "bin"
PYTHON = BIN / "python"
NOX = "nox>=2025.2.9"
PYPI_UV = "https://pypi.org/pypi/uv/json"
USAGE = (
    "usage: python3 dev.py SESSION [SESSION...] [-- ARGS]\n"
    "  sessions: tests (what CI runs), demo, lint, typing, bench; "
    "python3 dev.py --list shows them all"
)


class StepFailed(Exception):
    """A step that cannot go on: says what failed and what to do about it."""


def step(message: str) -> None:
    """One line per step, so a slow or failing step is easy to place."""
    print(f"dev.py: {message}", flush=True)


def run(args: list[str], what: str, fix: str) -> None:
    """Run a command quietly; on failure show its output and raise StepFailed."""
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise StepFailed(f"{what} failed (exit {result.returncode}); {fix}")


def has_ensurepip() -> bool:
    """Whether this Python can put pip into a new virtualenv."""
    try:
        import ensurepip  # noqa: F401
    except ImportError:
        return False
    return True


def venv_works() -> bool:
    """Whether .venv-dev exists and its interpreter still starts.

    A virtualenv made by a Python that has since been removed or upgraded
    has a dangling interpreter link and is rebuilt.
    """
    if not PYTHON.exists():
        return False
    probe = [str(PYTHON), "-c", "import sys"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def make_venv(with_pip: bool) -> None:
    """Create .venv-dev, with pip only when it is wanted and possible.

    The ``.gitignore`` inside keeps git, ruff and editors away from it, as
    uv and virtualenv do for the environments they make.
    """
    if venv_works():
        step(f"reusing the virtualenv {VENV.name}/")
        return
    step(f"creating the virtualenv {VENV.name}/ ({'with' if with_pip else 'no'} pip)")
    try:
        build_venv(with_pip)
    except subprocess.CalledProcessError:  # ensurepip there but broken
        step("ensurepip failed; creating the virtualenv without pip")
        build_venv(with_pip=False)
    (VENV / ".gitignore").write_text("*\n")


def build_venv(with_pip: bool) -> None:
    """EnvBuilder as ``python3 -m venv`` would: symlinked interpreter on POSIX."""
    builder = venv.EnvBuilder(clear=True, symlinks=os.name != "nt", with_pip=with_pip)
    try:
        builder.create(VENV)
    except OSError as exc:
        raise StepFailed(
            f"creating {VENV} failed ({exc}); remove it and run again"
        ) from exc


def platform_tag() -> tuple[str, tuple[int, int]]:
    """The wheel platform tags this machine runs: a pattern and a version limit.

    The limit is the highest (major, minor) glibc or macOS version a tag may
    ask for. The standard library has no ``packaging.tags``; uv's wheels only carry
    manylinux, musllinux and macosx tags, which is what this covers.
    """
    machine = platform.machine().lower()
    if sys.platform == "darwin":
        arch = "arm64" if machine in ("arm64", "aarch64") else machine
        major, minor = (platform.mac_ver()[0] + ".0").split(".")[:2]
        return rf"macosx_(\d+)_(\d+)_{arch}", (int(major), int(minor))
    if sys.platform.startswith("linux"):
        libc, version = platform.libc_ver()
        if libc == "glibc":
            major, minor = version.split(".")[:2]
            return rf"manylinux_(\d+)_(\d+)_{machine}", (int(major), int(minor))
        # musl does not report its version; uv's wheels need musl 1.1 (2013)
        return rf"musllinux_(\d+)_(\d+)_{machine}", (99, 99)
    raise StepFailed(
        f"dev.py cannot fetch uv for {sys.platform}: install uv yourself "
        "(https://docs.astral.sh/uv/) and run again"
    )


def compatible(filename: str) -> bool:
    """Whether a wheel file name fits this machine's OS, architecture and libc."""
    pattern, newest = platform_tag()
    for tag in filename.removesuffix(".whl").split("-")[-1].split("."):
        if (match := re.fullmatch(pattern, tag)) and (
            (int(match[1]), int(match[2])) <= newest
        ):
            return True
    return False


def download_uv() -> Path:
    """The uv binary from PyPI's newest uv wheel, checked against its sha256.

    The wheel holds nothing but the binary, which needs no Python to run.
    """
    step("downloading uv from PyPI (no uv on PATH and no pip to install it)")
    try:
        with urllib.request.urlopen(PYPI_UV, timeout=30) as response:
            release = json.load(response)
            # PyPI answers absolute URLs; a mirror in front of it may not
            base = response.geturl()
        wheel = next(
            (
                f
                for f in release["urls"]
                if f["packagetype"] == "bdist_wheel" and compatible(f["filename"])
            ),
            None,
        )
        if wheel is None:
            raise StepFailed(
                f"PyPI has no uv wheel for {sys.platform} {platform.machine()}; "
                "install uv yourself (https://docs.astral.sh/uv/) and run again"
            )
        url = urllib.parse.urljoin(base, wheel["url"])
        with urllib.request.urlopen(url, timeout=120) as response:
            data = response.read()
    except (OSError, ValueError) as exc:  # URLError, timeouts, DNS, bad JSON
        raise StepFailed(
            f"downloading uv from PyPI failed ({exc}); check the network or proxy "
            "(HTTPS_PROXY), or install uv yourself and run again"
        ) from exc
    if hashlib.sha256(data).hexdigest() != wheel["digests"]["sha256"]:
        raise StepFailed(f"{wheel['filename']} does not match PyPI's sha256; run again")
    return unpack_uv(data, release["info"]["version"])


def unpack_uv(wheel: bytes, version: str) -> Path:
    """Copy the uv executable out of the wheel into the virtualenv's bin."""
    target = BIN / "uv"
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        target.write_bytes(archive.read(f"uv-{version}.data/scripts/uv"))
    target.chmod(0o755)
    return target


def find_uv() -> Path:
    """uv from PATH, the virtualenv, pip inside the virtualenv, or PyPI."""
    if on_path := shutil.which("uv"):
        step(f"using uv from PATH ({on_path})")
        return Path(on_path)
    if (BIN / "uv").exists():
        step(f"using uv from {VENV.name}/")
        return BIN / "uv"
    if (BIN / "pip").exists():
        step(f"installing uv into {VENV.name}/ with pip")
        run(
            [str(PYTHON), "-m", "pip", "install", "--quiet", "uv"],
            "pip install uv",
            "check the network, or install uv yourself and run again",
        )
        return BIN / "uv"
    return download_uv()


def install_nox(uv: Path) -> None:
    """nox into the virtualenv (a no-op in well under a second once there)."""
    step(f"installing {NOX} into {VENV.name}/ with uv")
    run(
        [str(uv), "pip", "install", "--quiet", "--python", str(PYTHON), NOX],
        "installing nox",
        "check the network (uv reads PyPI) and run again",
    )


def nox_args(argv: list[str]) -> list[str]:
    """``dev.py tests -- -x`` → ``-s tests -- -x``; options go to nox as given."""
    sessions = []
    for arg in argv:
        if arg.startswith("-"):
            break
        sessions.append(arg)
    rest = argv[len(sessions) :]
    return (["-s", *sessions] if sessions else []) + rest


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    # an old system python3 must get this far, to say so
    if sys.version_info < (3, 11):  # noqa: UP036
        raise StepFailed(
            f"Python {platform.python_version()} is too old; run dev.py with "
            "Python 3.11 or newer (e.g. python3.11 dev.py ...)"
        )
    uv = shutil.which("uv")
    make_venv(with_pip=uv is None and has_ensurepip())
    uv_path = find_uv()
    install_nox(uv_path)
    command = [str(PYTHON), "-m", "nox", *nox_args(argv)]
    step(f"running nox {' '.join(command[3:])}")
    # The noxfile and nox look uv up on PATH (nox also honours UV).
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(uv_path.parent), os.environ.get("PATH", "")]),
        "UV": str(uv_path),
    }
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def entry(argv: list[str]) -> t.NoReturn:
    """Exit with nox's code, or one line saying what failed instead of a traceback."""
    try:
        code = main(argv)
    except StepFailed as exc:
        print(f"dev.py: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    entry(sys.argv[1:])
