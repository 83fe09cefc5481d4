"""RAGFlow's official Python client (`ragflow-sdk==0.14.0`) against a real `pasture serve`.

Everything goes through the SDK (`RAGFlow`, `DataSet`, `Document`, `Chunk`); where the SDK
drops a field the wire carries (its `Chunk` keeps only nine keys, so retrieval scores are lost),
the test reads the reply through the SDK's own transport, `RAGFlow.post`. The SDK raises a bare
`Exception(message)` on any non-zero code, so messages are compared exactly where RAGFlow's
users match on them (the RAGFlow section of reference/compat-notes.md).

Chat assistants, their sessions and agents go through the SDK too (`Chat`, `Session`,
`Agent.create_session`); agents are created with Pasture's `POST /api/v1/agents` extension
through the SDK's transport, since the SDK has no call for it. The SDK calls `requests` with no
timeout: a module fixture gives every request one, so a stuck server fails a test, never hangs.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from ragflow_sdk import Agent, Chat, Chunk, DataSet, Document, RAGFlow, Session
from ragflow_sdk.modules.session import Message

from tests.e2e.server import Server

pytestmark = pytest.mark.e2e

HEX32 = re.compile(r"[0-9a-f]{32}")
PARSE_TIMEOUT = 60.0  # seconds for a few small files to end DONE/FAIL
CHUNK_METHODS = [
    "naive",
    "manual",
    "qa",
    "table",
    "paper",
    "book",
    "laws",
    "presentation",
    "picture",
    "one",
    "knowledge_graph",
    "email",
]
NAIVE_DEFAULTS = {
    "chunk_token_num": 128,
    "delimiter": "\n!?;。；！？",
    "html4excel": False,
    "layout_recognize": True,
    "raptor": {"use_raptor": False},
}
CANT_STOP = "Can't stop parsing document with progress at 0 or 100"
HTTP_TIMEOUT = (5.0, 120.0)  # connect, read (between bytes of a stream): generation is slow on CPU

# An invented fact only the uploaded file knows, among unrelated paragraphs; small chunks
# (chunk_token_num 32) keep each paragraph in its own chunk.
FACT_FILE = "farm.txt"
FACT_DOC = (
    b"The weather on the coast was mild all through October, with light rain most evenings.\n\n"
    b"Quillon is 27 years old and is the oldest llama on the Pasture test farm.\n\n"
    b"A good compost heap needs both green and brown material, turned every few weeks.\n\n"
    b"The village library opens at nine and closes at five, except on Sundays.\n"
)
OTHER_FILE = "barn.md"
OTHER_DOC = b"# The barn\n\nThe red barn has six stalls, a hayloft and a leaking roof.\n"


@dataclass
class Live:
    srv: Server
    alice_key: str
    bob_key: str

    def client(self, key: str) -> RAGFlow:
        return RAGFlow(api_key=key, base_url=self.srv.url)

    @property
    def alice(self) -> RAGFlow:
        return self.client(self.alice_key)

    @property
    def bob(self) -> RAGFlow:
        return self.client(self.bob_key)


@dataclass
class Parsed:
    ds: DataSet
    fact: Document
    other: Document


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, api_keys: dict[str, str]
) -> Iterator[Live]:
    keys = ",".join(f"{n}:{s}" for n, s in api_keys.items())
    srv = Server(
        tmp_path_factory.mktemp("ragflow-sdk") / "data", model_cache, {"PASTURE_API_KEYS": keys}
    ).start(120)
    try:
        yield Live(srv, api_keys["alice"], api_keys["bob"])
    finally:
        srv.stop()


@pytest.fixture(scope="module", autouse=True)
def _bounded_requests() -> Iterator[None]:
    """Every request the SDK makes gets HTTP_TIMEOUT unless it names one (it never does)."""
    send = requests.Session.request

    def request(self: requests.Session, method: Any, url: Any, *args: Any, **kw: Any) -> Any:
        if kw.get("timeout") is None:
            kw["timeout"] = HTTP_TIMEOUT
        return send(self, method, url, *args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(requests.Session, "request", request)
        yield


def _name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(3)}"


def _raises(fn: Any, *args: Any, **kwargs: Any) -> str:
    """The message of the bare Exception the SDK raises for a non-zero code."""
    with pytest.raises(Exception) as exc:
        fn(*args, **kwargs)
    assert type(exc.value) is Exception, repr(exc.value)
    return str(exc.value)


def _config(obj: Any) -> Any:
    """A parser_config as plain data: the SDK turns a JSON object into a `Base`."""
    return obj.to_json() if hasattr(obj, "to_json") else obj


def _wait_parsed(ds: DataSet, ids: list[str]) -> dict[str, Document]:
    """Poll list_documents until every one of `ids` is DONE or FAIL."""
    deadline = time.monotonic() + PARSE_TIMEOUT
    while True:
        docs = {d.id: d for d in ds.list_documents(page_size=100) if d.id in ids}
        assert set(docs) == set(ids), docs
        if all(d.run in ("DONE", "FAIL") for d in docs.values()):
            return docs
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not parsed in {PARSE_TIMEOUT}s: {[(d.name, d.run) for d in docs.values()]}"
            )
        time.sleep(0.2)


@pytest.fixture(scope="module")
def parsed(live: Live) -> Parsed:
    """One of alice's datasets with two parsed files, for the chunk and retrieval tests."""
    rag = live.alice
    cfg = DataSet.ParserConfig(rag, {"chunk_token_num": 32})
    ds = rag.create_dataset(name=_name("facts"), parser_config=cfg)
    fact, other = ds.upload_documents(
        [
            {"displayed_name": FACT_FILE, "blob": FACT_DOC},
            {"displayed_name": OTHER_FILE, "blob": OTHER_DOC},
        ]
    )
    ds.async_parse_documents([fact.id, other.id])
    docs = _wait_parsed(ds, [fact.id, other.id])
    assert all(d.run == "DONE" for d in docs.values()), {
        d.name: d.progress_msg for d in docs.values()
    }
    return Parsed(ds, docs[fact.id], docs[other.id])


# ---------------------------------------------------------------------- datasets


def test_create_dataset_defaults(live: Live) -> None:
    name = _name("defaults")
    ds = live.alice.create_dataset(name=name)
    assert isinstance(ds, DataSet)
    assert HEX32.fullmatch(ds.id), ds.id
    assert ds.name == name
    assert ds.chunk_method == "naive"
    assert _config(ds.parser_config) == NAIVE_DEFAULTS
    assert (ds.permission, ds.language) == ("me", "English")
    assert (ds.document_count, ds.chunk_count) == (0, 0)
    assert ds.embedding_model  # the server's embedder, named

    # A custom ParserConfig: what is given wins, the rest are the defaults.
    cfg = DataSet.ParserConfig(live.alice, {"chunk_token_num": 256, "delimiter": "\n"})
    custom = live.alice.create_dataset(name=_name("custom"), description="mine", parser_config=cfg)
    assert _config(custom.parser_config) == {
        **NAIVE_DEFAULTS,
        "chunk_token_num": 256,
        "delimiter": "\n",
    }
    assert custom.description == "mine"
    # Read back, not only echoed by create.
    again = live.alice.list_datasets(id=custom.id)
    assert len(again) == 1 and _config(again[0].parser_config) == _config(custom.parser_config)


def test_parser_config_follows_chunk_method(live: Live) -> None:
    """The reference: qa/manual/paper/book/laws/presentation get `{raptor}`; table, picture,
    one and email an empty object."""
    qa = live.alice.create_dataset(name=_name("qa"), chunk_method="qa")
    assert qa.chunk_method == "qa"
    assert _config(qa.parser_config) == {"raptor": {"use_raptor": False}}
    table = live.alice.create_dataset(name=_name("table"), chunk_method="table")
    assert table.chunk_method == "table"
    assert _config(table.parser_config) == {}, "a `table` dataset shows another method's config"


def test_create_dataset_errors(live: Live) -> None:
    name = _name("dup")
    live.alice.create_dataset(name=name)
    msg = _raises(live.alice.create_dataset, name=name)
    assert msg == "Duplicated dataset name in creating dataset."
    # Names are case-insensitive.
    assert _raises(live.alice.create_dataset, name=name.upper()) == msg

    msg = _raises(live.alice.create_dataset, name=_name("bad"), chunk_method="fancy")
    assert msg == f"'fancy' is not in {CHUNK_METHODS}"
    assert msg == (
        "'fancy' is not in ['naive', 'manual', 'qa', 'table', 'paper', 'book', 'laws',"
        " 'presentation', 'picture', 'one', 'knowledge_graph', 'email']"
    )


def test_list_datasets(live: Live) -> None:
    rag = live.alice
    mine = [rag.create_dataset(name=_name(f"list{i}")) for i in range(3)]
    ids = [d.id for d in mine]

    everything = rag.list_datasets(page_size=1000)
    assert all(isinstance(d, DataSet) for d in everything)
    newest_first = [d.id for d in everything]
    # Default: create_time, descending: the three just made come first, newest first.
    assert newest_first[:3] == ids[::-1]
    oldest_first = [d.id for d in rag.list_datasets(page_size=1000, desc=False)]
    assert oldest_first == newest_first[::-1]

    # Paging slices the same order.
    assert len(everything) >= 4
    assert [d.id for d in rag.list_datasets(page=2, page_size=2)] == newest_first[2:4]
    assert [d.id for d in rag.list_datasets(page=1, page_size=1)] == newest_first[:1]
    assert rag.list_datasets(page=1000, page_size=30) == []

    # update_time: touching the oldest of the three brings it to the front.
    mine[0].update({"description": "touched"})
    by_update = [d.id for d in rag.list_datasets(orderby="update_time", page_size=1000)]
    assert by_update[0] == ids[0]
    assert [d.id for d in rag.list_datasets(orderby="create_time", page_size=1000)] == newest_first

    # Filters.
    got = rag.list_datasets(id=ids[1])
    assert [d.id for d in got] == [ids[1]] and got[0].name == mine[1].name
    got = rag.list_datasets(name=mine[2].name)
    assert [d.id for d in got] == [ids[2]]
    assert [d.id for d in rag.list_datasets(name=mine[2].name.upper())] == [ids[2]]
    assert _raises(rag.list_datasets, id="0" * 32) == "The dataset doesn't exist"
    assert _raises(rag.list_datasets, name="no_such_dataset") == "The dataset doesn't exist"


def test_get_and_update_dataset(live: Live) -> None:
    rag = live.alice
    name, new_name = _name("upd"), _name("renamed")
    ds = rag.create_dataset(name=name)
    got = rag.get_dataset(name)
    assert got.id == ds.id and got.name == name

    ds.update({"name": new_name, "chunk_method": "manual"})
    got = rag.get_dataset(new_name)
    assert got.id == ds.id
    assert got.chunk_method == "manual"
    assert _config(got.parser_config) == {"raptor": {"use_raptor": False}}
    # The old name is free again, and no longer finds anything.
    assert _raises(rag.get_dataset, name) == "The dataset doesn't exist"
    assert rag.create_dataset(name=name).id != ds.id

    msg = _raises(ds.update, {"name": name})
    assert msg == "Duplicated dataset name in updating dataset."
    msg = _raises(ds.update, {"chunk_method": "fancy"})
    assert msg == f"'fancy' is not in {CHUNK_METHODS}"
    assert rag.get_dataset(new_name).chunk_method == "manual"  # failed updates change nothing


def test_delete_datasets(live: Live) -> None:
    rag = live.alice
    a, b, c = (rag.create_dataset(name=_name("del")) for _ in range(3))
    rag.delete_datasets(ids=[a.id])
    assert _raises(rag.list_datasets, id=a.id) == "The dataset doesn't exist"
    assert [d.id for d in rag.list_datasets(id=b.id)] == [b.id]

    # An unknown id among known ones: an error, and nothing is deleted.
    unknown = "f" * 32
    msg = _raises(rag.delete_datasets, ids=[b.id, unknown])
    assert msg == f"You don't own the dataset {unknown}."
    assert [d.id for d in rag.list_datasets(id=b.id)] == [b.id]

    rag.delete_datasets(ids=[b.id, c.id])
    remaining = {d.id for d in rag.list_datasets(page_size=1000)}
    assert not remaining & {a.id, b.id, c.id}
    # Its name is free again.
    assert rag.create_dataset(name=a.name).id != a.id


# ---------------------------------------------------------------------- documents


def test_upload_list_update_download_delete_documents(live: Live) -> None:
    ds = live.alice.create_dataset(name=_name("docs"))
    blob_a = b"Alpha file.\nIt has two lines.\n"
    blob_b = b"# Beta\n\nA *markdown* file.\n"
    docs = ds.upload_documents(
        [{"displayed_name": "a.txt", "blob": blob_a}, {"displayed_name": "b.md", "blob": blob_b}]
    )
    assert all(isinstance(d, Document) for d in docs)
    a, b = docs
    assert [d.name for d in docs] == ["a.txt", "b.md"]
    assert [d.size for d in docs] == [len(blob_a), len(blob_b)]
    for d in docs:
        assert d.dataset_id == ds.id
        assert d.run == "UNSTART"
        assert d.chunk_method == "naive"
        assert d.type == "doc"
        assert (d.chunk_count, d.token_count) == (0, 0)
        assert _config(d.parser_config) == NAIVE_DEFAULTS
    assert live.alice.get_dataset(ds.name).document_count == 2

    # List: newest first by default; keywords match the name; id picks one; paging.
    listed = ds.list_documents()
    assert {d.id for d in listed} == {a.id, b.id}
    assert [d.id for d in ds.list_documents(desc=False)] == [d.id for d in listed][::-1]
    assert [d.id for d in ds.list_documents(keywords="b.m")] == [b.id]
    assert [d.id for d in ds.list_documents(keywords="A.TXT")] == [a.id]
    assert ds.list_documents(keywords="nothing-like-it") == []
    got = ds.list_documents(id=a.id)
    assert [d.id for d in got] == [a.id] and got[0].name == "a.txt"
    page1 = ds.list_documents(page=1, page_size=1)
    page2 = ds.list_documents(page=2, page_size=1)
    assert len(page1) == len(page2) == 1
    assert [page1[0].id, page2[0].id] == [d.id for d in listed]
    assert ds.list_documents(page=3, page_size=1) == []

    # Download: the exact bytes.
    assert a.download() == blob_a
    assert b.download() == blob_b

    # Update: rename and chunk method; the bytes stay.
    a.update({"name": "alpha.txt"})
    a.update({"chunk_method": "manual"})
    got = ds.list_documents(id=a.id)[0]
    assert (got.name, got.chunk_method) == ("alpha.txt", "manual")
    assert ds.list_documents(keywords="alpha")[0].id == a.id
    assert got.download() == blob_a
    assert _raises(a.update, {"name": "alpha.pdf"}) == "The extension of file can't be changed"
    assert _raises(a.update, {"chunk_method": "fancy"}) == f"'fancy' is not in {CHUNK_METHODS}"

    # Delete one, then an unknown id fails and deletes nothing.
    ds.delete_documents(ids=[a.id])
    assert [d.id for d in ds.list_documents()] == [b.id]
    assert _raises(ds.list_documents, id=a.id) == f"You don't own the document {a.id}."
    assert "0" * 32 in _raises(ds.delete_documents, ids=[b.id, "0" * 32])
    assert [d.id for d in ds.list_documents()] == [b.id]
    assert live.alice.get_dataset(ds.name).document_count == 1
    ds.delete_documents(ids=[b.id])
    assert ds.list_documents() == []


def test_ids(live: Live, parsed: Parsed) -> None:
    """Datasets and chunks have RAGFlow's 32-hex ids; documents keep the core's file id, the
    sha256 of their content (a documented departure: docs/architecture.md, RAGFlow dialect)."""
    assert HEX32.fullmatch(parsed.ds.id), parsed.ds.id
    for c in parsed.fact.list_chunks():
        assert HEX32.fullmatch(c.id), c.id
    for d in (parsed.fact, parsed.other):
        assert re.fullmatch(r"[0-9a-f]{64}", d.id), d.id


def test_same_bytes_are_one_document(live: Live) -> None:
    """Documents are identified by content (the documented departure): the same bytes under a
    new name return the first document; a new file under a taken name becomes `name(1).ext`."""
    ds = live.alice.create_dataset(name=_name("twice"))
    (first,) = ds.upload_documents([{"displayed_name": "first.txt", "blob": b"same bytes"}])
    (second,) = ds.upload_documents([{"displayed_name": "second.txt", "blob": b"same bytes"}])
    assert (second.id, second.name) == (first.id, "first.txt")
    assert [d.name for d in ds.list_documents()] == ["first.txt"]
    (third,) = ds.upload_documents([{"displayed_name": "first.txt", "blob": b"other bytes"}])
    assert third.name == "first(1).txt" and third.id != first.id
    assert sorted(d.name for d in ds.list_documents()) == ["first(1).txt", "first.txt"]


# ---------------------------------------------------------------------- parsing


def test_parse_documents_done_and_fail(live: Live) -> None:
    ds = live.alice.create_dataset(name=_name("parse"))
    good, bad = ds.upload_documents(
        [
            {"displayed_name": "good.txt", "blob": b"Parsing works on plain text files.\n"},
            {"displayed_name": "broken.pdf", "blob": b"%PDF-1.4\nthis is not really a pdf\n"},
        ]
    )
    assert bad.type == "pdf"
    assert _raises(ds.async_parse_documents, []) == "`document_ids` is required"

    ds.async_parse_documents([good.id, bad.id])
    docs = _wait_parsed(ds, [good.id, bad.id])
    ok, failed = docs[good.id], docs[bad.id]
    assert ok.run == "DONE", (ok.run, ok.progress_msg)
    assert ok.progress == 1.0
    assert ok.chunk_count >= 1 and ok.token_count >= 1
    assert failed.run == "FAIL"
    assert failed.progress_msg.strip(), "a failed parse says why"
    assert failed.chunk_count == 0

    # Stopping a finished document is refused with RAGFlow's message, and changes nothing.
    assert _raises(ds.async_cancel_parse_documents, [good.id]) == CANT_STOP
    assert ds.list_documents(id=good.id)[0].run == "DONE"
    assert _raises(ds.async_cancel_parse_documents, []) == "`document_ids` is required"

    stats = live.alice.get_dataset(ds.name)
    assert (stats.document_count, stats.chunk_count) == (2, ok.chunk_count)
    assert [c.content for c in ok.list_chunks()] == ["Parsing works on plain text files."]


# ---------------------------------------------------------------------- chunks


def test_chunks(live: Live) -> None:
    ds = live.alice.create_dataset(name=_name("chunks"))
    (doc,) = ds.upload_documents([{"displayed_name": "seed.txt", "blob": b"The seed chunk.\n"}])
    ds.async_parse_documents([doc.id])
    doc = _wait_parsed(ds, [doc.id])[doc.id]
    assert doc.run == "DONE", doc.progress_msg

    parsed_chunks = doc.list_chunks()
    assert [c.content for c in parsed_chunks] == ["The seed chunk."]
    assert all(isinstance(c, Chunk) for c in parsed_chunks)
    seed = parsed_chunks[0]
    assert (seed.document_id, seed.dataset_id, seed.available) == (doc.id, ds.id, True)

    added = doc.add_chunk("Alpacas hum when they are curious.", important_keywords=["alpaca"])
    assert isinstance(added, Chunk)
    assert HEX32.fullmatch(added.id), added.id
    assert added.content == "Alpacas hum when they are curious."
    assert added.important_keywords == ["alpaca"]
    assert (added.document_id, added.dataset_id, added.available) == (doc.id, ds.id, True)
    more = [doc.add_chunk(f"Extra chunk number {i}.") for i in range(3)]
    # The same text again is the same chunk (md5 of content + document id).
    assert doc.add_chunk("Extra chunk number 0.").id == more[0].id

    listed = doc.list_chunks()
    assert len(listed) == 5
    assert {c.id for c in listed} == {seed.id, added.id, *(c.id for c in more)}
    assert [c.id for c in doc.list_chunks(keywords="alpacas")] == [added.id]
    assert doc.list_chunks(keywords="no-such-words-here") == []
    pages = [doc.list_chunks(page=p, page_size=2) for p in (1, 2, 3)]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [c.id for p in pages for c in p] == [c.id for c in listed]
    assert ds.list_documents(id=doc.id)[0].chunk_count == 5

    # Update content and availability; the listing shows both.
    added.update({"content": "Alpacas hum quietly.", "available": False})
    (after,) = doc.list_chunks(keywords="quietly")
    assert (after.id, after.content, after.available) == (added.id, "Alpacas hum quietly.", False)
    assert after.important_keywords == ["alpaca"]
    # A chunk from a listing can be updated too.
    after.update({"available": True})
    assert doc.list_chunks(keywords="quietly")[0].available is True

    # Delete some, then all.
    doc.delete_chunks([more[0].id, more[1].id])
    assert {c.id for c in doc.list_chunks()} == {seed.id, added.id, more[2].id}
    assert "0" * 32 in _raises(doc.delete_chunks, ["0" * 32])
    assert len(doc.list_chunks()) == 3
    doc.delete_chunks()
    assert doc.list_chunks() == []
    assert ds.list_documents(id=doc.id)[0].chunk_count == 0
    assert _raises(doc.add_chunk, "   ") == "`content` is required"


# ---------------------------------------------------------------------- retrieval


def _retrieval_raw(rag: RAGFlow, **body: Any) -> dict[str, Any]:
    """The whole reply, through the SDK's transport: its Chunk drops the score fields."""
    res: dict[str, Any] = rag.post("/retrieval", json=body).json()
    assert res.get("code") == 0, res
    return res["data"]


def test_retrieve(live: Live, parsed: Parsed) -> None:
    rag = live.alice
    question = "How old is Quillon the llama?"
    chunks = rag.retrieve(dataset_ids=[parsed.ds.id], question=question)
    assert chunks and all(isinstance(c, Chunk) for c in chunks)
    top = chunks[0]
    assert "Quillon is 27 years old" in top.content, [c.content for c in chunks]
    assert (top.document_id, top.dataset_id) == (parsed.fact.id, parsed.ds.id)
    assert top.document_name == FACT_FILE
    # The file was cut into several chunks: the fact's chunk is not the whole file.
    assert "compost" not in top.content

    # The same request on the wire: scores, ranking, total and doc_aggs.
    data = _retrieval_raw(rag, dataset_ids=[parsed.ds.id], question=question)
    assert [c["id"] for c in data["chunks"]] == [c.id for c in chunks]
    sims = [c["similarity"] for c in data["chunks"]]
    assert sims == sorted(sims, reverse=True)
    for c in data["chunks"]:
        for f in ("similarity", "vector_similarity", "term_similarity"):
            assert isinstance(c[f], float) and 0.0 <= c[f] <= 1.0, (f, c)
        assert c["similarity"] >= 0.2  # the default threshold
        expected = 0.3 * c["vector_similarity"] + 0.7 * c["term_similarity"]
        assert c["similarity"] == pytest.approx(expected, abs=1e-6)
    assert data["total"] == len(data["chunks"])
    aggs = {a["doc_id"]: a for a in data["doc_aggs"]}
    assert aggs[parsed.fact.id]["doc_name"] == FACT_FILE
    assert sum(a["count"] for a in data["doc_aggs"]) == data["total"]

    # document_ids (sent as `documents` by this client) narrows the search to that file.
    in_other = rag.retrieve(
        dataset_ids=[parsed.ds.id],
        document_ids=[parsed.other.id],
        question=question + " barn",
        similarity_threshold=0.0,
    )
    assert in_other and {c.document_id for c in in_other} == {parsed.other.id}

    # A high threshold keeps fewer chunks (here none reach 0.99), every one above it.
    loose = rag.retrieve(dataset_ids=[parsed.ds.id], question=question, similarity_threshold=0.0)
    strict = rag.retrieve(dataset_ids=[parsed.ds.id], question=question, similarity_threshold=0.99)
    assert len(strict) < len(loose)
    strict_raw = _retrieval_raw(
        rag, dataset_ids=[parsed.ds.id], question=question, similarity_threshold=0.99
    )
    assert all(c["similarity"] >= 0.99 for c in strict_raw["chunks"])

    # Paging the result.
    first = rag.retrieve(
        dataset_ids=[parsed.ds.id], question=question, similarity_threshold=0.0, page_size=1
    )
    assert [c.id for c in first] == [loose[0].id]
    second = rag.retrieve(
        dataset_ids=[parsed.ds.id],
        question=question,
        similarity_threshold=0.0,
        page=2,
        page_size=1,
    )
    assert [c.id for c in second] == [loose[1].id]


def test_retrieve_errors(live: Live, parsed: Parsed) -> None:
    rag = live.alice
    assert _raises(rag.retrieve, dataset_ids=[], question="x") == "`dataset_ids` is required."
    assert _raises(rag.retrieve, dataset_ids=[parsed.ds.id]) == "`question` is required."
    unknown = "0" * 32
    msg = _raises(rag.retrieve, dataset_ids=[unknown], question="Quillon")
    assert msg == f"You don't own the dataset {unknown}."


def test_unavailable_chunk_is_not_retrieved(live: Live, parsed: Parsed) -> None:
    rag = live.alice
    text = "Zorblax the goose guards the orchard gate every night."
    chunk = parsed.other.add_chunk(text)
    try:
        question = "Who guards the orchard gate? Zorblax"
        hits = rag.retrieve(dataset_ids=[parsed.ds.id], question=question)
        assert hits and hits[0].id == chunk.id
        chunk.update({"available": False})
        hits = rag.retrieve(dataset_ids=[parsed.ds.id], question=question)
        assert chunk.id not in {c.id for c in hits}
    finally:
        parsed.other.delete_chunks([chunk.id])


# ---------------------------------------------------------------------- tenants and keys


def test_tenant_isolation(live: Live, parsed: Parsed) -> None:
    alice, bob = live.alice, live.bob
    alice_ids = {d.id for d in alice.list_datasets(page_size=1000)}
    assert parsed.ds.id in alice_ids
    theirs = bob.create_dataset(name=parsed.ds.name)  # names are per tenant
    bob_ids = {d.id for d in bob.list_datasets(page_size=1000)}
    assert theirs.id in bob_ids and not bob_ids & alice_ids

    # Alice's id answers exactly like an id that does not exist.
    unknown = "e" * 32
    assert _raises(bob.list_datasets, id=parsed.ds.id) == _raises(bob.list_datasets, id=unknown)
    assert [d.id for d in bob.list_datasets(name=parsed.ds.name)] == [theirs.id]

    # Reaching into alice's dataset by id, through the SDK's own objects.
    borrowed = DataSet(bob, {"id": parsed.ds.id, "name": parsed.ds.name})
    for action in (
        lambda: borrowed.list_documents(),
        lambda: borrowed.upload_documents([{"displayed_name": "x.txt", "blob": b"x"}]),
        lambda: borrowed.async_parse_documents([parsed.fact.id]),
        lambda: borrowed.update({"name": "stolen"}),
        lambda: bob.delete_datasets(ids=[parsed.ds.id]),
        lambda: bob.retrieve(dataset_ids=[parsed.ds.id], question="Quillon"),
    ):
        assert _raises(action) == f"You don't own the dataset {parsed.ds.id}."
    doc = Document(bob, {"id": parsed.fact.id, "dataset_id": parsed.ds.id})
    assert parsed.fact.id in _raises(doc.download)
    assert _raises(doc.list_chunks) == f"You don't own the dataset {parsed.ds.id}."

    # Nothing of alice's changed.
    assert alice.get_dataset(parsed.ds.name).id == parsed.ds.id
    assert {d.id for d in parsed.ds.list_documents()} == {parsed.fact.id, parsed.other.id}
    assert parsed.fact.download() == FACT_DOC


def test_wrong_api_key(live: Live) -> None:
    stranger = live.client("wrong-" + secrets.token_hex(8))
    assert _raises(stranger.list_datasets) == "Token is not valid!"
    assert _raises(stranger.create_dataset, name=_name("x")) == "Token is not valid!"
    assert _raises(stranger.retrieve, dataset_ids=["0" * 32], question="q") == "Token is not valid!"


# ---------------------------------------------------------------------- chats, sessions, agents
#
# Answers come from the small embedded model (SmolLM2-135M): the tests assert on what the server
# decides (references, stored messages, citation indexes, errors), only loosely on the words.

QUESTION = "How old is Quillon?"
# Chat.LLM's own default model_name is "deepseek-chat": name the server's default (null) instead.
SMALL_LLM = {"model_name": None, "temperature": 0.0, "max_tokens": 48}
# SmolLM2 answers "not found" to the SDK's long default prompt; a short one gets it to answer.
SHORT_PROMPT = (
    "Answer the question with the facts in the knowledge base.\n\nKnowledge base:\n{knowledge}"
)
AGENT_PROMPT = "Answer the question with the facts below.\n\nFacts:\n{input}"
AGENT_OPENER = "Hello! Ask me anything about the farm."
SDK_OPENER = "Hi! I'm your assistant, what can I do for you?"  # create_chat's default opener
MARKER = re.compile(r" ?##(\d+)\$\$")
REFERENCE_CHUNK_KEYS = {
    "id",
    "content",
    "document_id",
    "document_name",
    "dataset_id",
    "image_id",
    "similarity",
    "vector_similarity",
    "term_similarity",
    "positions",
}
UNKNOWN = "d" * 32


@dataclass
class Answered:
    """A session and the Messages its `Session.ask` generator yielded, read to the end."""

    session: Session
    messages: list[Message]

    @property
    def final(self) -> Message:
        return self.messages[-1]


def _ask(session: Session, question: str = QUESTION) -> list[Message]:
    return list(session.ask(question, stream=True))


def _same_as_unknown(real_id: str, attempt: Callable[[str], Any]) -> str:
    """`attempt(id)` fails for `real_id` exactly as it does for an id that does not exist."""
    got = _raises(attempt, real_id)
    ref = _raises(attempt, UNKNOWN)
    assert got.replace(real_id, "<id>") == ref.replace(UNKNOWN, "<id>"), (got, ref)
    return got


def _frames(res: requests.Response) -> list[dict[str, Any]]:
    """The payloads of a completion stream, checked for RAGFlow's framing on the way."""
    assert res.headers["content-type"] == "text/event-stream; charset=utf-8", res.headers
    raw = res.content
    assert raw.endswith(b"\n\n"), raw[-300:]
    parts = raw[:-2].split(b"\n\n")
    assert all(p.startswith(b"data:{") for p in parts), parts  # no space after `data:`
    payloads = [json.loads(p[len(b"data:") :]) for p in parts]
    assert payloads[-1]["code"] == 0 and payloads[-1]["data"] is True, payloads[-1]
    return payloads


def _check_streamed(messages: list[Message]) -> None:
    """Each Message carries the whole answer so far; only the last has the reference, and its
    answer is the streamed one with citation markers put in."""
    assert len(messages) >= 2, [m.content for m in messages]
    assert all(isinstance(m, Message) and m.role == "assistant" for m in messages)
    streamed = [m.content for m in messages[:-1]]
    for before, after in itertools.pairwise(streamed):
        assert after.startswith(before), (before, after)
    assert all(m.reference is None for m in messages[:-1])
    final = messages[-1].content
    assert final.strip(), "an empty answer"
    assert MARKER.sub("", final).strip() == streamed[-1].strip(), (final, streamed[-1])


def _check_reference(msg: Message, parsed: Parsed) -> list[dict[str, Any]]:
    """The final Message's reference: RAGFlow's chunk dicts, the fact's chunk among them; every
    citation marker in the answer names one of them."""
    ref = msg.reference
    assert isinstance(ref, list) and ref, ref
    for c in ref:
        assert set(c) == REFERENCE_CHUNK_KEYS, c
        assert c["dataset_id"] == parsed.ds.id
    fact = [c for c in ref if c["document_id"] == parsed.fact.id]
    assert fact and "Quillon is 27 years old" in fact[0]["content"], ref
    assert fact[0]["document_name"] == FACT_FILE
    assert HEX32.fullmatch(fact[0]["id"]), fact[0]
    assert all(int(i) < len(ref) for i in MARKER.findall(msg.content)), (msg.content, len(ref))
    return ref


def _stored_turn(messages: list[dict[str, Any]], question: str, answer: Message) -> None:
    """A session's first turn, stored after the opener: the question and the answer (one id)."""
    assert len(messages) >= 3, messages
    user, assistant = messages[1:3]
    assert (user["role"], user["content"]) == ("user", question), user
    assert (assistant["role"], assistant["content"]) == ("assistant", answer.content), assistant
    assert user["id"] == assistant["id"]
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", user["id"]
    )


@pytest.fixture(scope="module")
def assistant(live: Live, parsed: Parsed) -> Chat:
    """alice's chat over the parsed dataset, with a short prompt and a small answer budget."""
    rag = live.alice
    return rag.create_chat(
        _name("farmhand"),
        dataset_ids=[parsed.ds.id],
        llm=Chat.LLM(rag, SMALL_LLM),
        prompt=Chat.Prompt(rag, {"prompt": SHORT_PROMPT, "top_n": 3}),
    )


@pytest.fixture(scope="module")
def answered(assistant: Chat) -> Answered:
    """One question asked through `Session.ask` in a new session of `assistant`."""
    session = assistant.create_session(_name("asked"))
    return Answered(session, _ask(session))


@pytest.fixture(scope="module")
def agent(live: Live, parsed: Parsed) -> dict[str, Any]:
    """alice's agent over the parsed dataset, without required inputs (the compact form)."""
    res = live.alice.post(
        "/agents",
        {
            "title": _name("farm_agent"),
            "dataset_ids": [parsed.ds.id],
            "prompt": AGENT_PROMPT,
            "opener": AGENT_OPENER,
            "llm": {"temperature": 0.0, "max_tokens": 48},
        },
    ).json()
    assert res["code"] == 0, res
    return dict(res["data"])


@pytest.fixture(scope="module")
def agent_answered(live: Live, agent: dict[str, Any]) -> Answered:
    session = Agent.create_session(agent["id"], live.alice)
    return Answered(session, _ask(session))


# ---------------------------------------------------------------------- chat assistants


def test_create_chat_defaults(live: Live, parsed: Parsed) -> None:
    """`create_chat` with the SDK's own default `llm` and `prompt` objects."""
    rag = live.alice
    name = _name("chat")
    chat = rag.create_chat(name, dataset_ids=[parsed.ds.id])
    assert isinstance(chat, Chat)
    assert HEX32.fullmatch(chat.id), chat.id
    assert (chat.name, chat.dataset_ids) == (name, [parsed.ds.id])
    assert chat.top_k == 1024
    assert isinstance(chat.create_time, int) and isinstance(chat.update_time, int)

    llm = _config(chat.llm)
    assert isinstance(llm["model_name"], str) and llm["model_name"], llm  # null: the default
    assert {k: v for k, v in llm.items() if k != "model_name"} == {
        "temperature": 0.1,
        "top_p": 0.3,
        "presence_penalty": 0.4,
        "frequency_penalty": 0.7,
        "max_tokens": 512,
    }
    prompt = _config(chat.prompt)
    assert {k: v for k, v in prompt.items() if k not in ("rerank_model", "empty_response")} == {
        "similarity_threshold": 0.2,
        "keywords_similarity_weight": 0.7,
        "top_n": 8,
        "variables": [{"key": "knowledge", "optional": True}],
        "opener": SDK_OPENER,
        "show_quote": True,
        "prompt": Chat.Prompt(rag, {}).prompt,  # the SDK's default system prompt, as sent
    }
    assert not prompt["rerank_model"]  # sent as ""
    assert not prompt["empty_response"]  # sent as null: nothing, as RAGFlow keeps it

    # Read back, not only echoed by create.
    (again,) = rag.list_chats(id=chat.id)
    assert again.name == name and again.dataset_ids == [parsed.ds.id]
    assert _config(again.llm) == llm
    assert _config(again.prompt) == prompt


def test_create_chat_errors(live: Live, parsed: Parsed) -> None:
    rag = live.alice
    name = _name("dupchat")
    rag.create_chat(name, dataset_ids=[parsed.ds.id])
    msg = _raises(rag.create_chat, name, dataset_ids=[parsed.ds.id])
    assert msg == "Duplicated chat name in creating chat."
    assert _raises(rag.create_chat, name.upper(), dataset_ids=[parsed.ds.id]) == msg
    assert _raises(rag.create_chat, "", dataset_ids=[parsed.ds.id]) == "`name` is required."

    failed = _name("failed")
    unparsed = rag.create_dataset(name=_name("unparsed"))
    unparsed.upload_documents([{"displayed_name": "later.txt", "blob": b"Not parsed yet.\n"}])
    msg = _raises(rag.create_chat, failed, dataset_ids=[unparsed.id])
    assert msg == f"The dataset {unparsed.id} doesn't own parsed file"
    empty = rag.create_dataset(name=_name("empty"))
    msg = _raises(rag.create_chat, failed, dataset_ids=[parsed.ds.id, empty.id])
    assert msg == f"The dataset {empty.id} doesn't own parsed file"
    unknown = "0" * 32
    msg = _raises(rag.create_chat, failed, dataset_ids=[unknown])
    assert msg == f"You don't own the dataset {unknown}"
    # Chat.LLM's own default model ("deepseek-chat") is not one this server has.
    msg = _raises(rag.create_chat, failed, dataset_ids=[parsed.ds.id], llm=Chat.LLM(rag, {}))
    assert msg == "`model_name` deepseek-chat doesn't exist"
    # Nothing was made by the failed attempts: the name is still free.
    assert _raises(rag.list_chats, name=failed) == "The chat doesn't exist"
    assert rag.create_chat(failed, dataset_ids=[parsed.ds.id]).name == failed


def test_list_chats(live: Live, parsed: Parsed) -> None:
    rag = live.alice
    mine = [rag.create_chat(_name(f"listchat{i}"), dataset_ids=[parsed.ds.id]) for i in range(3)]
    ids = [c.id for c in mine]

    everything = rag.list_chats(page_size=1000)
    assert all(isinstance(c, Chat) for c in everything)
    newest_first = [c.id for c in everything]
    # Default: create_time, descending: the three just made come first, newest first.
    assert newest_first[:3] == ids[::-1]
    assert [c.id for c in rag.list_chats(page_size=1000, desc=False)] == newest_first[::-1]
    assert [c.id for c in rag.list_chats()] == newest_first[:30]  # page_size defaults to 30

    # Paging slices the same order.
    assert [c.id for c in rag.list_chats(page=2, page_size=2)] == newest_first[2:4]
    assert [c.id for c in rag.list_chats(page=1, page_size=1)] == newest_first[:1]
    assert rag.list_chats(page=1000, page_size=30) == []

    # Filters.
    got = rag.list_chats(id=ids[1])
    assert [c.id for c in got] == [ids[1]] and got[0].name == mine[1].name
    assert [c.id for c in rag.list_chats(name=mine[2].name)] == [ids[2]]
    assert _raises(rag.list_chats, id=UNKNOWN) == "The chat doesn't exist"
    assert _raises(rag.list_chats, name="no_such_chat") == "The chat doesn't exist"

    # update_time: touching the oldest of the three brings it to the front.
    mine[0].update({"name": _name("touched")})
    assert rag.list_chats(orderby="update_time", page_size=1000)[0].id == ids[0]
    assert [c.id for c in rag.list_chats(page_size=1000)] == newest_first


def test_update_chat(live: Live, parsed: Parsed) -> None:
    rag = live.alice
    name, new_name = _name("updchat"), _name("renamedchat")
    chat = rag.create_chat(name, dataset_ids=[parsed.ds.id])
    assert chat.update({"name": new_name}) is None
    (got,) = rag.list_chats(id=chat.id)
    assert got.name == new_name
    assert [c.id for c in rag.list_chats(name=new_name)] == [chat.id]
    # The old name no longer finds anything, and is free again.
    assert _raises(rag.list_chats, name=name) == "The chat doesn't exist"
    other = rag.create_chat(name, dataset_ids=[parsed.ds.id])
    assert other.id != chat.id

    assert _raises(chat.update, {"name": name}) == "Duplicated chat name in updating chat."
    assert _raises(chat.update, {"name": name.upper()}) == "Duplicated chat name in updating chat."
    assert _raises(chat.update, {"name": ""}) == "`name` cannot be empty."
    assert rag.list_chats(id=chat.id)[0].name == new_name  # failed updates change nothing

    # Partial llm/prompt objects change only what they name.
    chat.update({"llm": {"max_tokens": 64}, "prompt": {"top_n": 3}})
    (got,) = rag.list_chats(id=chat.id)
    assert (got.llm.max_tokens, got.llm.temperature) == (64, 0.1)
    assert (got.prompt.top_n, got.prompt.opener) == (3, SDK_OPENER)
    assert got.name == new_name

    # An unknown chat: the same failure as someone else's (see test_chat_isolation).
    assert _raises(Chat(rag, {"id": UNKNOWN}).update, {"name": _name("x")})


def test_delete_chats(live: Live, parsed: Parsed) -> None:
    rag = live.alice
    a, b, c = (rag.create_chat(_name("delchat"), dataset_ids=[parsed.ds.id]) for _ in range(3))
    session = a.create_session("doomed")
    assert rag.delete_chats(ids=[a.id]) is None
    assert _raises(rag.list_chats, id=a.id) == "The chat doesn't exist"
    assert [x.id for x in rag.list_chats(id=b.id)] == [b.id]
    # Its sessions went with it.
    assert _raises(a.list_sessions)
    assert _raises(_ask, session)

    # An unknown id among known ones: an error, and nothing is deleted.
    msg = _raises(rag.delete_chats, ids=[b.id, UNKNOWN])
    assert UNKNOWN in msg
    assert [x.id for x in rag.list_chats(id=b.id)] == [b.id]

    rag.delete_chats(ids=[b.id, c.id])
    remaining = {x.id for x in rag.list_chats(page_size=1000)}
    assert not remaining & {a.id, b.id, c.id}
    # Its name is free again.
    assert rag.create_chat(a.name, dataset_ids=[parsed.ds.id]).id != a.id


# ---------------------------------------------------------------------- sessions


def test_sessions(live: Live, parsed: Parsed) -> None:
    rag = live.alice
    chat = rag.create_chat(_name("sesschat"), dataset_ids=[parsed.ds.id])
    first = chat.create_session("first")
    assert isinstance(first, Session)
    assert HEX32.fullmatch(first.id), first.id
    assert (first.chat_id, first.name) == (chat.id, "first")
    assert first.messages == [{"role": "assistant", "content": SDK_OPENER}]
    default = chat.create_session()
    assert default.name == "New session"
    third = chat.create_session("third")
    ids = [first.id, default.id, third.id]

    listed = chat.list_sessions()
    assert all(isinstance(s, Session) for s in listed)
    assert [s.id for s in listed] == ids[::-1]  # newest first
    assert all(s.chat_id == chat.id for s in listed)  # so a listed Session can ask
    assert [s.id for s in chat.list_sessions(desc=False)] == ids
    assert [s.id for s in chat.list_sessions(page=2, page_size=2)] == [first.id]
    assert [s.id for s in chat.list_sessions(id=default.id)] == [default.id]
    assert [s.id for s in chat.list_sessions(name="third")] == [third.id]
    assert listed[-1].messages == [{"role": "assistant", "content": SDK_OPENER}]

    # Rename; an empty name is refused with RAGFlow's message.
    assert first.update({"name": "renamed"}) is None
    assert [s.name for s in chat.list_sessions(id=first.id)] == ["renamed"]
    assert [s.id for s in chat.list_sessions(name="renamed")] == [first.id]
    assert _raises(first.update, {"name": ""}) == "`name` can not be empty."
    assert _raises(chat.create_session, "") == "`name` can not be empty."

    # Delete one; an unknown id fails and deletes nothing; then the rest.
    assert chat.delete_sessions(ids=[default.id]) is None
    assert [s.id for s in chat.list_sessions()] == [third.id, first.id]
    msg = _raises(chat.delete_sessions, ids=[third.id, UNKNOWN])
    assert msg.startswith("The chat doesn't own the session"), msg
    assert [s.id for s in chat.list_sessions()] == [third.id, first.id]
    chat.delete_sessions(ids=[first.id, third.id])
    assert chat.list_sessions() == []


def test_ask_streams_a_cumulative_answer(answered: Answered) -> None:
    _check_streamed(answered.messages)


def test_ask_reference_points_at_the_document(answered: Answered, parsed: Parsed) -> None:
    _check_reference(answered.final, parsed)


def test_asked_session_is_stored(assistant: Chat, answered: Answered) -> None:
    (stored,) = assistant.list_sessions(id=answered.session.id)
    assert stored.messages[0] == {"role": "assistant", "content": SDK_OPENER}
    _stored_turn(stored.messages, QUESTION, answered.final)


def test_listed_session_reference_is_a_chunk_list(assistant: Chat, answered: Answered) -> None:
    """RAGFlow's session listing gives each answer's `reference` as the list of chunk dicts
    that `Session.ask` yields (not the stream's `{total, chunks, doc_aggs}` object)."""
    (stored,) = assistant.list_sessions(id=answered.session.id)
    assert stored.messages[2].get("reference") == answered.final.reference, stored.messages[2]


def test_ask_raw_frames_and_citations(
    live: Live, assistant: Chat, answered: Answered, parsed: Parsed
) -> None:
    """The same exchange read on the wire, a second turn of the asked session: every citation
    marker in the answer is an index into the reference's chunks."""
    res = live.alice.post(
        f"/chats/{assistant.id}/completions",
        {"question": QUESTION, "stream": True, "session_id": answered.session.id},
        stream=True,
    )
    payloads = _frames(res)
    content = [p for p in payloads[:-1] if p["code"] == 0]
    assert content == payloads[:-1], payloads  # no error frame
    data = [p["data"] for p in content]
    assert {d["session_id"] for d in data} == {answered.session.id}
    assert len({d["id"] for d in data}) == 1
    answers = [d["answer"] for d in data]
    for before, after in itertools.pairwise(answers[:-1]):
        assert after.startswith(before)
    final = data[-1]
    assert final["answer"].strip()
    ref = final["reference"]
    assert ref["total"] == len(ref["chunks"]) >= 1
    assert parsed.fact.id in {c["document_id"] for c in ref["chunks"]}
    assert sum(a["count"] for a in ref["doc_aggs"]) == ref["total"]
    cited = [int(i) for i in MARKER.findall(final["answer"])]
    assert all(0 <= i < len(ref["chunks"]) for i in cited), (final["answer"], ref["total"])
    # The session now holds both turns.
    (stored,) = assistant.list_sessions(id=answered.session.id)
    roles = [m["role"] for m in stored.messages]
    assert len(roles) >= 5 and roles[-2:] == ["user", "assistant"], roles
    assert stored.messages[-1]["content"] == final["answer"]


def test_ask_errors(live: Live, assistant: Chat) -> None:
    """Errors before streaming are a plain JSON body: the SDK sees a line starting with `{`
    and raises the server's message."""
    rag = live.alice
    gone = assistant.create_session(_name("gone"))
    assistant.delete_sessions(ids=[gone.id])
    msg = _raises(_ask, gone)
    assert gone.id in msg, msg
    body = {"question": QUESTION, "stream": True, "session_id": gone.id}
    res = rag.post(f"/chats/{assistant.id}/completions", body, stream=True)
    assert res.headers["content-type"].startswith("application/json"), res.headers
    reply = res.json()
    assert reply["code"] != 0 and reply["message"] == msg, reply

    # A session of a chat that is gone.
    orphan = Session(rag, {"id": gone.id, "chat_id": UNKNOWN})
    assert UNKNOWN in _raises(_ask, orphan)


def test_ask_without_question(assistant: Chat) -> None:
    """The reference's message for a chat completion with no question."""
    session = assistant.create_session(_name("mute"))
    assert _raises(_ask, session, "") == "Please input your question."
    assert [s.messages for s in assistant.list_sessions(id=session.id)] == [
        [{"role": "assistant", "content": SDK_OPENER}]
    ]


# ---------------------------------------------------------------------- agents


def _agent_sessions(rag: RAGFlow, agent_id: str, **params: Any) -> list[dict[str, Any]]:
    res = rag.get(f"/agents/{agent_id}/sessions", params or None).json()
    assert res["code"] == 0, res
    return list(res["data"])


def test_create_and_list_agents(live: Live, parsed: Parsed, agent: dict[str, Any]) -> None:
    rag = live.alice
    assert HEX32.fullmatch(agent["id"]), agent
    comps = agent["dsl"]["components"]
    assert comps["begin"]["obj"]["component_name"] == "Begin"
    assert comps["begin"]["obj"]["params"]["prologue"] == AGENT_OPENER
    kinds = {c["obj"]["component_name"] for c in comps.values()}
    assert kinds == {"Begin", "Retrieval", "Generate", "Answer"}
    (retrieval,) = (c for c in comps.values() if c["obj"]["component_name"] == "Retrieval")
    assert retrieval["obj"]["params"]["kb_ids"] == [parsed.ds.id]

    other = rag.post("/agents", {"title": _name("other_agent"), "prompt": AGENT_PROMPT}).json()
    assert other["code"] == 0, other
    listed = rag.get("/agents").json()
    assert listed["code"] == 0, listed
    ids = [a["id"] for a in listed["data"]]
    assert ids[:2] == [other["data"]["id"], agent["id"]]  # newest first
    desc_false = rag.get("/agents", {"desc": "false"}).json()["data"]
    assert [a["id"] for a in desc_false] == ids[::-1]
    by_id = rag.get("/agents", {"id": agent["id"]}).json()["data"]
    assert [(a["id"], a["title"]) for a in by_id] == [(agent["id"], agent["title"])]
    assert by_id[0]["dsl"] == agent["dsl"]
    by_name = rag.get("/agents", {"name": agent["title"]}).json()["data"]
    assert [a["id"] for a in by_name] == [agent["id"]]
    page = rag.get("/agents", {"page": 2, "page_size": 1}).json()["data"]
    assert [a["id"] for a in page] == ids[1:2]
    missing = rag.get("/agents", {"id": UNKNOWN}).json()
    assert missing["code"] != 0 and missing["message"] == "The agent doesn't exist.", missing

    # The compact form is checked: a dataset alice does not own is refused.
    bad = rag.post("/agents", {"title": _name("bad"), "dataset_ids": [UNKNOWN]}).json()
    assert bad["code"] != 0 and UNKNOWN in bad["message"], bad


def test_agent_session(live: Live, agent: dict[str, Any]) -> None:
    """`Agent.create_session(id, rag)`: a Session the SDK routes by `agent_id`."""
    rag = live.alice
    session = Agent.create_session(agent["id"], rag)
    assert isinstance(session, Session)
    assert HEX32.fullmatch(session.id), session.id
    assert session.agent_id == agent["id"]
    assert session.messages == [{"role": "assistant", "content": AGENT_OPENER}]
    listed = _agent_sessions(rag, agent["id"], id=session.id)
    assert [(s["id"], s["agent_id"]) for s in listed] == [(session.id, agent["id"])]
    assert listed[0]["messages"] == [{"role": "assistant", "content": AGENT_OPENER}]

    msg = _raises(Agent.create_session, UNKNOWN, rag)
    assert UNKNOWN in msg


def test_agent_ask(
    live: Live, parsed: Parsed, agent: dict[str, Any], agent_answered: Answered
) -> None:
    _check_streamed(agent_answered.messages)
    _check_reference(agent_answered.final, parsed)
    (stored,) = _agent_sessions(live.alice, agent["id"], id=agent_answered.session.id)
    assert stored["messages"][0] == {"role": "assistant", "content": AGENT_OPENER}
    _stored_turn(stored["messages"], QUESTION, agent_answered.final)


def test_listed_agent_session_reference_is_a_chunk_list(
    live: Live, agent: dict[str, Any], agent_answered: Answered
) -> None:
    """As for chat sessions: a listed agent session's answers carry the chunk list."""
    (stored,) = _agent_sessions(live.alice, agent["id"], id=agent_answered.session.id)
    assert stored["messages"][2].get("reference") == agent_answered.final.reference


def test_agent_raw_frames(live: Live, agent: dict[str, Any], agent_answered: Answered) -> None:
    """Agent frames carry `"message": ""` and end like a chat's."""
    res = live.alice.post(
        f"/agents/{agent['id']}/completions",
        {"question": QUESTION, "stream": True, "session_id": agent_answered.session.id},
        stream=True,
    )
    payloads = _frames(res)
    assert all(p["code"] == 0 and p["message"] == "" for p in payloads), payloads
    final = payloads[-2]["data"]
    assert final["answer"].strip() and final["session_id"] == agent_answered.session.id
    cited = [int(i) for i in MARKER.findall(final["answer"])]
    assert all(0 <= i < len(final["reference"]["chunks"]) for i in cited)


def test_agent_with_required_input(live: Live, parsed: Parsed) -> None:
    """An agent whose Begin asks for a required `lang`: a session needs it."""
    rag = live.alice
    res = rag.post(
        "/agents",
        {
            "title": _name("translator"),
            "dataset_ids": [parsed.ds.id],
            "prompt": "Answer in {lang} with the facts below.\n\nFacts:\n{input}",
            "params": [{"key": "lang", "name": "Language", "optional": False, "type": "line"}],
            "llm": {"temperature": 0.0, "max_tokens": 32},
        },
    ).json()
    assert res["code"] == 0, res
    agent_id = res["data"]["id"]
    assert res["data"]["dsl"]["components"]["begin"]["obj"]["params"]["query"][0]["key"] == "lang"

    # The SDK sends `{}`: refused, with the server's message.
    missing = rag.post(f"/agents/{agent_id}/sessions", {}).json()
    assert missing["code"] != 0 and "lang" in missing["message"], missing
    assert _raises(Agent.create_session, agent_id, rag) == missing["message"]
    assert _agent_sessions(rag, agent_id) == []

    made = rag.post(f"/agents/{agent_id}/sessions", {"lang": "English"}).json()
    assert made["code"] == 0, made
    session = Session(rag, made["data"])
    assert session.agent_id == agent_id
    messages = _ask(session)
    assert messages and messages[-1].content.strip()
    assert [s["id"] for s in _agent_sessions(rag, agent_id)] == [session.id]


def test_agent_ask_errors(live: Live, agent: dict[str, Any]) -> None:
    rag = live.alice
    session = Agent.create_session(agent["id"], rag)
    assert _raises(_ask, session, "") == "`question` is required."
    lost = Session(rag, {"id": UNKNOWN, "agent_id": agent["id"]})
    msg = _raises(_ask, lost)
    body = {"question": QUESTION, "stream": True, "session_id": UNKNOWN}
    reply = rag.post(f"/agents/{agent['id']}/completions", body, stream=True).json()
    assert reply["code"] != 0 and reply["message"] == msg, reply


# ---------------------------------------------------------------------- isolation


def test_chat_isolation(live: Live, assistant: Chat, answered: Answered) -> None:
    """bob reaches alice's chat and session only to be told what an unknown id tells him."""
    bob = live.bob
    sid = answered.session.id
    assert _raises(bob.list_chats, id=assistant.id) == _raises(bob.list_chats, id=UNKNOWN)
    assert _raises(bob.list_chats, name=assistant.name) == "The chat doesn't exist"
    assert assistant.id not in {c.id for c in bob.list_chats(page_size=1000)}

    for attempt in (
        lambda i: Chat(bob, {"id": i}).update({"name": "stolen"}),
        lambda i: Chat(bob, {"id": i}).list_sessions(),
        lambda i: Chat(bob, {"id": i}).create_session("intruder"),
        lambda i: Chat(bob, {"id": i}).delete_sessions(ids=[sid]),
        lambda i: bob.delete_chats(ids=[i]),
        lambda i: _ask(Session(bob, {"id": sid, "chat_id": i})),
    ):
        _same_as_unknown(assistant.id, attempt)

    # Nothing of alice's changed.
    (mine,) = live.alice.list_chats(id=assistant.id)
    assert mine.name == assistant.name
    (stored,) = assistant.list_sessions(id=sid)
    assert [m["role"] for m in stored.messages][:3] == ["assistant", "user", "assistant"]


def test_agent_isolation(live: Live, agent: dict[str, Any], agent_answered: Answered) -> None:
    bob, alice = live.bob, live.alice
    sid = agent_answered.session.id

    def listed(i: str) -> None:
        res = bob.get("/agents", {"id": i}).json()
        if res["code"] != 0:
            raise Exception(res["message"])

    def sessions(i: str) -> None:
        res = bob.get(f"/agents/{i}/sessions").json()
        if res["code"] != 0:
            raise Exception(res["message"])

    for attempt in (
        listed,
        sessions,
        lambda i: Agent.create_session(i, bob),
        lambda i: _ask(Session(bob, {"id": sid, "agent_id": i})),
    ):
        _same_as_unknown(agent["id"], attempt)
    assert agent["id"] not in {a["id"] for a in bob.get("/agents").json()["data"]}

    # Nothing of alice's changed: still one session, with its one exchange.
    stored = _agent_sessions(alice, agent["id"], id=sid)
    assert [m["role"] for m in stored[0]["messages"]][:3] == ["assistant", "user", "assistant"]
