"""In-memory fakes of ports, for unit tests (and run through the same contract suites)."""

from __future__ import annotations

import threading
import time

from pasture.domain.errors import Conflict
from pasture.ports import Record, Records


class InMemoryRecords(Records):
    def __init__(self) -> None:
        self._items: dict[tuple[str, str], Record] = {}
        self._lock = threading.Lock()

    def _live(self, r: Record | None) -> Record | None:
        if r is None or (r.expires_at is not None and r.expires_at <= time.time()):
            return None
        return r

    def get(self, pk: str, sk: str) -> Record | None:
        return self._live(self._items.get((pk, sk)))

    def put(self, record: Record, *, if_absent: bool) -> None:
        with self._lock:
            if if_absent and self._live(self._items.get((record.pk, record.sk))) is not None:
                raise Conflict(f"record {record.pk}/{record.sk} already exists")
            self._items[(record.pk, record.sk)] = Record(
                record.pk, record.sk, dict(record.data), record.expires_at
            )

    def query(self, pk: str, sk_prefix: str, *, limit: int | None) -> list[Record]:
        rows = sorted(
            (r for (p, s), r in list(self._items.items()) if p == pk and s.startswith(sk_prefix)),
            key=lambda r: r.sk,
        )
        live = [r for r in rows if self._live(r)]
        return live if limit is None else live[:limit]

    def delete(self, pk: str, sk: str) -> bool:
        with self._lock:
            return self._items.pop((pk, sk), None) is not None
