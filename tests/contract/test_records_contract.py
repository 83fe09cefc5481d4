"""Contract of the Records port, run against every adapter.

Add an adapter by adding a factory to RECORDS (DynamoDB runs on moto, in process)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pytest

from pasture.adapters.local.sqlite_db import SqliteDb
from pasture.adapters.local.sqlite_records import SqliteRecords
from pasture.domain.errors import Conflict
from pasture.ports import Record, Records
from tests.helpers.aws import dynamodb_records
from tests.helpers.concurrency import run_together
from tests.helpers.fakes import InMemoryRecords

# Each factory gives a context manager: the store lives until the test ends.
RECORDS: dict[str, Callable[[Path], AbstractContextManager[Records]]] = {
    "sqlite": lambda d: nullcontext(SqliteRecords(SqliteDb(d / "records.db"))),
    "memory": lambda d: nullcontext(InMemoryRecords()),
    "dynamodb": lambda d: dynamodb_records(),
}


@pytest.fixture(params=sorted(RECORDS))
def records(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Records]:
    with RECORDS[request.param](tmp_path) as records:
        yield records


def test_put_then_get_round_trips_nested_data(records: Records) -> None:
    data = {"name": "x", "n": 3, "f": 1.5, "nested": {"list": [1, "two", None], "ok": True}}
    records.put(Record("p", "s", data), if_absent=False)
    got = records.get("p", "s")
    assert got is not None and got.data == data and (got.pk, got.sk) == ("p", "s")


def test_get_unknown_is_none(records: Records) -> None:
    assert records.get("p", "missing") is None


def test_put_replaces_without_condition(records: Records) -> None:
    records.put(Record("p", "s", {"v": 1}), if_absent=False)
    records.put(Record("p", "s", {"v": 2}), if_absent=False)
    assert records.get("p", "s").data == {"v": 2}  # type: ignore[union-attr]


def test_if_absent_refuses_a_live_item(records: Records) -> None:
    records.put(Record("p", "s", {"v": 1}), if_absent=True)
    with pytest.raises(Conflict):
        records.put(Record("p", "s", {"v": 2}), if_absent=True)
    assert records.get("p", "s").data == {"v": 1}  # type: ignore[union-attr]


def test_if_absent_allows_over_an_expired_item(records: Records) -> None:
    records.put(Record("p", "s", {"v": 1}, expires_at=time.time() - 1), if_absent=False)
    records.put(Record("p", "s", {"v": 2}), if_absent=True)
    assert records.get("p", "s").data == {"v": 2}  # type: ignore[union-attr]


def test_expired_items_are_invisible(records: Records) -> None:
    records.put(Record("p", "old", {}, expires_at=time.time() - 1), if_absent=False)
    records.put(Record("p", "new", {}, expires_at=time.time() + 60), if_absent=False)
    assert records.get("p", "old") is None
    assert [r.sk for r in records.query("p", "", limit=None)] == ["new"]


def test_query_is_one_partition_by_prefix_in_sort_order(records: Records) -> None:
    for pk, sk in [
        ("p", "b#2"),
        ("p", "a#1"),
        ("p", "b#1"),
        ("p", "c"),
        ("q", "b#0"),
        ("p#x", "b#9"),
    ]:
        records.put(Record(pk, sk, {"k": sk}), if_absent=False)
    assert [r.sk for r in records.query("p", "b#", limit=None)] == ["b#1", "b#2"]
    assert [r.sk for r in records.query("p", "", limit=None)] == ["a#1", "b#1", "b#2", "c"]
    assert [r.sk for r in records.query("p", "", limit=2)] == ["a#1", "b#1"]
    assert records.query("nope", "", limit=None) == []


def test_query_prefix_with_non_ascii(records: Records) -> None:
    records.put(Record("p", "é#1", {}), if_absent=False)
    records.put(Record("p", "é", {}), if_absent=False)
    records.put(Record("p", "e#1", {}), if_absent=False)
    assert [r.sk for r in records.query("p", "é", limit=None)] == ["é", "é#1"]


def test_delete(records: Records) -> None:
    records.put(Record("p", "s", {}), if_absent=False)
    assert records.delete("p", "s") is True
    assert records.delete("p", "s") is False
    assert records.get("p", "s") is None


def test_conditional_put_is_atomic_under_contention(records: Records) -> None:
    def claim(i: int) -> int | None:
        try:
            records.put(Record("p", "unique", {"owner": i}), if_absent=True)
        except Conflict:
            return None
        return i

    winners = [i for i in run_together(claim, 8) if i is not None]
    assert len(winners) == 1
    assert records.get("p", "unique").data == {"owner": winners[0]}  # type: ignore[union-attr]
