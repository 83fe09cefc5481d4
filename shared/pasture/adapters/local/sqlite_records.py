"""Records on SQLite (WAL): one table keyed (pk, sk), the same access patterns as DynamoDB."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pasture.adapters.local.sqlite_db import SqliteDb
from pasture.domain.errors import Conflict
from pasture.ports import Record, Records

# Larger than any UTF-8 encoded character, so [prefix, prefix + _MAX) is exactly "starts with".
_MAX = "\U0010ffff"


class SqliteRecords(Records):
    def __init__(self, db: SqliteDb) -> None:
        self._db = db
        self._db.conn().execute(
            "CREATE TABLE IF NOT EXISTS records ("
            " pk TEXT NOT NULL, sk TEXT NOT NULL, data TEXT NOT NULL, expires_at REAL,"
            " PRIMARY KEY (pk, sk)) WITHOUT ROWID"
        )

    @staticmethod
    def _live(expires_at: float | None, now: float) -> bool:
        return expires_at is None or expires_at > now

    def get(self, pk: str, sk: str) -> Record | None:
        row = (
            self._db.conn()
            .execute("SELECT data, expires_at FROM records WHERE pk=? AND sk=?", (pk, sk))
            .fetchone()
        )
        if row is None or not self._live(row[1], time.time()):
            return None
        return Record(pk, sk, json.loads(row[0]), row[1])

    def put(self, record: Record, *, if_absent: bool) -> None:
        data = json.dumps(dict(record.data), separators=(",", ":"))
        args = (record.pk, record.sk, data, record.expires_at)
        if not if_absent:
            self._db.conn().execute("INSERT OR REPLACE INTO records VALUES (?,?,?,?)", args)
            return
        with self._db.transaction() as c:
            row = c.execute(
                "SELECT expires_at FROM records WHERE pk=? AND sk=?", (record.pk, record.sk)
            ).fetchone()
            if row is not None and self._live(row[0], time.time()):
                raise Conflict(f"record {record.pk}/{record.sk} already exists")
            c.execute("INSERT OR REPLACE INTO records VALUES (?,?,?,?)", args)

    def query(self, pk: str, sk_prefix: str, *, limit: int | None) -> list[Record]:
        now = time.time()
        rows = self._db.conn().execute(
            "SELECT sk, data, expires_at FROM records WHERE pk=? AND sk>=? AND sk<?"
            " AND (expires_at IS NULL OR expires_at>?) ORDER BY sk LIMIT ?",
            (pk, sk_prefix, sk_prefix + _MAX, now, -1 if limit is None else limit),
        )
        return [Record(pk, sk, json.loads(d), e) for sk, d, e in rows]

    def delete(self, pk: str, sk: str) -> bool:
        cur = self._db.conn().execute("DELETE FROM records WHERE pk=? AND sk=?", (pk, sk))
        return cur.rowcount > 0

    @classmethod
    def at(cls, path: Path) -> SqliteRecords:
        return cls(SqliteDb(path))
