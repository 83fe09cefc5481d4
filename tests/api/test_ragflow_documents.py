"""RAGFlow documents, parsing and chunks over raw HTTP, plural paths and the singular draft's.

Parsing runs on the app's real worker (one thread) and embedder. Where a test must see a
document while it is still RUNNING, `held_worker` makes the worker wait inside its embedding
step until the test lets it go, so "RUNNING", "stopped while queued" and "stopped mid-batch"
are deterministic rather than races against a fast parser.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers.ragflow import (
    CANT_STOP,
    CHUNK_METHODS,
    RF,
    assert_chunk,
    assert_document,
    error_of,
    name,
    unknown_dataset_id,
)

TEXT_A = b"Alpacas are kept for their soft fleece.\n\nThey hum when they are curious.\n"
TEXT_B = b"The red barn has six stalls and a hayloft.\n"
UNKNOWN_DOC = "0" * 64
UNKNOWN_CHUNK = "0" * 32


@pytest.fixture
def a(client: TestClient, api_keys: dict[str, str]) -> RF:
    return RF(client, api_keys["alice"])


@pytest.fixture
def b(client: TestClient, api_keys: dict[str, str]) -> RF:
    return RF(client, api_keys["bob"])


@pytest.fixture
def ds(a: RF) -> str:
    ds_id: str = a.create_dataset(name("docs"))["id"]
    return ds_id


class Gate:
    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def wait_entered(self) -> None:
        assert self.entered.wait(20), "the worker never reached its embedding step"


@pytest.fixture
def held_worker(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`with held_worker() as gate:` the ingestion worker blocks before embedding until the
    block ends (or `gate.release.set()`); requests embedding on their own thread pass."""
    container = client.app.state.container  # type: ignore[attr-defined]
    assert container.settings.ingest_workers == 1  # runs are handled one at a time, in order
    embedder = container.embedder
    real = embedder.embed
    gates: list[Gate] = []

    def gated(texts: Any) -> Any:
        if threading.current_thread().name.startswith("pasture-worker") and gates:
            gate = gates[-1]
            gate.entered.set()
            if not gate.release.wait(30):
                raise RuntimeError("the test never released the worker")
        return real(texts)

    monkeypatch.setattr(embedder, "embed", gated)

    @contextmanager
    def hold() -> Iterator[Gate]:
        gate = Gate()
        gates.append(gate)
        try:
            yield gate
        finally:
            gate.release.set()
            gates.remove(gate)

    yield hold
    for g in gates:
        g.release.set()


def runs(a: RF, ds: str) -> dict[str, str]:
    return {d["name"]: d["run"] for d in a.documents(ds)["docs"]}


# ---------------------------------------------------------------------- upload


def test_upload_several_files_in_one_request(a: RF, ds: str) -> None:
    docs = a.upload(ds, ("a.txt", TEXT_A), ("b.md", TEXT_B), ("c.pdf", b"%PDF-1.4 not parsed yet"))
    assert [d["name"] for d in docs] == ["a.txt", "b.md", "c.pdf"]
    for d, data in zip(docs, (TEXT_A, TEXT_B, b"%PDF-1.4 not parsed yet"), strict=True):
        assert_document(d)
        assert (d["run"], d["progress"], d["chunk_count"], d["token_count"]) == (
            "UNSTART",
            0.0,
            0,
            0,
        )
        assert (d["dataset_id"], d["size"], d["chunk_method"]) == (ds, len(data), "naive")
        assert d["process_begin_at"] is None
    assert [d["type"] for d in docs] == ["doc", "doc", "pdf"]
    assert a.dataset(ds)["document_count"] == 3
    listed = {d["id"]: d for d in a.documents(ds)["docs"]}
    for d in docs:
        assert {k: listed[d["id"]][k] for k in d} == d


def test_upload_takes_the_datasets_chunk_method(a: RF) -> None:
    ds = a.create_dataset(name("method"), chunk_method="one")["id"]
    (doc,) = a.upload(ds, ("a.txt", TEXT_A))
    assert (doc["chunk_method"], doc["parser_config"]) == ("one", {})


def test_upload_refusals(client: TestClient, a: RF, ds: str) -> None:
    path = f"/datasets/{ds}/documents"
    assert a.err("POST", path) == (102, "No file part!")
    assert a.err("POST", path, json={"file": "a.txt"}) == (102, "No file part!")
    assert a.err("POST", path, data={"file": "not a file"}) == (102, "No file part!")
    assert a.err("POST", path, files=[("other", ("a.txt", b"x"))]) == (102, "No file part!")
    code, message = a.err("POST", path, files=[("file", ("tool.exe", b"MZ"))])
    assert message.startswith("This type of file has not been supported yet!"), message
    # One unsupported file in a batch: nothing of the batch is kept.
    code, message = a.err(
        "POST", path, files=[("file", ("ok.txt", b"fine")), ("file", ("bad.zip", b"PK"))]
    )
    assert code == 102 and "bad.zip" in message
    assert a.documents(ds)["total"] == 0
    unknown = unknown_dataset_id()
    assert a.err("POST", f"/datasets/{unknown}/documents", files=[("file", ("a.txt", b"x"))]) == (
        102,
        f"You don't own the dataset {unknown}.",
    )


def test_same_name_new_content_is_renamed_same_bytes_is_the_same_document(a: RF, ds: str) -> None:
    (first,) = a.upload(ds, ("a.txt", b"version one"))
    (second,) = a.upload(ds, ("a.txt", b"version two"))
    (third,) = a.upload(ds, ("a.txt", b"version three"))
    assert (second["name"], third["name"]) == ("a(1).txt", "a(2).txt")
    assert len({first["id"], second["id"], third["id"]}) == 3
    # The same bytes again (under any name) are the same document: no new one.
    (again,) = a.upload(ds, ("a.txt", b"version one"))
    (renamed,) = a.upload(ds, ("other.txt", b"version two"))
    assert (again["id"], again["name"]) == (first["id"], "a.txt")
    assert (renamed["id"], renamed["name"]) == (second["id"], "a(1).txt")
    # Two same-named files in one request.
    x, y = a.upload(ds, ("b.txt", b"bee one"), ("b.txt", b"bee two"))
    assert (x["name"], y["name"]) == ("b.txt", "b(1).txt")
    assert a.documents(ds)["total"] == 5


def test_download_returns_the_bytes(client: TestClient, a: RF, ds: str) -> None:
    data = "Grüße aus dem Stall.\n".encode()
    (doc,) = a.upload(ds, ("notes ü.txt", data))
    for path in (f"/datasets/{ds}/documents/{doc['id']}", f"/dataset/{ds}/document/{doc['id']}"):
        r = a.req("GET", path)
        assert r.status_code == 200
        assert r.content == data
        assert r.headers["content-type"].startswith("text/plain")
        assert r.headers["content-length"] == str(len(data))
        cd = r.headers["content-disposition"]
        assert cd.startswith("attachment;") and "notes%20%C3%BC.txt" in cd, cd
    # Failures are RAGFlow envelopes, not files.
    assert a.err("GET", f"/datasets/{ds}/documents/{UNKNOWN_DOC}") == (
        102,
        f"The dataset not own the document {UNKNOWN_DOC}.",
    )
    other = a.create_dataset(name("other"))["id"]
    assert a.err("GET", f"/datasets/{other}/documents/{doc['id']}")[0] == 102


# ---------------------------------------------------------------------- list, update, delete


def test_list_documents_filters_and_paging(a: RF, ds: str) -> None:
    names = ["Report_2024.txt", "report-draft.md", "notes.txt", "Summary.txt"]
    docs = a.upload(ds, *((n, f"content of {n}".encode()) for n in names))
    ids = [d["id"] for d in docs]
    listing = a.documents(ds)
    assert listing["total"] == 4 and set(listing) == {"total", "docs"}
    assert [d["id"] for d in listing["docs"]] == ids[::-1]  # newest first
    assert [d["id"] for d in a.documents(ds, desc="False")["docs"]] == ids
    assert [d["id"] for d in a.documents(ds, desc="false", orderby="create_time")["docs"]] == ids

    page = a.documents(ds, page=2, page_size=3, desc="false")
    assert page["total"] == 4 and [d["id"] for d in page["docs"]] == ids[3:]
    assert a.documents(ds, page=3, page_size=3)["docs"] == []

    # keywords: case-insensitive substring of the name; `total` counts the matches.
    found = a.documents(ds, keywords="REPORT", desc="false")
    assert (found["total"], [d["name"] for d in found["docs"]]) == (2, names[:2])
    assert a.documents(ds, keywords="nothing-like-this") == {"total": 0, "docs": []}
    assert [d["id"] for d in a.documents(ds, id=ids[2])["docs"]] == [ids[2]]
    assert [d["name"] for d in a.documents(ds, name="Summary.txt")["docs"]] == ["Summary.txt"]

    # update_time ordering follows a rename.
    a.ok("PUT", f"/datasets/{ds}/documents/{ids[0]}", json={"name": "renamed.txt"})
    assert a.documents(ds, orderby="update_time")["docs"][0]["id"] == ids[0]

    assert a.err("GET", f"/datasets/{ds}/documents", params={"id": UNKNOWN_DOC}) == (
        102,
        f"You don't own the document {UNKNOWN_DOC}.",
    )
    assert a.err("GET", f"/datasets/{ds}/documents", params={"name": "nope.txt"})[0] == 102
    for params in ({"page": 0}, {"page_size": -1}, {"orderby": "name"}):
        a.err("GET", f"/datasets/{ds}/documents", params=params)


def test_rename_document(a: RF, ds: str) -> None:
    one, two = a.upload(ds, ("one.txt", b"first"), ("two.txt", b"second"))
    path = f"/datasets/{ds}/documents/{one['id']}"
    assert a.ok("PUT", path, json={"name": "uno.txt"}) is None
    assert a.document(ds, one["id"])["name"] == "uno.txt"
    assert a.err("PUT", path, json={"name": "uno.pdf"}) == (
        102,
        "The extension of file can't be changed",
    )
    assert a.err("PUT", path, json={"name": "uno"})[1] == "The extension of file can't be changed"
    assert a.err("PUT", path, json={"name": "two.txt"}) == (
        102,
        "Duplicated document name in the same dataset.",
    )
    assert a.err("PUT", path, json={"chunk_count": 3}) == (102, "Can't change `chunk_count`.")
    assert a.err("PUT", path, json={"token_count": 3}) == (102, "Can't change `token_count`.")
    assert a.err("PUT", path, json={"progress": 0.5}) == (102, "Can't change `progress`.")
    assert a.err("PUT", path, json={"chunk_method": "fancy"}) == (
        102,
        f"'fancy' is not in {CHUNK_METHODS}",
    )
    assert a.err("PUT", f"/datasets/{ds}/documents/{UNKNOWN_DOC}", json={"name": "x.txt"}) == (
        102,
        "The dataset does not have the document.",
    )
    for raw in (b"{bad", b"[]"):
        code, _ = a.err("PUT", path, content=raw, headers={"Content-Type": "application/json"})
        assert code == 101
    assert a.document(ds, one["id"])["name"] == "uno.txt"
    assert a.document(ds, two["id"])["name"] == "two.txt"
    # Same name (no change) and a new parser_config are fine.
    a.ok("PUT", path, json={"name": "uno.txt", "parser_config": {"chunk_token_num": 64}})
    assert a.document(ds, one["id"])["parser_config"]["chunk_token_num"] == 64


def test_delete_documents(a: RF, ds: str) -> None:
    docs = a.upload(ds, *((f"d{i}.txt", f"doc {i}".encode()) for i in range(4)))
    ids = [d["id"] for d in docs]
    path = f"/datasets/{ds}/documents"
    a.ok("DELETE", path, json={"ids": []})
    assert a.documents(ds)["total"] == 4
    a.ok("DELETE", path, json={"ids": [ids[0]]})
    assert a.err("DELETE", path, json={"ids": [ids[1], UNKNOWN_DOC]})[0] == 102
    assert a.err("DELETE", path, json={"ids": "d1.txt"})[0] == 102
    assert sorted(d["id"] for d in a.documents(ds)["docs"]) == sorted(ids[1:])
    assert a.err("GET", f"{path}/{ids[0]}")[0] == 102  # its file is gone too
    a.ok("DELETE", path, json={"ids": None})
    assert a.documents(ds)["total"] == 0
    a.upload(ds, ("again.txt", b"again"))
    a.ok("DELETE", path)  # no body: every document
    assert a.documents(ds)["total"] == 0
    assert a.dataset(ds)["document_count"] == 0


# ---------------------------------------------------------------------- parsing


def test_parse_ends_done_or_fail_per_document(a: RF, ds: str) -> None:
    good, other, bad = a.upload(
        ds, ("good.txt", TEXT_A), ("other.md", TEXT_B), ("x.pdf", b"%PDF-1.4 garbage")
    )
    ids = [good["id"], other["id"], bad["id"]]
    a.parse(ds, ids)
    docs = a.wait_parsed(ds, ids)
    for d in (docs[good["id"]], docs[other["id"]]):
        assert_document(d)
        assert (d["run"], d["progress"]) == ("DONE", 1.0), d
        assert d["chunk_count"] >= 1 and d["token_count"] >= 1
        assert d["process_begin_at"] is not None and d["process_duation"] >= 0.0
    failed = docs[bad["id"]]
    assert failed["run"] == "FAIL" and failed["chunk_count"] == 0
    msg = failed["progress_msg"]
    assert "PDF" in msg and "Traceback" not in msg and len(msg) < 300, msg

    chunks = a.chunks(ds, good["id"])
    assert chunks["total"] == docs[good["id"]]["chunk_count"]
    assert "".join(c["content"] for c in chunks["chunks"]).count("Alpacas") == 1
    assert a.chunks(ds, bad["id"])["total"] == 0
    stats = a.dataset(ds)
    assert (
        stats["chunk_count"] == docs[good["id"]]["chunk_count"] + docs[other["id"]]["chunk_count"]
    )

    # DONE and FAIL documents may be parsed again: same chunks (not twice), same failure.
    before = [c["id"] for c in chunks["chunks"]]
    a.parse(ds, [good["id"], bad["id"]])
    again = a.wait_parsed(ds, [good["id"], bad["id"]])
    assert (again[good["id"]]["run"], again[bad["id"]]["run"]) == ("DONE", "FAIL")
    assert [c["id"] for c in a.chunks(ds, good["id"])["chunks"]] == before
    assert a.dataset(ds)["chunk_count"] == stats["chunk_count"]


def test_parse_refusals(a: RF, ds: str) -> None:
    (doc,) = a.upload(ds, ("a.txt", TEXT_A))
    path = f"/datasets/{ds}/chunks"
    required = (102, "`document_ids` is required")
    assert a.err("POST", path, json={}) == required
    assert a.err("POST", path, json={"document_ids": []}) == required
    assert a.err("POST", path, json={"document_ids": None}) == required
    assert a.err("POST", path) == required
    assert a.err("POST", path, json={"document_ids": [doc["id"], UNKNOWN_DOC]}) == (
        102,
        f"You don't own the document {UNKNOWN_DOC}.",
    )
    for bad in (doc["id"], [1], {"id": doc["id"]}):
        assert a.err("POST", path, json={"document_ids": bad})[0] == 102
    for raw in (b"{bad", b"[1]"):
        code, _ = a.err("POST", path, content=raw, headers={"Content-Type": "application/json"})
        assert code == 101
    assert a.document(ds, doc["id"])["run"] == "UNSTART"  # nothing started


def test_stop_refusals(a: RF, ds: str) -> None:
    unstarted, parsed = a.upload(ds, ("u.txt", b"Never parsed."), ("p.txt", b"Parsed once."))
    a.parse(ds, [parsed["id"]])
    assert a.wait_parsed(ds, [parsed["id"]])[parsed["id"]]["run"] == "DONE"
    path = f"/datasets/{ds}/chunks"
    for doc in (unstarted, parsed):
        assert a.err("DELETE", path, json={"document_ids": [doc["id"]]}) == (102, CANT_STOP)
    assert a.err("DELETE", path, json={"document_ids": []}) == (102, "`document_ids` is required")
    assert a.err("DELETE", path) == (102, "`document_ids` is required")
    assert a.err("DELETE", path, json={"document_ids": [UNKNOWN_DOC]})[0] == 102
    assert runs(a, ds) == {"u.txt": "UNSTART", "p.txt": "DONE"}
    assert a.chunks(ds, parsed["id"])["total"] >= 1


def test_running_then_done_and_stop_while_running_or_queued(
    a: RF, ds: str, held_worker: Any
) -> None:
    one, two, three, four = a.upload(
        ds,
        ("one.txt", b"The first file is parsed to the end."),
        ("two.txt", b"The second file is stopped in the middle of its batch."),
        ("three.txt", b"The third file is stopped while its run is queued."),
        ("four.txt", b"The fourth file runs after the others."),
    )
    with held_worker() as gate:
        a.parse(ds, [one["id"], two["id"]])
        # RUNNING at once, and still RUNNING while the worker is busy with the batch.
        assert runs(a, ds)["one.txt"] == runs(a, ds)["two.txt"] == "RUNNING"
        gate.wait_entered()
        assert runs(a, ds)["one.txt"] == runs(a, ds)["two.txt"] == "RUNNING"
        running = a.document(ds, one["id"])
        assert running["process_begin_at"] is not None and 0.0 <= running["progress"] < 1.0

        # A second run waits behind the first; parsing a RUNNING document again is refused.
        a.parse(ds, [three["id"]])
        assert runs(a, ds)["three.txt"] == "RUNNING"
        code, message = a.err("POST", f"/datasets/{ds}/chunks", json={"document_ids": [two["id"]]})
        assert code == 102 and "two.txt" in message

        a.ok("DELETE", f"/datasets/{ds}/chunks", json={"document_ids": [two["id"], three["id"]]})
        for doc in (two, three):
            got = a.document(ds, doc["id"])
            assert (got["run"], got["chunk_count"], got["progress"]) == ("CANCEL", 0, 0.0)
        # Stopping a stopped document is refused like a finished one.
        assert a.err("DELETE", f"/datasets/{ds}/chunks", json={"document_ids": [two["id"]]}) == (
            102,
            CANT_STOP,
        )

    # Released: the first finishes; the stopped ones stay stopped with no chunks, even after
    # the queued run has been through the worker (a later run finishing proves it has).
    a.parse(ds, [four["id"]])
    done = a.wait_parsed(ds, [one["id"], four["id"]])
    assert done[one["id"]]["run"] == done[four["id"]]["run"] == "DONE"
    assert done[one["id"]]["chunk_count"] >= 1
    for doc in (two, three):
        got = a.document(ds, doc["id"])
        assert (got["run"], got["chunk_count"], got["progress"]) == ("CANCEL", 0, 0.0)
        assert got["progress_msg"]
        assert a.chunks(ds, doc["id"])["total"] == 0
    assert (
        a.dataset(ds)["chunk_count"]
        == done[one["id"]]["chunk_count"] + done[four["id"]]["chunk_count"]
    )

    # A stopped document may be parsed again.
    a.parse(ds, [two["id"]])
    assert a.wait_parsed(ds, [two["id"]])[two["id"]]["run"] == "DONE"
    assert a.chunks(ds, two["id"])["total"] >= 1


def test_stop_through_the_singular_path(a: RF, ds: str, held_worker: Any) -> None:
    (doc,) = a.upload(ds, ("s.txt", b"Stopped through the draft's path."))
    with held_worker() as gate:
        a.ok("POST", f"/dataset/{ds}/chunk", json={"documents": [doc["id"]]})
        gate.wait_entered()
        a.ok("DELETE", f"/dataset/{ds}/chunk", json={"documents": [doc["id"]]})
        assert a.document(ds, doc["id"])["run"] == "CANCEL"
    (marker,) = a.upload(ds, ("m.txt", b"Marker run."))
    a.parse(ds, [marker["id"]])
    a.wait_parsed(ds, [marker["id"]])
    assert a.document(ds, doc["id"])["run"] == "CANCEL"
    assert a.chunks(ds, doc["id"])["total"] == 0


def test_chunk_method_change_resets_a_parsed_document(a: RF, ds: str) -> None:
    (doc,) = a.parsed(ds, ("a.txt", TEXT_A))
    assert doc["chunk_count"] >= 1
    a.ok("PUT", f"/datasets/{ds}/documents/{doc['id']}", json={"chunk_method": "one"})
    got = a.document(ds, doc["id"])
    assert (got["run"], got["chunk_count"], got["token_count"], got["progress"]) == (
        "UNSTART",
        0,
        0,
        0.0,
    )
    assert (got["chunk_method"], got["parser_config"]) == ("one", {})
    assert a.chunks(ds, doc["id"])["total"] == 0
    assert a.dataset(ds)["chunk_count"] == 0
    # Parsed again with the new method: the whole (short) file is one chunk.
    a.parse(ds, [doc["id"]])
    assert a.wait_parsed(ds, [doc["id"]])[doc["id"]]["chunk_count"] == 1


def test_chunk_method_of_a_running_document_cannot_change(a: RF, ds: str, held_worker: Any) -> None:
    (doc,) = a.upload(ds, ("r.txt", TEXT_A))
    path = f"/datasets/{ds}/documents/{doc['id']}"
    with held_worker() as gate:
        a.parse(ds, [doc["id"]])
        gate.wait_entered()
        assert a.err("PUT", path, json={"chunk_method": "one"}) == (
            102,
            "Document r.txt is being parsed; stop it first.",
        )
        a.ok("PUT", path, json={"name": "renamed.txt"})  # other changes are fine
        got = a.document(ds, doc["id"])
        assert (got["run"], got["chunk_method"], got["name"]) == ("RUNNING", "naive", "renamed.txt")
    done = a.wait_parsed(ds, [doc["id"]])[doc["id"]]
    assert (done["run"], done["chunk_method"], done["name"]) == ("DONE", "naive", "renamed.txt")


# ---------------------------------------------------------------------- chunks


def test_list_chunks(a: RF, ds: str) -> None:
    (doc,) = a.upload(ds, ("seed.txt", b"The seed chunk."))
    added = [a.add_chunk(ds, doc["id"], f"Chunk number {i} about llamas.") for i in range(5)]
    other = a.add_chunk(ds, doc["id"], "Something about goats.")
    listing = a.chunks(ds, doc["id"])
    assert set(listing) == {"total", "chunks", "doc"}
    assert listing["total"] == 6
    for c in listing["chunks"]:
        assert_chunk(c)
        assert (c["document_id"], c["dataset_id"], c["document_keyword"]) == (
            doc["id"],
            ds,
            "seed.txt",
        )
    assert_document(listing["doc"])
    assert (listing["doc"]["id"], listing["doc"]["chunk_count"]) == (doc["id"], 6)

    ids = [c["id"] for c in listing["chunks"]]
    assert set(ids) == {c["id"] for c in [*added, other]}
    pages = [a.chunks(ds, doc["id"], page=p, page_size=2) for p in (1, 2, 3, 4)]
    assert [p["total"] for p in pages] == [6, 6, 6, 6]
    assert [c["id"] for p in pages for c in p["chunks"]] == ids
    assert pages[3]["chunks"] == []

    found = a.chunks(ds, doc["id"], keywords="LLAMAS")
    assert found["total"] == 5 and {c["id"] for c in found["chunks"]} == {c["id"] for c in added}
    assert [c["id"] for c in a.chunks(ds, doc["id"], keywords="goats")["chunks"]] == [other["id"]]
    assert [c["id"] for c in a.chunks(ds, doc["id"], id=added[2]["id"])["chunks"]] == [
        added[2]["id"]
    ]
    assert a.chunks(ds, doc["id"], id=UNKNOWN_CHUNK)["total"] == 0
    for params in ({"page": 0}, {"page_size": "many"}):
        a.err("GET", f"/datasets/{ds}/documents/{doc['id']}/chunks", params=params)
    assert a.err("GET", f"/datasets/{ds}/documents/{UNKNOWN_DOC}/chunks") == (
        102,
        f"You don't own the document {UNKNOWN_DOC}.",
    )


def test_add_chunk(a: RF, ds: str) -> None:
    (doc,) = a.upload(ds, ("notes.txt", b"Notes."))
    content = "Alpacas hum when they are curious."
    chunk = a.add_chunk(ds, doc["id"], content, important_keywords=["alpaca", " hum "])
    assert_chunk(chunk)
    # md5 of content + document id (+ dataset id: see services/chunks.py).
    assert chunk["id"] == hashlib.md5((content + doc["id"] + ds).encode()).hexdigest()
    assert (chunk["content"], chunk["important_keywords"], chunk["available"]) == (
        content,
        ["alpaca", "hum"],
        True,
    )
    assert (chunk["document_id"], chunk["dataset_id"]) == (doc["id"], ds)
    assert isinstance(chunk["create_timestamp"], float) and chunk["create_time"]

    # The same text again is the same chunk.
    assert a.add_chunk(ds, doc["id"], content)["id"] == chunk["id"]
    assert a.chunks(ds, doc["id"])["total"] == 1
    a.add_chunk(ds, doc["id"], "A second chunk.")
    got = a.document(ds, doc["id"])
    assert got["chunk_count"] == 2 and got["token_count"] > 0
    assert got["run"] == "DONE"  # a document with chunks is searchable
    assert a.dataset(ds)["chunk_count"] == 2

    path = f"/datasets/{ds}/documents/{doc['id']}/chunks"
    assert a.err("POST", path, json={}) == (102, "`content` is required")
    assert a.err("POST", path, json={"content": "   "}) == (102, "`content` is required")
    assert a.err("POST", path, json={"content": ["a"]}) == (102, "`content` is required")
    assert a.err("POST", path, json={"content": "x", "important_keywords": "alpaca"})[0] == 102
    assert (
        a.err("POST", path, content=b"[]", headers={"Content-Type": "application/json"})[0] == 101
    )
    assert a.err(
        "POST", f"/datasets/{ds}/documents/{UNKNOWN_DOC}/chunks", json={"content": "x"}
    ) == (
        102,
        f"You don't own the document {UNKNOWN_DOC}.",
    )
    assert a.chunks(ds, doc["id"])["total"] == 2


def test_same_file_in_two_datasets_and_two_tenants_keeps_separate_chunks(
    a: RF, b: RF, ds: str
) -> None:
    """Document ids are content hashes, so the same file has the same id everywhere: a chunk
    added to one copy must not replace (or collide with) the same text in another copy."""
    other = a.create_dataset(name("copy"))["id"]
    bobs = b.create_dataset(name("copy"))["id"]
    data = b"The same file, uploaded three times."
    (d1,) = a.upload(ds, ("same.txt", data))
    (d2,) = a.upload(other, ("same.txt", data))
    (d3,) = b.upload(bobs, ("same.txt", data))
    assert d1["id"] == d2["id"] == d3["id"]
    text = "A chunk with the same words."
    c1 = a.add_chunk(ds, d1["id"], text)
    c2 = a.add_chunk(other, d2["id"], text)
    c3 = b.add_chunk(bobs, d3["id"], text)
    assert len({c1["id"], c2["id"], c3["id"]}) == 3
    for rf, dataset, doc in ((a, ds, d1), (a, other, d2), (b, bobs, d3)):
        listing = rf.chunks(dataset, doc["id"])
        assert [c["content"] for c in listing["chunks"]] == [text]
        assert listing["doc"]["chunk_count"] == 1
    # Deleting one copy's chunks leaves the others.
    a.ok("DELETE", f"/datasets/{ds}/documents/{d1['id']}/chunks")
    assert a.chunks(other, d2["id"])["total"] == b.chunks(bobs, d3["id"])["total"] == 1


def test_update_chunk(a: RF, ds: str) -> None:
    (doc,) = a.upload(ds, ("u.txt", b"Updatable."))
    chunk = a.add_chunk(ds, doc["id"], "Original words.", important_keywords=["orig"])
    keep = a.add_chunk(ds, doc["id"], "Untouched chunk.")
    path = f"/datasets/{ds}/documents/{doc['id']}/chunks/{chunk['id']}"

    assert (
        a.ok("PUT", path, json={"content": "Changed words.", "important_keywords": ["new"]}) is None
    )
    (got,) = a.chunks(ds, doc["id"], id=chunk["id"])["chunks"]
    assert (got["content"], got["important_keywords"], got["available"]) == (
        "Changed words.",
        ["new"],
        True,
    )
    assert [c["id"] for c in a.chunks(ds, doc["id"], keywords="changed")["chunks"]] == [chunk["id"]]
    assert a.chunks(ds, doc["id"], keywords="original")["total"] == 0

    # Unavailable: still stored and listed, flagged as such.
    a.ok("PUT", path, json={"available": False})
    listing = a.chunks(ds, doc["id"])
    flags = {c["id"]: (c["available"], c["available_int"]) for c in listing["chunks"]}
    assert flags == {chunk["id"]: (False, 0), keep["id"]: (True, 1)}
    assert listing["total"] == 2 and a.document(ds, doc["id"])["chunk_count"] == 2
    a.ok("PUT", path, json={"available": True})
    assert a.chunks(ds, doc["id"], id=chunk["id"])["chunks"][0]["available"] is True

    assert a.err(
        "PUT", f"/datasets/{ds}/documents/{doc['id']}/chunks/{UNKNOWN_CHUNK}", json={"content": "x"}
    ) == (
        102,
        f"Can't find this chunk {UNKNOWN_CHUNK}",
    )
    for body in ({"content": ""}, {"content": 5}, {"important_keywords": "k"}, {"available": "no"}):
        assert a.err("PUT", path, json=body)[0] == 102, body
    (got,) = a.chunks(ds, doc["id"], id=chunk["id"])["chunks"]
    assert (got["content"], got["important_keywords"]) == ("Changed words.", ["new"])
    # A chunk of another document of the same dataset is not this document's.
    (other_doc,) = a.upload(ds, ("v.txt", b"Another document."))
    assert a.err(
        "PUT",
        f"/datasets/{ds}/documents/{other_doc['id']}/chunks/{chunk['id']}",
        json={"content": "y"},
    ) == (102, f"Can't find this chunk {chunk['id']}")


def test_delete_chunks(a: RF, ds: str) -> None:
    (doc,) = a.upload(ds, ("d.txt", b"Deletable."))
    ids = [a.add_chunk(ds, doc["id"], f"Chunk {i}.")["id"] for i in range(4)]
    path = f"/datasets/{ds}/documents/{doc['id']}/chunks"
    a.ok("DELETE", path, json={"chunk_ids": []})
    assert a.chunks(ds, doc["id"])["total"] == 4
    a.ok("DELETE", path, json={"chunk_ids": [ids[0]]})
    assert {c["id"] for c in a.chunks(ds, doc["id"])["chunks"]} == set(ids[1:])
    assert a.document(ds, doc["id"])["chunk_count"] == 3
    # An unknown id fails, names the id, and deletes nothing.
    code, message = a.err("DELETE", path, json={"chunk_ids": [ids[1], UNKNOWN_CHUNK]})
    assert code == 102 and UNKNOWN_CHUNK in message and ids[1] not in message
    assert a.err("DELETE", path, json={"chunk_ids": "all"})[0] == 102
    assert a.chunks(ds, doc["id"])["total"] == 3
    a.ok("DELETE", path, json={"chunk_ids": None})
    assert a.chunks(ds, doc["id"])["total"] == 0
    assert a.document(ds, doc["id"])["chunk_count"] == 0
    a.add_chunk(ds, doc["id"], "Back again.")
    a.ok("DELETE", path)  # no body: every chunk of the document
    assert a.chunks(ds, doc["id"])["total"] == 0
    assert a.dataset(ds)["chunk_count"] == 0


# ---------------------------------------------------------------------- the singular draft


def test_singular_document_paths(a: RF, ds: str) -> None:
    r = a.req("POST", f"/dataset/{ds}/document", files=[("file", ("manual.md", TEXT_A))])
    body = r.json()
    assert r.status_code == 200 and body["code"] == 0, body
    (doc,) = body["data"]
    assert (doc["name"], doc["run"]) == ("manual.md", "UNSTART")
    a.upload(ds, ("second.txt", TEXT_B))

    listing = a.ok(
        "GET", f"/dataset/{ds}/info", params={"page": 0, "page_size": 10, "desc": "false"}
    )
    assert [d["name"] for d in listing["docs"]] == ["manual.md", "second.txt"]
    assert listing["total"] == 2
    assert [
        d["id"] for d in a.ok("GET", f"/dataset/{ds}/info", params={"keywords": "MANUAL"})["docs"]
    ] == [doc["id"]]
    assert a.ok("GET", f"/dataset/{ds}/info", params={"name": "second.txt"})["total"] == 1

    # The draft's update body: its names, plus read-only fields sent back as they are.
    draft = {
        "document_id": doc["id"],
        "document_name": "renamed.md",
        "thumbnail": None,
        "knowledgebase_id": ds,
        "parser_method": "manual",
        "parser_config": {
            "chunk_token_count": 128,
            "delimiter": "\n!?。;!?",
            "layout_recognize": True,
            "task_page_size": 12,
        },
        "source_type": "local",
        "type": "doc",
        "created_by": "134408906b6811efbcd20242ac120005",
        "size": 0,
        "token_count": 0,
        "chunk_count": 0,
        "progress": 0.0,
        "progress_msg": "",
        "process_begin_at": None,
        "process_duration": 0.0,
    }
    a.ok("PUT", f"/dataset/{ds}/info/{doc['id']}", json=draft)
    got = a.document(ds, doc["id"])
    assert (got["name"], got["chunk_method"]) == ("renamed.md", "manual")
    assert got["parser_config"]["chunk_token_num"] == 128
    assert a.err(
        "PUT", f"/dataset/{ds}/info/{doc['id']}", json={"document_name": "renamed.pdf"}
    ) == (
        102,
        "The extension of file can't be changed",
    )
    assert a.err("PUT", f"/dataset/{ds}/info/{UNKNOWN_DOC}", json=draft)[0] == 102

    r = a.req("GET", f"/dataset/{ds}/document/{doc['id']}")
    assert r.status_code == 200 and r.content == TEXT_A


def test_singular_parse_and_chunk_paths(a: RF, ds: str) -> None:
    (doc,) = a.upload(ds, ("s.txt", b"Parsed through the draft's path."))
    a.ok("POST", f"/dataset/{ds}/chunk", json={"documents": [doc["id"]]})
    assert a.wait_parsed(ds, [doc["id"]])[doc["id"]]["run"] == "DONE"
    assert a.err("DELETE", f"/dataset/{ds}/chunk", json={"documents": [doc["id"]]}) == (
        102,
        CANT_STOP,
    )
    assert a.err("POST", f"/dataset/{ds}/chunk", json={}) == (102, "`document_ids` is required")

    path = f"/dataset/{ds}/document/{doc['id']}/chunk"
    listing = a.ok("GET", path)
    assert listing["total"] == 1 and listing["doc"]["id"] == doc["id"]
    parsed_id = listing["chunks"][0]["id"]

    # POST: `content` is a list of texts (the same text twice is one chunk).
    added = a.ok(
        "POST", path, json={"document_id": doc["id"], "content": ["rag one", "rag one", "rag two"]}
    )
    ids = [c["id"] for c in added["chunks"]]
    assert ids[0] == ids[1] != ids[2]
    assert a.ok("POST", path, json={"content": "rag three"})["chunks"][0]["content"] == "rag three"
    assert a.ok("GET", path)["total"] == 4
    assert a.err("POST", path, json={"content": []}) == (102, "`content` is required")
    assert a.err("POST", path, json={"content": ["ok", ""]})[0] == 102

    # PUT: the chunk is named in the body; `status` "0" is unavailable.
    a.ok(
        "PUT",
        path,
        json={
            "chunk_id": ids[0],
            "knowledgebase_id": None,
            "name": "",
            "content": "rag one, edited",
            "important_keywords": ["k"],
            "document_id": doc["id"],
            "status": "0",
        },
    )
    (got,) = a.ok("GET", path, params={"id": ids[0]})["chunks"]
    assert (got["content"], got["important_keywords"], got["available"]) == (
        "rag one, edited",
        ["k"],
        False,
    )
    a.ok("PUT", path, json={"chunk_id": ids[0], "status": "1"})
    assert a.ok("GET", path, params={"id": ids[0]})["chunks"][0]["available"] is True
    assert a.err("PUT", path, json={"content": "no id"}) == (102, "`chunk_id` is required")
    assert a.err("PUT", path, json={"chunk_id": UNKNOWN_CHUNK, "content": "x"}) == (
        102,
        f"Can't find this chunk {UNKNOWN_CHUNK}",
    )

    # DELETE: `chunks` names them.
    a.ok("DELETE", path, json={"chunks": [ids[0], ids[2]]})
    left = {c["id"] for c in a.ok("GET", path)["chunks"]}
    assert ids[0] not in left and ids[2] not in left and parsed_id in left
    assert a.err("DELETE", path, json={"chunks": [UNKNOWN_CHUNK]})[0] == 102
    a.ok("DELETE", path)
    assert a.ok("GET", path)["total"] == 0


def test_bodies_that_are_not_json_objects(a: RF, ds: str) -> None:
    (doc,) = a.upload(ds, ("j.txt", b"Json checks."))
    chunk = a.add_chunk(ds, doc["id"], "A chunk.")
    d = f"/datasets/{ds}/documents/{doc['id']}"
    routes = [
        ("DELETE", f"/datasets/{ds}/documents"),
        ("PUT", d),
        ("POST", f"/datasets/{ds}/chunks"),
        ("DELETE", f"/datasets/{ds}/chunks"),
        ("POST", f"{d}/chunks"),
        ("DELETE", f"{d}/chunks"),
        ("PUT", f"{d}/chunks/{chunk['id']}"),
        ("PUT", f"/dataset/{ds}/info/{doc['id']}"),
        ("POST", f"/dataset/{ds}/chunk"),
        ("DELETE", f"/dataset/{ds}/chunk"),
        ("POST", f"/dataset/{ds}/document/{doc['id']}/chunk"),
        ("PUT", f"/dataset/{ds}/document/{doc['id']}/chunk"),
        ("DELETE", f"/dataset/{ds}/document/{doc['id']}/chunk"),
    ]
    for method, path in routes:
        for raw in (b"{oops", b'[{"content": "x"}]', b"7"):
            r = a.req(method, path, content=raw, headers={"Content-Type": "application/json"})
            assert error_of(r)[0] == 101, (method, path, raw, r.text)
    assert a.documents(ds)["total"] == 1
    assert [c["id"] for c in a.chunks(ds, doc["id"])["chunks"]] == [chunk["id"]]
