"""RAGFlow's official Python client (`ragflow-sdk==0.14.0`) against a real `pasture serve`.

Everything goes through the SDK (`RAGFlow`, `DataSet`, `Document`, `Chunk`); where the SDK
drops a field the wire carries (its `Chunk` keeps only nine keys, so retrieval scores are lost),
the test reads the reply through the SDK's own transport, `RAGFlow.post`. The SDK raises a bare
`Exception(message)` on any non-zero code, so messages are compared exactly where RAGFlow's
users match on them (the RAGFlow section of reference/compat-notes.md).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ragflow_sdk import Chunk, DataSet, Document, RAGFlow

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
# Chat assistants (create_chat/list_chats/Chat.update/delete_chats), their sessions
# (Chat.create_session/list_sessions/Session.ask/Session.update/delete_sessions) and agents
# go here once those endpoints are in; they can reuse the `parsed` dataset above.
