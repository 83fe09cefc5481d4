"""SearchIndex on one SQLite database (rows + FTS5) and usearch HNSW files (vectors).

SQLite is the storage of record: every chunk row keeps its float32 vector, so the usearch
files are a cache that can always be rebuilt. One HNSW index exists per (tenant, dataset)
partition, keyed by the row's integer id. Row ids come from AUTOINCREMENT and are never
reused, so a stale index file can only name rows that no longer exist (dropped when joined
back to SQLite) - it can never point at somebody else's row.

Writes are serialised by one lock on one connection; reads use a connection per thread
(WAL lets them run beside a writer). Each partition has a readers-writer lock so searches
run in parallel while upserts mutate the graph exclusively.

Single writer process: another process writing the same database would not update this
process's in-memory graphs (they heal on the next load, not before).
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# onnxruntime must be loaded before usearch: with usearch's native module loaded first, a later
# `import onnxruntime` segfaults the process (usearch 2.26.6 + onnxruntime 1.31.1). Every process
# that has this index also embeds, so loading it here costs nothing extra.
import onnxruntime  # noqa: F401
from usearch.index import Index

from pasture.domain.errors import Conflict
from pasture.domain.search import FilterValue, IndexedChunk, Scalar, SearchQuery, Vector
from pasture.ports import SearchIndex

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chunk_id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    dataset_id TEXT NOT NULL,
    document_id TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    vector BLOB NOT NULL  -- last, so reading the other columns never touches its pages
);
CREATE INDEX IF NOT EXISTS chunks_scope ON chunks (tenant, dataset_id, document_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, content='chunks', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_au AFTER UPDATE OF text ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO chunks_fts (rowid, text) VALUES (new.id, new.text);
END;
"""

# Dropped from keyword queries: with OR semantics they would match (and rank) almost every
# row, which costs time and adds noise. Kept when a query has nothing else.
_STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    """.split()  # noqa: SIM905 - a word list reads better as text
)
# Letters and digits only: everything else (quotes, parentheses, `*`, `:`, `-`, `^`) is FTS5
# syntax or a separator for the unicode61 tokenizer anyway.
_TERM = re.compile(r"[^\W_]+")
log = logging.getLogger(__name__)

_MAX_TERMS = 32
_BATCH = 500  # rows per IN-list / executemany batch
# Document frequencies from this size up are cached (see `_document_frequency`).
_CACHED_DF = 500
# Largest neighbour list a filtered vector search asks HNSW for before scanning exactly.
_MAX_ANN = 5_000
# usearch 2.26's multi-threaded `add` now and then leaves a node no search can reach (seen
# with 60 vectors and with 5k: a stored vector stops finding itself); one thread never did.
_ADD_THREADS = 1


def query_terms(text: str) -> list[str]:
    """Distinct lower-cased terms of `text`, stop words dropped unless nothing else is left."""
    terms = [t.lower() for t in _TERM.findall(text)]
    kept = [t for t in terms if t not in _STOP_WORDS] or terms
    return list(dict.fromkeys(kept))[:_MAX_TERMS]


def fts_expression(terms: str | Sequence[str]) -> str | None:
    """A safe FTS5 query of `terms` (or of the terms of a text): each term quoted, so it can
    only be a phrase, never an operator or column filter; OR-ed for BM25 ranking. None when
    there is no term."""
    if isinstance(terms, str):
        terms = query_terms(terms)
    return " OR ".join(f'"{t}"' for t in terms) or None


class _RWLock:
    """Many readers or one writer; a waiting writer blocks new readers (no starvation)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclass
class _Partition:
    index: Index
    path: Path
    lock: _RWLock
    dirty: bool = False  # the graph has changes its file does not


def _batches(items: Sequence[Any], size: int = _BATCH) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _json_path(key: str) -> str | None:
    """SQLite JSON path of a top-level key; None when the key cannot be quoted in a path."""
    return None if '"' in key else f'$."{key}"'


def _scalar_predicate(col: str, key: str, value: Scalar) -> tuple[str, list[Any]]:
    """`metadata[key] == value`, type-aware: JSON true/false is stored as 1/0 by json_extract,
    so bools compare on json_type and numbers exclude bools (True must not match 1)."""
    types: tuple[str, ...]
    param: Scalar | None = value
    if isinstance(value, bool):
        types, param = ("true",) if value else ("false",), None
    elif isinstance(value, int | float):
        types = ("integer", "real")
    else:
        types, param = ("text",), str(value)
    type_list = ",".join(f"'{t}'" for t in types)
    path = _json_path(key)
    if path is None:  # rare odd key: match it through json_each, fully parameterised
        sql = (
            f"EXISTS (SELECT 1 FROM json_each({col}) je"
            f" WHERE je.key = ? AND je.type IN ({type_list})"
        )
        params: list[Any] = [key]
        if param is not None:
            sql += " AND je.atom = ?"
            params.append(param)
        return sql + ")", params
    sql = f"json_type({col}, ?) IN ({type_list})"
    params = [path]
    if param is not None:
        sql += f" AND json_extract({col}, ?) = ?"
        params += [path, param]
    return f"({sql})", params


def _filter_predicate(col: str, key: str, value: FilterValue) -> tuple[str, list[Any]]:
    values = list(value) if isinstance(value, list | tuple) else [value]
    if not values:
        return "0", []  # "any of nothing" matches nothing
    parts, params = [], []
    for v in values:
        sql, p = _scalar_predicate(col, key, v)
        parts.append(sql)
        params += p
    return "(" + " OR ".join(parts) + ")", params


def _scope(q: SearchQuery, datasets: Sequence[str], alias: str = "c") -> tuple[str, list[Any]]:
    """WHERE clauses for tenant, datasets, documents and metadata filters over `chunks`."""
    clauses = [f"{alias}.tenant = ?", f"{alias}.dataset_id IN (SELECT value FROM json_each(?))"]
    params: list[Any] = [q.tenant, json.dumps(list(datasets))]
    if q.document_ids:
        clauses.append(f"{alias}.document_id IN (SELECT value FROM json_each(?))")
        params.append(json.dumps(list(q.document_ids)))
    for key, value in q.metadata_filters.items():
        sql, p = _filter_predicate(f"{alias}.metadata", key, value)
        clauses.append(sql)
        params += p
    return " AND ".join(clauses), params


def _casefold(text: str | None) -> str | None:
    return None if text is None else text.casefold()


# A chunk's `chunk_index` when it is a number (JSON true/false, text and absent are NULL).
_CHUNK_INDEX = (
    "CASE WHEN json_type(c.metadata, '$.chunk_index') IN ('integer', 'real')"
    " THEN json_extract(c.metadata, '$.chunk_index') END"
)


def _cosine(matrix: np.ndarray, qv: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1)
    norms[norms == 0] = 1.0
    return (matrix @ qv) / norms


class SqliteSearchIndex(SearchIndex):
    """Local SearchIndex: SQLite + FTS5 for rows and BM25, usearch HNSW per partition."""

    def __init__(
        self,
        db_path: Path,
        vectors_dir: Path,
        *,
        dimension: int = 384,
        ef_search: int = 128,
        connectivity: int = 16,
        expansion_add: int = 64,
        oversample: int = 4,
        keyword_budget: int | None = 10_000,
        flush_interval: float = 2.0,
    ) -> None:
        self.dimension = dimension
        self._db_path = Path(db_path)
        self._vectors_dir = Path(vectors_dir)
        self._ef_search = ef_search
        self._connectivity = connectivity
        self._expansion_add = expansion_add
        # Filtered ANN asks for oversample * k neighbours before filtering in SQLite.
        self._oversample = oversample
        # FTS5 computes bm25 (and a docsize lookup) for every row an expression matches, about
        # 1 us each: a query of common words matches half the corpus. So the expression keeps
        # the query's rarest terms while their summed document frequencies fit this budget
        # (at least one term), i.e. too-common terms become stop words for this corpus.
        # None: every term, exact BM25 of the whole query.
        self._keyword_budget = keyword_budget
        self._df_cache: dict[str, int] = {}
        self._df_cache_rows = 0
        self._db_path.parent.mkdir(parents=True, exist_ok=True)
        self._vectors_dir.mkdir(parents=True, exist_ok=True)

        self._write_lock = threading.RLock()  # writes and partition loads
        self._partitions: dict[tuple[str, str], _Partition] = {}
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        # Graph files are saved by a background flusher, not after every write: rewriting a
        # 100k-vector file per document made ingestion quadratic. SQLite keeps every vector,
        # so a crash before a flush only means the file is rebuilt when next loaded.
        self._flush_interval = flush_interval
        self._stop = threading.Event()
        self._flusher = threading.Thread(
            target=self._flush_loop, name="pasture-index-flush", daemon=True
        )

        self._conn = self._connect()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)
        self._rows = self._conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        stored = self._conn.execute("SELECT value FROM meta WHERE key = 'dimension'").fetchone()
        if stored is None:
            self._conn.execute("INSERT INTO meta VALUES ('dimension', ?)", (str(dimension),))
        elif int(stored[0]) != dimension:
            self._conn.close()
            raise ValueError(f"{db_path} holds {stored[0]}-dim vectors, not {dimension}")
        self._flusher.start()

    # ------------------------------------------------------------------ connections

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE) on the write path.
        conn = sqlite3.connect(self._db_path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA synchronous=NORMAL")  # durable across app crashes in WAL mode
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA busy_timeout=10000")
        # Unicode-aware case folding for `list_chunks(keywords=...)`: SQLite's own lower() and
        # LIKE fold ASCII only (without the ICU extension).
        conn.create_function("pasture_casefold", 1, _casefold, deterministic=True)
        return conn

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("SqliteSearchIndex is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def flush(self) -> None:
        """Save every partition whose graph changed since its file was written."""
        with self._write_lock:
            parts = [p for p in self._partitions.values() if p.dirty]
        for part in parts:
            with part.lock.read():  # saving only reads the graph: searches may go on
                if not part.dirty:
                    continue
                part.dirty = False
                if len(part.index):
                    self._save(part.index, part.path)
                else:
                    part.path.unlink(missing_ok=True)

    def _flush_loop(self) -> None:
        while not self._stop.wait(self._flush_interval):
            try:
                self.flush()
            except Exception:  # a failed save is retried next round; the rows are safe
                log.exception("saving vector index files failed")

    def close(self) -> None:
        self._stop.set()
        if self._flusher.is_alive() and self._flusher is not threading.current_thread():
            self._flusher.join()
        with self._write_lock:
            self.flush()
            self._closed = True
            with self._readers_lock:
                for conn in self._readers:
                    conn.close()
                self._readers.clear()
            self._partitions.clear()
            self._conn.close()

    # ------------------------------------------------------------------ usearch partitions

    def _new_index(self) -> Index:
        return Index(
            ndim=self.dimension,
            metric="cos",
            dtype="f32",
            connectivity=self._connectivity,
            expansion_add=self._expansion_add,
            expansion_search=self._ef_search,
        )

    def _index_path(self, tenant: str, dataset_id: str) -> Path:
        digest = hashlib.sha256(f"{tenant}\x00{dataset_id}".encode()).hexdigest()[:40]
        return self._vectors_dir / f"{digest}.usearch"

    def _partition(self, tenant: str, dataset_id: str, *, create: bool) -> _Partition | None:
        """The loaded partition; None for an empty one when not `create` (not cached, so
        queries naming unknown datasets cost no memory)."""
        key = (tenant, dataset_id)
        part = self._partitions.get(key)
        if part is not None:
            return part
        if not create:
            n = (
                self._reader()
                .execute("SELECT COUNT(*) FROM chunks WHERE tenant = ? AND dataset_id = ?", key)
                .fetchone()[0]
            )
            if n == 0:
                return None
        with self._write_lock:  # nothing commits while we compare file and table
            part = self._partitions.get(key)
            if part is None:
                part = self._load_partition(tenant, dataset_id)
                self._partitions[key] = part
            return part

    def _load_partition(self, tenant: str, dataset_id: str) -> _Partition:
        """Load the index file if it holds exactly the partition's rows, else rebuild it from
        SQLite (missing, unreadable, wrong dimension, or stale after a crash between the
        SQLite commit and the file save)."""
        path = self._index_path(tenant, dataset_id)
        ids = np.fromiter(
            (
                r[0]
                for r in self._conn.execute(
                    "SELECT id FROM chunks WHERE tenant = ? AND dataset_id = ? ORDER BY id",
                    (tenant, dataset_id),
                )
            ),
            dtype=np.uint64,
        )
        index: Index | None = None
        if path.exists():
            candidate = self._new_index()
            try:
                candidate.load(str(path))
                keys = np.sort(np.asarray(candidate.keys, dtype=np.uint64))
                if candidate.ndim == self.dimension and np.array_equal(keys, ids):
                    index = candidate
            except Exception:  # any unreadable file is just a cache miss
                index = None
        if index is None:
            index = self._new_index()
            if len(ids):
                self._add_from_sqlite(index, tenant, dataset_id)
                self._save(index, path)
            else:
                path.unlink(missing_ok=True)
        # A loaded file brings its own search expansion; ours wins. (The setter exists, but
        # is declared apart from the getter, which hides it from type checkers.)
        index.expansion_search = self._ef_search  # type: ignore[misc]
        return _Partition(index=index, path=path, lock=_RWLock())

    def _add_from_sqlite(self, index: Index, tenant: str, dataset_id: str) -> None:
        cur = self._conn.execute(
            "SELECT id, vector FROM chunks WHERE tenant = ? AND dataset_id = ?",
            (tenant, dataset_id),
        )
        while rows := cur.fetchmany(20_000):
            keys = np.fromiter((r[0] for r in rows), dtype=np.uint64, count=len(rows))
            vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
            index.add(keys, vectors.reshape(len(rows), self.dimension), threads=_ADD_THREADS)

    @staticmethod
    def _save(index: Index, path: Path) -> None:
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        index.save(str(tmp))
        os.replace(tmp, path)  # readers of the file see the old or the new index, never half

    # ------------------------------------------------------------------ writes

    def upsert(self, chunks: Sequence[IndexedChunk]) -> None:
        latest = {c.chunk_id: c for c in chunks}  # last one wins within a batch
        if not latest:
            return
        rows = []
        for c in latest.values():
            vec = np.ascontiguousarray(np.asarray(c.vector, dtype=np.float32).reshape(-1))
            if vec.shape[0] != self.dimension:
                raise ValueError(
                    f"chunk {c.chunk_id}: {vec.shape[0]}-dim vector, index is {self.dimension}"
                )
            rows.append((c, vec))
        with self._write_lock:
            conn = self._conn
            old: list[tuple[int, str, str, str]] = []
            for batch in _batches(list(latest)):
                old += conn.execute(
                    "SELECT id, chunk_id, tenant, dataset_id FROM chunks"
                    " WHERE chunk_id IN (SELECT value FROM json_each(?))",
                    (json.dumps(list(batch)),),
                ).fetchall()
            for _, cid, tenant, _ds in old:
                if tenant != latest[cid].tenant:
                    # chunk_id is globally unique; a replace must never reach another tenant.
                    raise Conflict(f"chunk id {cid!r} belongs to another tenant")
            removed: dict[tuple[str, str], list[int]] = {}
            for rid, _, tenant, ds in old:
                removed.setdefault((tenant, ds), []).append(rid)
            touched = removed.keys() | {(c.tenant, c.dataset_id) for c, _ in rows}
            # Load graphs before the commit, while their files still match the table (loading
            # after it would see a stale file and rebuild the whole partition).
            for key in touched:
                self._partition(*key, create=True)

            conn.execute("BEGIN IMMEDIATE")
            try:
                for batch in _batches(old):
                    conn.execute(
                        "DELETE FROM chunks WHERE id IN (SELECT value FROM json_each(?))",
                        (json.dumps([r[0] for r in batch]),),
                    )
                # Assign ids here (AUTOINCREMENT semantics: never reused) so vectors can be
                # keyed without reading the rows back.
                seq = conn.execute(
                    "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence"
                    " WHERE name = 'chunks'), 0), COALESCE((SELECT MAX(id) FROM chunks), 0))"
                ).fetchone()[0]
                new_ids = range(seq + 1, seq + 1 + len(rows))
                conn.executemany(
                    "INSERT INTO chunks (id, chunk_id, tenant, dataset_id, document_id, text,"
                    " metadata, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        (
                            rid,
                            c.chunk_id,
                            c.tenant,
                            c.dataset_id,
                            c.document_id,
                            c.text,
                            json.dumps(dict(c.metadata)),
                            vec.tobytes(),
                        )
                        for rid, (c, vec) in zip(new_ids, rows, strict=True)
                    ),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._rows += len(rows) - len(old)

            # SQLite is committed; bring the graphs in line (a crash here heals on next load).
            added: dict[tuple[str, str], tuple[list[int], list[np.ndarray]]] = {}
            for rid, (c, vec) in zip(new_ids, rows, strict=True):
                keys, vecs = added.setdefault((c.tenant, c.dataset_id), ([], []))
                keys.append(rid)
                vecs.append(vec)
            for key in touched:
                self._apply(key, removed.get(key, []), added.get(key))

    def _apply(
        self,
        key: tuple[str, str],
        remove: list[int],
        add: tuple[list[int], list[np.ndarray]] | None,
    ) -> None:
        """Mutate one loaded partition's graph (saved later by the flusher); caller holds the
        write lock."""
        part = self._partitions[key]
        with part.lock.write():
            if remove:
                part.index.remove(np.asarray(remove, dtype=np.uint64))
            if add:
                part.index.add(
                    np.asarray(add[0], dtype=np.uint64), np.stack(add[1]), threads=_ADD_THREADS
                )
            part.dirty = True

    def delete_document(self, tenant: str, dataset_id: str, document_id: str) -> int:
        with self._write_lock:
            if self._partition(tenant, dataset_id, create=False) is None:
                return 0
            ids = self._delete(
                "tenant = ? AND dataset_id = ? AND document_id = ?",
                (tenant, dataset_id, document_id),
            )
            if ids:
                self._apply((tenant, dataset_id), ids, None)
            return len(ids)

    def delete_dataset(self, tenant: str, dataset_id: str) -> int:
        with self._write_lock:
            ids = self._delete("tenant = ? AND dataset_id = ?", (tenant, dataset_id))
            # The whole graph goes: no need to load it just to empty it.
            self._partitions.pop((tenant, dataset_id), None)
            self._index_path(tenant, dataset_id).unlink(missing_ok=True)
            return len(ids)

    def _delete(self, where: str, params: tuple[str, ...]) -> list[int]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            ids = [r[0] for r in conn.execute(f"SELECT id FROM chunks WHERE {where}", params)]
            conn.execute(f"DELETE FROM chunks WHERE {where}", params)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._rows -= len(ids)
        return ids

    def delete_chunks(self, tenant: str, dataset_id: str, chunk_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(chunk_ids))
        if not ids:
            return 0
        with self._write_lock:
            # Like delete_document: the graph is loaded before the commit (while its file still
            # matches the table), then loses the removed rows' vectors.
            if self._partition(tenant, dataset_id, create=False) is None:
                return 0
            # Driven from the id list by row id: `chunk_id IN (...)` beside the tenant and
            # dataset equalities may make the planner scan the whole partition instead.
            rowids = self._delete(
                "id IN (SELECT c.id FROM json_each(?) j CROSS JOIN chunks c"
                " ON c.chunk_id = j.value WHERE c.tenant = ? AND c.dataset_id = ?)",
                (json.dumps(ids), tenant, dataset_id),
            )
            if rowids:
                self._apply((tenant, dataset_id), rowids, None)
            return len(rowids)

    def count(self, tenant: str, dataset_id: str) -> int:
        return int(
            self._reader()
            .execute(
                "SELECT COUNT(*) FROM chunks WHERE tenant = ? AND dataset_id = ?",
                (tenant, dataset_id),
            )
            .fetchone()[0]
        )

    # ------------------------------------------------------------------ chunk reads

    def list_chunks(
        self,
        tenant: str,
        dataset_id: str,
        document_id: str,
        *,
        keywords: str | None,
        chunk_id: str | None,
        offset: int,
        limit: int,
    ) -> tuple[int, list[IndexedChunk]]:
        """Keywords match as a plain substring of the Unicode case-folded text (`str.casefold`
        on both sides, through `instr`, so no character is a wildcard: nothing to escape).
        Insertion order is the row id, which an upsert renews: an edited chunk without a
        `chunk_index` moves to the end of those without one."""
        if offset < 0 or limit < 0:
            raise ValueError(f"offset and limit must not be negative ({offset}, {limit})")
        where = "c.tenant = ? AND c.dataset_id = ? AND c.document_id = ?"
        params: list[Any] = [tenant, dataset_id, document_id]
        if chunk_id is not None:
            where += " AND c.chunk_id = ?"
            params.append(chunk_id)
        if keywords:
            where += " AND instr(pasture_casefold(c.text), ?) > 0"
            params.append(keywords.casefold())
        conn = self._reader()
        conn.execute("BEGIN")  # one snapshot for the total and the page
        try:
            total = int(
                conn.execute(f"SELECT COUNT(*) FROM chunks c WHERE {where}", params).fetchone()[0]
            )
            rows = (
                conn.execute(
                    "SELECT c.chunk_id, c.text, c.metadata, "
                    f"{_CHUNK_INDEX} AS ci FROM chunks c WHERE {where}"
                    " ORDER BY ci IS NULL, ci, CASE WHEN ci IS NULL THEN c.id END, c.chunk_id"
                    " LIMIT ? OFFSET ?",
                    [*params, limit, offset],
                ).fetchall()
                if limit and offset < total
                else []
            )
        finally:
            conn.execute("COMMIT")
        empty: Vector = np.zeros((0,), dtype=np.float32)
        return total, [
            IndexedChunk(cid, tenant, dataset_id, document_id, text, empty, json.loads(meta))
            for cid, text, meta, _ in rows
        ]

    def get_chunks(
        self, tenant: str, dataset_id: str, chunk_ids: Sequence[str]
    ) -> dict[str, IndexedChunk]:
        conn = self._reader()
        out: dict[str, IndexedChunk] = {}
        for batch in _batches(list(dict.fromkeys(chunk_ids))):
            for cid, doc, text, meta, blob in conn.execute(
                "SELECT c.chunk_id, c.document_id, c.text, c.metadata, c.vector"
                " FROM json_each(?) j CROSS JOIN chunks c ON c.chunk_id = j.value"
                " WHERE c.tenant = ? AND c.dataset_id = ?",
                (json.dumps(list(batch)), tenant, dataset_id),
            ):
                vector: Vector = np.frombuffer(blob, dtype=np.float32).copy()
                out[cid] = IndexedChunk(
                    cid, tenant, dataset_id, doc, text, vector, json.loads(meta)
                )
        return out

    # ------------------------------------------------------------------ query primitives

    def _expression(self, text: str) -> str | None:
        """The FTS5 expression for a query text: its rarest terms within the keyword budget."""
        terms = query_terms(text)
        if self._keyword_budget is None or not terms:
            return fts_expression(terms)
        dfs = {t: self._document_frequency(t) for t in terms}
        live = sorted((t for t in terms if dfs[t]), key=lambda t: (dfs[t], t))
        # FTS5 clamps the IDF of a term in over half the rows to ~0: it only costs time.
        informative = [t for t in live if dfs[t] <= self._rows / 2] or live[:1]
        kept: list[str] = []
        postings = 0
        for t in informative:
            if kept and postings + dfs[t] > self._keyword_budget:
                break
            kept.append(t)
            postings += dfs[t]
        return fts_expression(kept)

    def _document_frequency(self, term: str) -> int:
        """Rows (all tenants, like FTS5's own IDF) holding `term`. Only common terms are cached
        (counting them costs ~1 ms; a stale figure only shifts which terms are kept), until
        the table has grown or shrunk by a tenth. Rare ones are counted afresh each time: they
        are cheap, and a cached 0 would hide a term's first chunks from keyword search."""
        rows = self._rows
        if abs(rows - self._df_cache_rows) > rows / 10 or len(self._df_cache) > 100_000:
            self._df_cache = {}
            self._df_cache_rows = rows
        df = self._df_cache.get(term)
        if df is None:
            df = (
                self._reader()
                .execute("SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (f'"{term}"',))
                .fetchone()[0]
            )
            if df >= _CACHED_DF:
                self._df_cache[term] = df
        return int(df)

    def _keyword_candidates(self, q: SearchQuery, k: int) -> dict[str, float]:
        expr = self._expression(q.text)
        if expr is None or k <= 0:
            return {}
        where, params = _scope(q, q.dataset_ids)
        # CROSS JOIN keeps FTS5 as the outer loop, where it consumes ORDER BY rank: it sorts
        # its matches itself and the join stops after k rows pass the scope filter.
        sql = (
            "SELECT c.chunk_id, -chunks_fts.rank FROM chunks_fts"
            " CROSS JOIN chunks c ON c.id = chunks_fts.rowid"
            f" WHERE chunks_fts MATCH ? AND {where} ORDER BY chunks_fts.rank LIMIT ?"
        )
        rows = self._reader().execute(sql, [expr, *params, k]).fetchall()
        return {cid: float(s) for cid, s in rows}

    def _keyword_scores(self, q: SearchQuery, chunk_ids: Iterable[str]) -> dict[str, float]:
        rowids = self._resolve(q, chunk_ids)
        expr = self._expression(q.text)
        out = dict.fromkeys(rowids.values(), 0.0)
        if expr is None or not rowids:
            return out
        # One pass over the matches; `+rowid` stops SQLite from handing the IN list to FTS5,
        # which would re-run the whole MATCH once per rowid (~1 ms each at 100k rows). bm25
        # (rank) is only computed for the rows that pass the IN test.
        conn = self._reader()
        for batch in _batches(list(rowids)):
            for rid, score in conn.execute(
                "SELECT rowid, -rank FROM chunks_fts"
                " WHERE chunks_fts MATCH ? AND +rowid IN (SELECT value FROM json_each(?))",
                (expr, json.dumps(list(batch))),
            ):
                out[rowids[rid]] = float(score)
        return out

    def _resolve(self, q: SearchQuery, chunk_ids: Iterable[str]) -> dict[int, str]:
        """Row id -> chunk id of those chunks that lie within the query's scope."""
        rows = self._scoped_rows(q, q.dataset_ids, "chunk_id", chunk_ids, "c.id, c.chunk_id")
        return dict(rows)

    def _scoped_rows(
        self,
        q: SearchQuery,
        datasets: Sequence[str],
        key: str,
        keys: Iterable[str | int],
        columns: str,
    ) -> list[Any]:
        """`columns` of the rows whose `key` column (chunk_id or id) is in `keys` and which lie
        in the query's scope. Driven from the key list (CROSS JOIN): left to itself the planner
        prefers the (tenant, dataset) index and scans the whole partition."""
        where, params = _scope(q, datasets)
        conn = self._reader()
        out: list[Any] = []
        for batch in _batches(list(dict.fromkeys(keys))):
            out += conn.execute(
                f"SELECT {columns} FROM json_each(?) j CROSS JOIN chunks c ON c.{key} = j.value"
                f" WHERE {where}",
                [json.dumps(list(batch)), *params],
            ).fetchall()
        return out

    def _query_vector(self, q: SearchQuery) -> np.ndarray | None:
        if q.vector is None:
            return None
        qv = np.asarray(q.vector, dtype=np.float32).reshape(-1)
        if qv.shape[0] != self.dimension:
            raise ValueError(f"{qv.shape[0]}-dim query vector, index is {self.dimension}")
        norm = float(np.linalg.norm(qv))
        return qv / norm if norm > 0 else qv

    def _vector_candidates(self, q: SearchQuery, k: int) -> dict[str, float]:
        qv = self._query_vector(q)
        if qv is None or k <= 0:
            return {}
        filtered = bool(q.document_ids or q.metadata_filters)
        merged: dict[str, float] = {}
        for ds in dict.fromkeys(q.dataset_ids):
            part = self._partition(q.tenant, ds, create=False)
            if part is None:
                continue
            found, complete = self._ann(q, ds, part, qv, k, filtered)
            if not complete:
                # The filter admits few of the neighbours (or the graph came up short):
                # exact search over just the rows the filter admits.
                found = self._exact_vector(q, ds, qv, k)
            merged.update(found)
        return dict(heapq.nlargest(k, merged.items(), key=lambda kv: kv[1]))

    def _ann(
        self, q: SearchQuery, ds: str, part: _Partition, qv: np.ndarray, k: int, filtered: bool
    ) -> tuple[dict[str, float], bool]:
        """HNSW neighbours of `qv` in one partition that pass the query's filters, and whether
        they can stand for the top k. With a filter, ask for `oversample` x k neighbours and,
        when too few pass, once more for as many as the observed pass rate needs."""
        want = max(k * self._oversample, k + 32) if filtered else k
        while True:
            with part.lock.read():
                size = len(part.index)
                want = min(want, size)
                matches = part.index.search(qv, want) if want else None
            found: dict[str, float] = {}
            if matches is not None and len(matches.keys):
                sims = {
                    int(key): 1.0 - float(d)
                    for key, d in zip(matches.keys, matches.distances, strict=True)
                }
                # Back through SQLite: applies the filters exactly and drops stale keys.
                rows = self._scoped_rows(q, (ds,), "id", sims, "c.id, c.chunk_id")
                found = {cid: sims[rid] for rid, cid in rows}
            if len(found) >= k or (not filtered and len(found) == size):
                return found, True
            if not filtered or not found or want >= size:
                return found, False
            need = int(want * k / len(found) * 1.5)
            if need > _MAX_ANN or need <= want:
                return found, False
            want = need

    def _exact_vector(self, q: SearchQuery, ds: str, qv: np.ndarray, k: int) -> dict[str, float]:
        """Brute-force cosine over the rows of `ds` that pass the query's filters."""
        where, params = _scope(q, (ds,))
        cur = self._reader().execute(
            f"SELECT c.chunk_id, c.vector FROM chunks c WHERE {where}", params
        )
        ids: list[str] = []
        sims: list[np.ndarray] = []
        while rows := cur.fetchmany(20_000):
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
            s = _cosine(matrix.reshape(len(rows), self.dimension), qv)
            keep = np.argpartition(-s, k - 1)[:k] if len(rows) > k else np.arange(len(rows))
            ids += [rows[i][0] for i in keep]
            sims.append(s[keep])
        if not ids:
            return {}
        all_sims = np.concatenate(sims)
        top = np.argsort(-all_sims, kind="stable")[:k]
        return {ids[i]: float(all_sims[i]) for i in top}

    def _vector_scores(self, q: SearchQuery, chunk_ids: Iterable[str]) -> dict[str, float]:
        qv = self._query_vector(q)
        ids = list(dict.fromkeys(chunk_ids))
        if qv is None or not ids:
            return {}
        rows = self._scoped_rows(q, q.dataset_ids, "chunk_id", ids, "c.chunk_id, c.vector")
        if not rows:
            return {}
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
        sims = _cosine(matrix.reshape(len(rows), self.dimension), qv)
        return {r[0]: float(s) for r, s in zip(rows, sims, strict=True)}

    def _load(self, q: SearchQuery, chunk_ids: Iterable[str]) -> dict[str, IndexedChunk]:
        ids = list(dict.fromkeys(chunk_ids))
        datasets = set(q.dataset_ids)
        out: dict[str, IndexedChunk] = {}
        conn = self._reader()
        empty: Vector = np.empty(0, dtype=np.float32)
        for batch in _batches(ids):
            for cid, tenant, ds, doc, text, meta in conn.execute(
                "SELECT c.chunk_id, c.tenant, c.dataset_id, c.document_id, c.text, c.metadata"
                " FROM json_each(?) j CROSS JOIN chunks c ON c.chunk_id = j.value",
                (json.dumps(list(batch)),),
            ):
                if tenant != q.tenant or ds not in datasets:
                    continue  # defence in depth: candidates were already scoped
                metadata: Mapping[str, Scalar] = json.loads(meta)
                out[cid] = IndexedChunk(cid, tenant, ds, doc, text, empty, metadata)
        return out
