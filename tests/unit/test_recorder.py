"""Settling a batch: grouped and single outcomes commit and count alike."""

from __future__ import annotations

import json
import types
import typing as t
from pathlib import Path

import pytest

from singer_delivery.ledger import Ledger, Scope
from singer_delivery.outcomes import Action, Delivered, Item, Outcome
from singer_delivery.outputs import RejectsFile
from singer_delivery.recorder import CommitRecorder
from singer_delivery.report import StreamStats
from singer_delivery.serialization import fingerprint_of, key_hash
from singer_delivery.sink import DeliveryContractError, DeliverySink

SCOPE = Scope("target-test", "instance", "recipients", "EMAIL", "customers")


def item(n: int) -> Item:
    encoded = json.dumps({"EMAIL": f"user{n}@example.com", "N": n}).encode()
    key = f"user{n}@example.com"
    return Item(key, encoded, fingerprint_of(encoded), key_hash(key), n)


class Destination:
    """The little of a sink the recorder reads."""

    stream_name = "customers"
    scope = SCOPE
    scope_id = SCOPE.scope_id
    membership = None

    def __init__(self) -> None:
        self.stats = StreamStats("customers")

    def owner_of(self, key: str) -> str | None:
        return None


@pytest.fixture
def recorder(tmp_path: Path) -> CommitRecorder:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    ledger.register(SCOPE)
    rejects = RejectsFile(tmp_path / "rejects.jsonl", "run", include_record=False)
    return CommitRecorder(rejects, ledger, store_reject_keys=False)


def test_groups_and_single_outcomes_commit_and_count_alike(
    recorder: CommitRecorder, tmp_path: Path
) -> None:
    items = [item(n) for n in range(10)]
    sink = Destination()
    deferred = recorder.settle(
        t.cast(t.Any, sink),
        [
            Delivered(items[:4], (Action.CREATED,)),
            Delivered(items[4:6], (Action.UPDATED,)),
            Delivered([], (Action.CREATED,)),
            Outcome.done(items[6], Action.UPSERTED, verified=False),
            Outcome.refused(items[7], "invalid_email", "not an email address"),
            Outcome.later(items[8], "recipient_not_found", "waits for its recipient"),
            Delivered(items[9:], (Action.UPSERTED,), verified=False),
        ],
        final=False,
    )

    assert deferred == [items[8]]
    counts = sink.stats.to_dict()
    assert (counts["delivered"], counts["created"], counts["updated"]) == (8, 4, 2)
    assert (counts["unverified"], counts["rejected"]) == (2, 1)
    recorder.ledger.flush()
    known = recorder.ledger.lookup(SCOPE.scope_id, [i.key_hash for i in items])
    committed = {i.key_hash: i.fingerprint for i in [*items[:7], items[9]]}
    assert {k: v.fingerprint for k, v in known.items() if v.fingerprint} == committed
    assert known[items[7].key_hash].refused_fingerprint == items[7].fingerprint
    rejects = (tmp_path / "rejects.jsonl").read_text().splitlines()
    assert [json.loads(line)["reason"] for line in rejects] == ["invalid_email"]


def test_a_final_settle_rejects_what_is_still_deferred(
    recorder: CommitRecorder,
) -> None:
    sink = Destination()
    waiting = item(1)
    deferred = recorder.settle(
        t.cast(t.Any, sink),
        [Outcome.later(waiting, "recipient_not_found", "waits for its recipient")],
        final=True,
    )
    assert deferred == []
    assert sink.stats.to_dict()["rejected_by_reason"] == {"recipient_not_found": 1}


@pytest.mark.parametrize(
    "settled",
    [
        pytest.param(lambda i: [Delivered(i[:2])], id="an item left out"),
        pytest.param(
            lambda i: [Delivered(i), Outcome.done(i[0])], id="an item settled twice"
        ),
        pytest.param(lambda i: [Delivered([*i[:2], item(9)])], id="an item not given"),
    ],
)
def test_groups_must_settle_each_item_exactly_once(
    settled: t.Callable[[list[Item]], list[t.Any]],
) -> None:
    items = [item(n) for n in range(3)]
    sink = types.SimpleNamespace(
        run=types.SimpleNamespace(recorder=types.SimpleNamespace(dry_run=False))
    )
    with pytest.raises(DeliveryContractError, match="exactly one outcome per item"):
        DeliverySink._check_outcomes(t.cast(t.Any, sink), items, settled(items))
    DeliverySink._check_outcomes(
        t.cast(t.Any, sink), items, [Delivered(items[:2]), Outcome.done(items[2])]
    )
