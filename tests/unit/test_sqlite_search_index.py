"""SqliteSearchIndex specifics beyond the port contract: persistence, self-healing of the
usearch files, concurrency, and the safe FTS5 query expression."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from usearch.index import Index

from pasture.adapters.local.sqlite_search_index import SqliteSearchIndex, fts_expression
from pasture.domain.errors import Conflict
from pasture.domain.search import IndexedChunk, RetrievalMode, SearchQuery

DIM = 16
T, DS = "acme", "kb"


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def chunks(prefix: str, vectors: np.ndarray, *, doc: str = "doc") -> list[IndexedChunk]:
    return [
        IndexedChunk(f"{prefix}{i}", T, DS, doc, f"{prefix} sentence {i} about topic{i}", v)
        for i, v in enumerate(vectors)
    ]


def vq(vector: np.ndarray, top_k: int = 1, **kw: object) -> SearchQuery:
    return SearchQuery(T, (DS,), "", vector, top_k=top_k, mode=RetrievalMode.VECTOR, **kw)  # type: ignore[arg-type]


class Paths:
    def __init__(self, root: Path) -> None:
        self.db = root / "index.db"
        self.vectors = root / "vectors"

    def open(self) -> SqliteSearchIndex:
        return SqliteSearchIndex(self.db, self.vectors, dimension=DIM)

    def index_files(self) -> list[Path]:
        return sorted(self.vectors.glob("*.usearch"))

    def file_keys(self) -> set[int]:
        """Row ids held by the (single) vector file."""
        (file,) = self.index_files()
        index = Index(ndim=DIM)
        index.load(str(file))
        return {int(k) for k in index.keys}

    def row_ids(self) -> set[int]:
        con = sqlite3.connect(self.db)
        try:
            return {r[0] for r in con.execute("SELECT id FROM chunks")}
        finally:
            con.close()


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1)


@pytest.fixture
def opened(paths: Paths) -> Iterator[list[SqliteSearchIndex]]:
    """Indexes opened by a test, closed at the end even when it fails."""
    made: list[SqliteSearchIndex] = []
    yield made
    for ix in made:
        ix.close()


def reopen(paths: Paths, opened: list[SqliteSearchIndex]) -> SqliteSearchIndex:
    opened.append(paths.open())
    return opened[-1]


def assert_finds_all(ix: SqliteSearchIndex, data: list[IndexedChunk]) -> None:
    for c in data:
        # Few candidates: a graph missing the chunk cannot be rescued by the exact fallback.
        hits = ix.query(vq(c.vector, candidates=3))
        assert [h.chunk_id for h in hits] == [c.chunk_id]
        assert hits[0].vector_score == pytest.approx(1.0, abs=1e-5)


def test_persists_across_close_and_reopen(
    paths: Paths, opened: list[SqliteSearchIndex], rng: np.random.Generator
) -> None:
    data = chunks("a", unit(rng, 50))
    ix = reopen(paths, opened)
    ix.upsert(data)
    ix.close()
    assert len(paths.index_files()) == 1
    ix = reopen(paths, opened)
    assert ix.count(T, DS) == 50
    assert_finds_all(ix, data)
    kw = SearchQuery(T, (DS,), "topic7", None, mode=RetrievalMode.KEYWORD)
    assert [h.chunk_id for h in ix.query(kw)] == ["a7"]


@pytest.mark.parametrize("damage", ["delete", "garbage", "truncate"])
def test_rebuilds_missing_or_unreadable_vector_file(
    paths: Paths, opened: list[SqliteSearchIndex], rng: np.random.Generator, damage: str
) -> None:
    data = chunks("a", unit(rng, 40))
    ix = reopen(paths, opened)
    ix.upsert(data)
    ix.close()
    (file,) = paths.index_files()
    if damage == "delete":
        file.unlink()
    elif damage == "garbage":
        file.write_bytes(b"not an index" * 100)
    else:
        file.write_bytes(file.read_bytes()[:200])
    ix = reopen(paths, opened)
    assert_finds_all(ix, data)
    assert paths.file_keys() == paths.row_ids()  # rebuilt and saved again


def test_heals_a_stale_vector_file_after_a_crash(
    paths: Paths, opened: list[SqliteSearchIndex], rng: np.random.Generator
) -> None:
    """A crash between the SQLite commit and the file save leaves an older file behind."""
    old = chunks("old", unit(rng, 30))
    ix = reopen(paths, opened)
    ix.upsert(old)
    ix.flush()
    (file,) = paths.index_files()
    backup = file.with_suffix(".bak")
    shutil.copy(file, backup)
    new = chunks("new", unit(rng, 30))
    replaced = chunks("old", unit(rng, 1))  # old0 gets a new vector
    ix.upsert(new + replaced)
    assert ix.delete_document(T, DS, "nothing") == 0
    ix.close()
    shutil.copy(backup, file)  # the save "never happened"
    assert paths.file_keys() != paths.row_ids()
    ix = reopen(paths, opened)
    assert_finds_all(ix, new + replaced + old[1:])
    assert paths.file_keys() == paths.row_ids()  # the healed graph was saved
    # The old vector of old0 is gone: it must not be found any more.
    hits = ix.query(vq(old[0].vector, top_k=60))
    assert next(h for h in hits if h.chunk_id == "old0").vector_score < 0.99


def test_heals_a_stale_file_of_the_same_size(
    paths: Paths, opened: list[SqliteSearchIndex], rng: np.random.Generator
) -> None:
    """A replace keeps the row count: only the keys reveal that the file is stale."""
    data = chunks("a", unit(rng, 20))
    ix = reopen(paths, opened)
    ix.upsert(data)
    ix.flush()
    (file,) = paths.index_files()
    backup = file.read_bytes()
    changed = chunks("a", unit(rng, 3))
    ix.upsert(changed)
    ix.close()
    file.write_bytes(backup)
    assert len(paths.file_keys()) == len(paths.row_ids())
    ix = reopen(paths, opened)
    assert_finds_all(ix, changed + data[3:])
    assert paths.file_keys() == paths.row_ids()


def test_stale_keys_never_leak_other_rows(
    paths: Paths, opened: list[SqliteSearchIndex], rng: np.random.Generator
) -> None:
    """Deleted rows in an in-memory graph are dropped when joined back to SQLite."""
    ix = reopen(paths, opened)
    data = chunks("a", unit(rng, 10))
    ix.upsert(data)
    # Delete behind the graph's back, through SQLite only.
    con = sqlite3.connect(paths.db)
    con.execute("DELETE FROM chunks WHERE chunk_id = 'a3'")
    con.commit()
    con.close()
    hits = ix.query(vq(data[3].vector, top_k=10))
    assert "a3" not in {h.chunk_id for h in hits}
    assert len(hits) == 9


def test_delete_dataset_removes_the_vector_file(
    paths: Paths, opened: list[SqliteSearchIndex], rng: np.random.Generator
) -> None:
    ix = reopen(paths, opened)
    ix.upsert(chunks("a", unit(rng, 5)))
    ix.flush()
    assert len(paths.index_files()) == 1
    assert ix.delete_dataset(T, DS) == 5
    assert paths.index_files() == []


def test_one_vector_file_per_partition(
    paths: Paths, opened: list[SqliteSearchIndex], rng: np.random.Generator
) -> None:
    ix = reopen(paths, opened)
    v = unit(rng, 1)[0]
    ix.upsert(
        [
            IndexedChunk("x1", "t1", "same", "d", "one", v),
            IndexedChunk("x2", "t2", "same", "d", "two", v),
            IndexedChunk("x3", "t1", "other", "d", "three", v),
        ]
    )
    ix.flush()
    assert len(paths.index_files()) == 3


def test_reopening_with_another_dimension_fails(
    paths: Paths, opened: list[SqliteSearchIndex]
) -> None:
    reopen(paths, opened).close()
    with pytest.raises(ValueError, match="16-dim"):
        SqliteSearchIndex(paths.db, paths.vectors, dimension=DIM * 2)


def test_wrong_vector_dimension_is_rejected(paths: Paths, opened: list[SqliteSearchIndex]) -> None:
    ix = reopen(paths, opened)
    with pytest.raises(ValueError):
        ix.upsert([IndexedChunk("x", T, DS, "d", "t", np.ones(3, dtype=np.float32))])
    with pytest.raises(ValueError):
        ix.query(vq(np.ones(3, dtype=np.float32)))
    assert ix.count(T, DS) == 0


def test_chunk_id_of_another_tenant_is_a_conflict(
    paths: Paths, opened: list[SqliteSearchIndex], rng: np.random.Generator
) -> None:
    ix = reopen(paths, opened)
    v = unit(rng, 2)
    ix.upsert([IndexedChunk("shared-id", "t1", DS, "d", "mine", v[0])])
    with pytest.raises(Conflict):
        ix.upsert([IndexedChunk("shared-id", "t2", DS, "d", "theirs", v[1])])
    hits = ix.query(SearchQuery("t1", (DS,), "mine", None))
    assert [(h.chunk_id, h.text) for h in hits] == [("shared-id", "mine")]
    assert ix.count("t2", DS) == 0


def test_chunk_can_move_between_datasets_of_its_tenant(
    paths: Paths, opened: list[SqliteSearchIndex], rng: np.random.Generator
) -> None:
    ix = reopen(paths, opened)
    v = unit(rng, 1)[0]
    ix.upsert([IndexedChunk("c", T, "one", "d", "text", v)])
    ix.upsert([IndexedChunk("c", T, "two", "d", "text", v)])
    assert (ix.count(T, "one"), ix.count(T, "two")) == (0, 1)
    assert ix.query(SearchQuery(T, ("one",), "", v, mode=RetrievalMode.VECTOR)) == []
    assert len(ix.query(SearchQuery(T, ("two",), "", v, mode=RetrievalMode.VECTOR))) == 1


def test_metadata_filter_types_are_strict(
    paths: Paths, opened: list[SqliteSearchIndex], rng: np.random.Generator
) -> None:
    ix = reopen(paths, opened)
    v = unit(rng, 4)
    ix.upsert(
        [
            IndexedChunk("bool", T, DS, "d", "x", v[0], {"f": True, "odd.key": "a"}),
            IndexedChunk("int", T, DS, "d", "x", v[1], {"f": 1, 'q"uote': "b"}),
            IndexedChunk("float", T, DS, "d", "x", v[2], {"f": 1.0}),
            IndexedChunk("str", T, DS, "d", "x", v[3], {"f": "1"}),
        ]
    )

    def found(value: object) -> set[str]:
        query = SearchQuery(T, (DS,), "x", v[0], top_k=10, metadata_filters={"f": value})  # type: ignore[dict-item]
        return {h.chunk_id for h in ix.query(query)}

    assert found(True) == {"bool"}
    assert found(1) == {"int", "float"}
    assert found(1.0) == {"int", "float"}
    assert found("1") == {"str"}
    assert found([True, "1"]) == {"bool", "str"}
    assert found([]) == set()
    q = SearchQuery(T, (DS,), "x", None, top_k=10, metadata_filters={"odd.key": "a"})
    assert {h.chunk_id for h in ix.query(q)} == {"bool"}
    q = SearchQuery(T, (DS,), "x", None, top_k=10, metadata_filters={'q"uote': "b"})
    assert {h.chunk_id for h in ix.query(q)} == {"int"}


def test_concurrent_upserts_and_queries(
    paths: Paths, opened: list[SqliteSearchIndex], rng: np.random.Generator
) -> None:
    ix = reopen(paths, opened)
    seed = chunks("seed", unit(rng, 50))
    ix.upsert(seed)
    batches = [chunks(f"b{b}-", unit(rng, 20), doc=f"d{b}") for b in range(30)]
    probes = unit(rng, 20)
    errors: list[BaseException] = []
    done = threading.Event()
    answered = [0]

    def writer() -> None:
        try:
            for i, batch in enumerate(batches):
                ix.upsert(batch)
                if i % 5 == 4:  # deletions race the readers too
                    ix.delete_document(T, DS, f"d{i - 1}")
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    def reader(mode: RetrievalMode) -> None:
        try:
            n = 0
            while not done.is_set() or n < 20:
                p = probes[n % len(probes)]
                hits = ix.query(SearchQuery(T, (DS,), "sentence topic3", p, top_k=5, mode=mode))
                # A hit deleted between its search and its load is skipped, so <= top_k.
                assert len(hits) <= 5
                answered[0] += bool(hits)
                assert all(h.chunk_id.startswith(("seed", "b")) for h in hits)
                n += 1
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(m,)) for m in RetrievalMode for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[0]
    assert answered[0] > 0
    deleted = {f"d{i - 1}" for i in range(len(batches)) if i % 5 == 4}
    kept = [c for b in batches for c in b if c.document_id not in deleted]
    assert ix.count(T, DS) == len(seed) + len(kept)
    assert_finds_all(ix, seed + kept)
    ix.close()
    assert paths.file_keys() == paths.row_ids()  # the file saved last is current
    assert_finds_all(reopen(paths, opened), seed + kept)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cats and dogs", '"cats" OR "dogs"'),
        ('"AND OR (', '"and" OR "or"'),  # only stop words: kept, but as quoted phrases
        ("NEAR(a b)", '"near" OR "b"'),
        ("col:value* ^x -y", '"col" OR "value" OR "x" OR "y"'),
        ("Cats CATS cats", '"cats"'),
        ("snake_case", '"snake" OR "case"'),
        ("(((", None),
        ("", None),
        ("🙂", None),
    ],
)
def test_fts_expression(text: str, expected: str | None) -> None:
    assert fts_expression(text) == expected


def test_fts_expression_bounds_the_number_of_terms() -> None:
    expr = fts_expression(" ".join(f"term{i}" for i in range(500)))
    assert expr is not None and expr.count(" OR ") == 31


def test_filtered_vector_search_widens_the_ann_before_scanning(
    paths: Paths,
    opened: list[SqliteSearchIndex],
    rng: np.random.Generator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A filter passing a tenth of the rows: the second, wider HNSW search finds enough, so
    no exact scan is needed, and the result matches brute force over the filtered rows."""
    ix = reopen(paths, opened)
    vectors = unit(rng, 3000)
    ix.upsert(
        [
            IndexedChunk(f"c{i}", T, DS, "d", "x", v, {"shard": i % 10})
            for i, v in enumerate(vectors)
        ]
    )

    def no_scan(*args: object) -> dict[str, float]:
        raise AssertionError("exact scan not expected")

    monkeypatch.setattr(ix, "_exact_vector", no_scan)
    probe = unit(rng, 1)[0]
    query = vq(probe, top_k=10, candidates=50, metadata_filters={"shard": 3})
    got = ix._vector_candidates(query, 50)
    admitted = np.arange(3, 3000, 10)
    exact = admitted[np.argsort(-(vectors[admitted] @ probe))[:50]]
    assert len(got) == 50
    assert len(set(got) & {f"c{i}" for i in exact}) >= 48  # ANN: near-exact


def test_writes_do_not_rewrite_the_vector_file_each_time(
    paths: Paths, opened: list[SqliteSearchIndex], rng: np.random.Generator
) -> None:
    """Files are saved by the flusher (or flush/close), not after every upsert."""
    ix = SqliteSearchIndex(paths.db, paths.vectors, dimension=DIM, flush_interval=3600)
    opened.append(ix)
    data = chunks("a", unit(rng, 5))
    ix.upsert(data)
    assert paths.index_files() == []  # nothing written yet, and queries still see the rows
    assert_finds_all(ix, data)
    ix.flush()
    assert paths.file_keys() == paths.row_ids()


def test_the_flusher_saves_in_the_background(
    paths: Paths, opened: list[SqliteSearchIndex], rng: np.random.Generator
) -> None:
    ix = SqliteSearchIndex(paths.db, paths.vectors, dimension=DIM, flush_interval=0.05)
    opened.append(ix)
    ix.upsert(chunks("a", unit(rng, 5)))
    deadline = time.time() + 5
    while not paths.index_files() and time.time() < deadline:
        time.sleep(0.02)
    assert paths.file_keys() == paths.row_ids()


def test_an_unflushed_crash_heals_on_reopen(
    paths: Paths, opened: list[SqliteSearchIndex], rng: np.random.Generator
) -> None:
    """Killed before any flush: the rows are in SQLite, the file is rebuilt from them."""
    ix = SqliteSearchIndex(paths.db, paths.vectors, dimension=DIM, flush_interval=3600)
    data = chunks("a", unit(rng, 12))
    ix.upsert(data)
    ix._stop.set()  # no close(): as if the process died
    ix = reopen(paths, opened)
    assert_finds_all(ix, data)


def test_delete_chunks_removes_their_vectors_from_graph_and_file(
    paths: Paths, opened: list[SqliteSearchIndex], rng: np.random.Generator
) -> None:
    data = chunks("a", unit(rng, 30))
    gone, kept = [data[3], data[7]], [c for c in data if c.chunk_id not in {"a3", "a7"}]
    ix = reopen(paths, opened)
    ix.upsert(data)
    ix.flush()
    assert ix.delete_chunks(T, DS, ["a3", "a7"]) == 2
    for c in gone:
        assert c.chunk_id not in {h.chunk_id for h in ix.query(vq(c.vector, top_k=30))}
    ix.flush()  # the graph lost the vectors, so its saved file holds just the rows left
    assert paths.file_keys() == paths.row_ids()
    assert len(paths.row_ids()) == 28
    ix.close()
    ix = reopen(paths, opened)
    assert_finds_all(ix, kept)
    for c in gone:
        hits = ix.query(vq(c.vector, top_k=30, candidates=3))
        assert c.chunk_id not in {h.chunk_id for h in hits}
    # Deleting the last chunks of a partition removes its file.
    assert ix.delete_chunks(T, DS, [c.chunk_id for c in kept]) == 28
    ix.flush()
    assert paths.index_files() == []
    assert ix.query(vq(data[0].vector, top_k=30)) == []


def test_delete_chunks_of_a_partition_not_loaded_yet(
    paths: Paths, opened: list[SqliteSearchIndex], rng: np.random.Generator
) -> None:
    data = chunks("a", unit(rng, 10))
    ix = reopen(paths, opened)
    ix.upsert(data)
    ix.close()
    ix = reopen(paths, opened)  # nothing loaded: the delete loads the graph first
    assert ix.delete_chunks(T, DS, ["a0"]) == 1
    assert "a0" not in {h.chunk_id for h in ix.query(vq(data[0].vector, top_k=10))}
    ix.flush()
    assert paths.file_keys() == paths.row_ids()
    assert_finds_all(ix, data[1:])


def test_list_chunks_keywords_use_full_unicode_case_folding(
    paths: Paths, opened: list[SqliteSearchIndex], rng: np.random.Generator
) -> None:
    ix = reopen(paths, opened)
    texts = ["Die Straße ist lang.", "ΣΟΦΙΑ und Ölpreis", "plain ascii"]
    v = unit(rng, 1)[0]
    ix.upsert([IndexedChunk(f"c{i}", T, DS, "doc", t, v) for i, t in enumerate(texts)])

    def found(keywords: str) -> list[str]:
        _, page = ix.list_chunks(T, DS, "doc", keywords=keywords, chunk_id=None, offset=0, limit=10)
        return [c.chunk_id for c in page]

    assert found("STRASSE") == ["c0"]  # casefold, not just lower(): ß folds to ss
    assert found("σοφια") == ["c1"]  # ASCII-only lower()/LIKE would miss both of these
    assert found("ölPREIS") == ["c1"]
    assert found("PLAIN") == ["c2"]
