"""The demo behind ``nox -s demo``: both targets, through Meltano, on emulators.

1. starts the Agillic and Gladly emulators (emulators/) on free ports and
   creates the static target group VIP that the audience mirrors;
2. ``meltano install`` of the plugins it uses (into .meltano/, kept between
   demos, so a second demo installs nothing);
3. ``meltano run`` the sample customers, orders and VIP audience (demo/data)
   into Agillic, and the customers into Gladly as profiles;
4. prints each run's report;
5. runs everything again: the targets' ledgers skip what is unchanged;
6. stops the emulators, whatever happened.

Meltano's logs, the run reports (JSON), the ledger and the rejects files go
to ``.meltano/demo/``, emptied at the start so every demo begins from
nothing. Run with the Python that has Meltano (``nox -s demo`` sees to it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import typing as t
import urllib.request
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".meltano" / "demo"
MELTANO = Path(sys.executable).parent / "meltano"
AGILLIC_BLOCKS = [
    *("tap-jsonl", "target-agillic"),
    *("tap-jsonl-orders", "target-agillic"),
    *("tap-jsonl-vip", "target-agillic"),
]
GLADLY_BLOCKS = ["tap-jsonl", "target-gladly"]
COLUMNS = (
    ("received", "received"),
    ("unchanged", "unchanged"),
    ("sent", "sent"),
    ("created", "created"),
    ("updated", "updated"),
    ("rejected", "rejected"),
    ("group_added", "grp+"),
    ("group_removed", "grp-"),
    ("api_calls", "calls"),
)


class Emulator:
    """One emulator subprocess, started through its CLI on a free port."""

    def __init__(self, module: str, *args: str) -> None:
        self.name = module
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                f"delivery_emulators.{module}",
                "--port",
                "0",
                *args,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT / "emulators")},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"{module} emulator did not start: {line!r}")
        self.url = line.removeprefix("listening on ")

    def control(self, action: str, body: dict[str, t.Any] | None = None) -> t.Any:
        """Call a ``/_emulator/`` endpoint: GET without a body, POST with one."""
        request = urllib.request.Request(
            f"{self.url}/_emulator/{action}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def stop(self) -> None:
        """SIGTERM, then wait; kill only if it hangs, so nothing outlives the demo."""
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def meltano(env: dict[str, str], *args: str) -> None:
    """Run Meltano with its log appended to .meltano/demo/meltano.log."""
    log_path = OUT / "meltano.log"
    print(f"$ meltano {' '.join(args)}", flush=True)
    with log_path.open("a") as log:
        log.write(f"\n$ meltano {' '.join(args)}\n")
        log.flush()
        result = subprocess.run(
            [str(MELTANO), *args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            check=False,
        )
    if result.returncode != 0:
        tail = log_path.read_text().splitlines()[-40:]
        raise SystemExit(
            "\n".join([*tail, f"meltano {args[0]} failed; full log: {log_path}"])
        )


def print_reports(blocks: list[str]) -> None:
    """One table per extractor-to-loader pair, from the report_path JSON files."""
    pairs = list(zip(blocks[::2], blocks[1::2], strict=True))
    for tap, target in pairs:
        path = OUT / f"{tap}-to-{target}.json"
        report = json.loads(path.read_text())
        print(
            f"  {tap} -> {target}  (run {report['run_id']}, {path.relative_to(ROOT)})"
        )
        print("    " + f"{'stream':<10}" + "".join(f"{h:>10}" for _, h in COLUMNS))
        for stream, counts in report["streams"].items():
            cells = "".join(f"{counts[key]:>10}" for key, _ in COLUMNS)
            print(f"    {stream:<10}{cells}")
            if counts["rejected_by_reason"]:
                print(f"      rejected: {counts['rejected_by_reason']}")


def summary(agillic: Emulator, gladly: Emulator) -> None:
    """What the emulators hold now: the result a user would see in each tool."""
    state = agillic.control("state")
    rows = sum(len(r) for r in state["otm_tables"]["ORDERS"]["rows"].values())
    print(
        f"  Agillic: {len(state['recipients'])} recipients, {rows} ORDERS rows, "
        f"group VIP = {', '.join(state['target_groups']['VIP']['members'])}"
    )
    print(f"  Gladly: {len(gladly.control('state')['profiles'])} customer profiles")


def main() -> None:
    started = time.monotonic()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    with ExitStack() as stack:
        agillic = Emulator("agillic")
        stack.callback(agillic.stop)
        gladly = Emulator("gladly", "--rate-limit", "10")
        stack.callback(gladly.stop)
        agillic.control("config", {"add_group": {"name": "VIP"}})
        print(f"Agillic emulator on {agillic.url}, Gladly emulator on {gladly.url}")
        env = {
            **os.environ,
            "MELTANO_ENVIRONMENT": "demo",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_DATABASE_URI": f"sqlite:///{OUT / 'meltano.db'}",
            "TARGET_AGILLIC_API_ENDPOINT": agillic.url,
            "TARGET_GLADLY_BASE_URL": gladly.url,
        }
        meltano(env, "install", "tap-jsonl", "target-agillic", "target-gladly")
        # --full-refresh: every run reads the whole files (tap-jsonl would
        # otherwise bookmark them), so the second run shows the ledger at work.
        for title in ("First run: everything is new", "Second run: nothing changed"):
            print(f"\n{title}")
            meltano(env, "run", "--full-refresh", *AGILLIC_BLOCKS)
            meltano(env, "run", "--full-refresh", *GLADLY_BLOCKS)
            print_reports(AGILLIC_BLOCKS + GLADLY_BLOCKS)
        print("\nDestinations")
        summary(agillic, gladly)
    print(f"\nDone in {time.monotonic() - started:.0f}s; logs and reports in {OUT}")


if __name__ == "__main__":
    main()
