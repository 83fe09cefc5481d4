"""SearchIndex on Amazon OpenSearch Service: faiss HNSW k-NN plus BM25, one index for all tenants.

One document per chunk, `_id` = sha256(tenant, chunk id): a chunk id is unique within a tenant
(a re-upsert moves the chunk between datasets or documents, as in SqliteSearchIndex), and one
tenant's upsert can never address, overwrite or reveal another tenant's chunk.

Fields (`index_body` is the whole mapping; `dynamic: strict`, so a stray field is an error):
- `tenant`, `dataset_id`, `document_id`, `chunk_id`: keyword, the scope of every query.
- `text`: `text` with an English analyzer (standard tokenizer, possessive, lowercase,
  asciifolding, English stop words, Porter stemming: close to the local FTS5 `porter unicode61
  remove_diacritics`), plus the subfield `text.wildcard` (`wildcard` type, lowercase normalizer)
  for `list_chunks(keywords=...)` substring matches. The wildcard type needs OpenSearch 2.15+.
- `vector`: `knn_vector`, HNSW on faiss, space `innerproduct`. Vectors are L2-normalised, so the
  inner product IS the cosine similarity: faiss runs `cosinesimil` as an inner product over
  vectors it normalises first, a pass ours do not need; and the score is exactly invertible
  (see `score_to_cosine`). Vectors that are not unit length are normalised on the way in.
- `metadata`: the chunk's metadata as given (`enabled: false`: kept in `_source`, not indexed,
  so arbitrary keys never grow the mapping). `meta`: keyword tokens `["key", value]` in JSON, one
  per entry, that metadata filters match with `terms`: the JSON keeps types apart ("2021" is not
  2021, true is not 1) and integral floats are written as ints (2021.0 matches 2021).
- `chunk_index` (double, only when the metadata's `chunk_index` is a number) and `seq` (long, a
  per-process monotonic nanosecond clock, only on chunks WITHOUT a numeric `chunk_index`): the
  reading order of `list_chunks` is `chunk_index` asc (missing last), `seq` asc (missing first, so
  it only orders the chunks without an index), `chunk_id` asc.

Consistency: every write asks for read-after-write. `_bulk` uses `refresh=wait_for` (the request
returns once the next scheduled refresh, <= `index.refresh_interval`, 1 s by default, has made it
searchable: no extra segments, but up to a second of latency per 500-chunk request);
`_delete_by_query` cannot wait, so it uses `refresh=true` (an immediate refresh of the index: a
small segment per delete call). Reads by id (`_mget`) are realtime anyway.

Errors: connection failures, timeouts, 429 and 502/503/504 are `Unavailable`; a 400 (the request
itself is refused) is `Invalid`; anything else is `Upstream`. Messages name the operation, the
status and OpenSearch's error type only: never the endpoint, the index or a credential. A missing
index reads as empty (and is created, with its mapping, by the first write of each process).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import numpy as np
import opensearchpy
from opensearchpy import OpenSearch

from pasture.domain.errors import Invalid, PastureError, Unavailable, Upstream
from pasture.domain.search import IndexedChunk, SearchQuery, Vector
from pasture.ports import SearchIndex

log = logging.getLogger(__name__)
T = TypeVar("T")

# `from + size` of a search may not pass `index.max_result_window`. 100,000 (not the default
# 10,000) because the chunk service recounts a document with one `list_chunks(limit=100_000)`;
# sorting on doc values keeps even the deepest page cheap (one priority queue of from + size).
MAX_RESULT_WINDOW = 100_000
# The k-NN plugin refuses k above 10,000.
MAX_KNN_K = 10_000
# A bulk request carries at most this many chunks or bytes (domains accept 10-100 MiB bodies
# depending on the instance type; a 384-dim chunk is ~5 KB of JSON).
BULK_MAX_DOCS = 500
BULK_MAX_BYTES = 5 * 1024 * 1024
# Ids per `ids` query (score-for-ids, load, delete) and per `_mget`.
ID_BATCH = 1_000
# Distinct words of a query text sent to BM25 (the local adapter keeps 32 terms); bounds the
# number of boolean clauses far below `indices.query.bool.max_clause_count` (1,024).
MAX_QUERY_TERMS = 64
# Metadata filter tokens longer than this (UTF-8 bytes) are indexed as a digest instead.
_MAX_TOKEN_BYTES = 512
# HNSW: m = 16 links per node, ef_construction 128 (faiss defaults are 16 and 100), ef_search
# 128 (the local usearch adapter searches with 128 too).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 128
HNSW_EF_SEARCH = 128

_ANALYZER = "pasture_text"
_WILDCARD_FIELD = "text.wildcard"
_LOAD_FIELDS = ["chunk_id", "dataset_id", "document_id", "text", "metadata"]
# Words of a query text: letters/digits/underscore, apostrophes inside a word kept ("it's").
# Everything else separates, so "text:cats" or "NEAR(cats" still searches for "cats" (the
# standard tokenizer would keep "text:cats" as one token: colon joins letters in UAX #29).
_WORD = re.compile(r"\w+(?:['\u2019]\w+)*")
# Errors OpenSearch answers when a request should simply be tried again later.
_RETRY_LATER = frozenset({429, 502, 503, 504})
_ERROR_TYPE = re.compile(r"[a-z_]{1,80}")


# --------------------------------------------------------------------------- the client


def client_options(timeout: float) -> dict[str, Any]:
    """Transport settings shared by the real client and the test fake's (so tests exercise the
    retries production has). opensearch-py retries at once, without backoff: so only failures
    a retry can fix right away (a dropped connection, 502/503/504 from a node or the load
    balancer), twice. Not a timeout (the request may still be running: a retry doubles the
    load and outlives a Lambda's deadline) and not 429 (an immediate retry meets the same
    throttle; `Unavailable` lets the caller, e.g. Step Functions, back off)."""
    return {
        "timeout": timeout,
        "max_retries": 2,
        "retry_on_status": (502, 503, 504),
        "retry_on_timeout": False,
    }


def opensearch_client(
    endpoint: str,
    *,
    region: str | None,
    auth: Literal["es", "aoss", "none"],
    timeout: float,
) -> OpenSearch:
    """A client of one OpenSearch endpoint (`https://host[:port]`, scheme optional).

    "es" (a managed domain) and "aoss" (Serverless) sign every request with SigV4
    (`AWSV4SignerAuth`, service name = `auth`) using the botocore session's credentials:
    the Lambda role's, refreshed as they rotate (the signer freezes them per request). Both
    need https; TLS certificates are always verified. "none" sends no signature (a local
    OpenSearch, or one behind its own proxy) and may use http.

    Connection class: `RequestsHttpConnection`, on purpose: `AWSV4SignerAuth` is a requests
    auth hook, so it signs the prepared request, i.e. the exact bytes and URL that go out, again
    on every retry (the urllib3 connection needs a different signer class). Its session keeps a
    pool of keep-alive connections (10 per host), reused across invocations of a warm Lambda.

    "aoss" only signs for Serverless: the adapter relies on custom `_id`s, `refresh` and
    `_delete_by_query`, which Serverless vector collections restrict; it is built and tested
    for a managed domain.
    """
    from opensearchpy import AWSV4SignerAuth, RequestsHttpConnection

    url = endpoint.strip()
    if "://" not in url:
        url = f"https://{url}"
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise Invalid("the OpenSearch endpoint must be an http(s) URL or a host name")
    if auth != "none" and parts.scheme != "https":
        raise Invalid("a signed (es/aoss) OpenSearch endpoint must use https")
    http_auth: Any = None
    if auth != "none":
        import botocore.session
        from botocore.exceptions import BotoCoreError

        session = botocore.session.get_session()
        try:
            credentials = session.get_credentials()
        except BotoCoreError as exc:  # a credential source that is configured but failing
            raise Unavailable("cannot load AWS credentials to sign OpenSearch requests") from exc
        if credentials is None:
            raise Unavailable("no AWS credentials to sign OpenSearch requests with")
        region = region or session.get_config_variable("region")
        if not region:
            raise Unavailable("no AWS region for signing OpenSearch requests")
        http_auth = AWSV4SignerAuth(credentials, region, auth)
    https = parts.scheme == "https"
    host: dict[str, Any] = {
        "host": parts.hostname,
        "port": parts.port or (443 if https else 80),
        "scheme": parts.scheme,
    }
    if parts.path.strip("/"):
        host["url_prefix"] = parts.path
    return OpenSearch(
        hosts=[host],
        http_auth=http_auth,
        use_ssl=https,
        verify_certs=True,
        ssl_show_warn=True,
        connection_class=RequestsHttpConnection,
        **client_options(timeout),
    )


# --------------------------------------------------------------------------- the index


def index_body(dimension: int, *, shards: int = 1, replicas: int = 1) -> dict[str, Any]:
    """Settings and mappings of the chunk index (what `create_index` sends).

    One primary shard by default: BM25 statistics are per shard, so one shard scores exactly
    like one SQLite table, and a shard holds tens of millions of chunks. One replica, so a
    multi-AZ domain keeps serving (a single-node domain stays yellow, harmlessly)."""
    if dimension <= 0:
        raise ValueError(f"dimension must be positive, not {dimension}")
    return {
        "settings": {
            "index": {
                "number_of_shards": shards,
                "number_of_replicas": replicas,
                "knn": True,
                "knn.algo_param.ef_search": HNSW_EF_SEARCH,
                "max_result_window": MAX_RESULT_WINDOW,
            },
            "analysis": {
                "filter": {
                    "pasture_possessive": {"type": "stemmer", "language": "possessive_english"},
                    "pasture_stop": {"type": "stop", "stopwords": "_english_"},
                },
                "analyzer": {
                    _ANALYZER: {
                        "type": "custom",
                        "tokenizer": "standard",
                        "filter": [
                            "pasture_possessive",
                            "lowercase",
                            "asciifolding",
                            "pasture_stop",
                            "porter_stem",
                        ],
                    }
                },
            },
        },
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "tenant": {"type": "keyword"},
                "dataset_id": {"type": "keyword"},
                "document_id": {"type": "keyword"},
                "chunk_id": {"type": "keyword"},
                "text": {
                    "type": "text",
                    "analyzer": _ANALYZER,
                    "fields": {"wildcard": {"type": "wildcard", "normalizer": "lowercase"}},
                },
                "vector": {
                    "type": "knn_vector",
                    "dimension": dimension,
                    "method": {
                        "name": "hnsw",
                        "engine": "faiss",
                        "space_type": "innerproduct",
                        "parameters": {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION},
                    },
                },
                "metadata": {"type": "object", "enabled": False},
                "meta": {"type": "keyword"},
                "chunk_index": {"type": "double"},
                "seq": {"type": "long"},
            },
        },
    }


def create_index(
    client: OpenSearch, index: str, dimension: int, *, shards: int = 1, replicas: int = 1
) -> bool:
    """Create the chunk index with its mapping unless it exists; True when this call made it.

    Idempotent and race-safe (a concurrent creator's "already exists" counts as done), so a
    CDK custom resource, a deploy script or the adapter's first write can all call it. An
    existing index is left as it is (its dimension is not compared)."""
    try:
        if client.indices.exists(index=index):
            return False
        client.indices.create(
            index=index, body=index_body(dimension, shards=shards, replicas=replicas)
        )
        return True
    except opensearchpy.TransportError as exc:
        if exc.status_code == 400 and _error_type(exc) == "resource_already_exists_exception":
            return False
        raise _translate(exc, "create index") from exc
    except opensearchpy.OpenSearchException as exc:
        raise Upstream(f"OpenSearch create index failed ({type(exc).__name__})") from exc


# --------------------------------------------------------------------------- helpers


def doc_id(tenant: str, chunk_id: str) -> str:
    """The document `_id` of a tenant's chunk (length-prefixed, so no two pairs collide)."""
    raw = f"{len(tenant)}:{tenant}{chunk_id}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()


def _canonical(value: Any) -> Any:
    # 2021.0 and 2021 are the same number to a filter (as json_extract compares them locally).
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def filter_token(key: str, value: Any) -> str:
    """The `meta` keyword a metadata entry is indexed as, and a filter value is matched by."""
    token = json.dumps(
        [key, _canonical(value)], ensure_ascii=False, separators=(",", ":"), allow_nan=False
    )
    if len(token.encode("utf-8", "surrogatepass")) > _MAX_TOKEN_BYTES:
        # Keyword terms are limited (32 KB); a digest keeps long values filterable.
        return "#" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
    return token


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def query_text(text: str) -> str | None:
    """The text sent to BM25: the query's distinct words (case-insensitively), at most
    MAX_QUERY_TERMS, space-separated; None when it has none. A `match` query treats its text as
    plain words (no operators), so nothing needs escaping; this only bounds the clause count
    and splits on punctuation the tokenizer would keep inside a word."""
    seen: set[str] = set()
    words: list[str] = []
    for w in _WORD.findall(text):
        if not any(ch.isalnum() for ch in w):
            continue  # "___" is no word to the tokenizer
        key = w.casefold()
        if key not in seen:
            seen.add(key)
            words.append(w)
            if len(words) == MAX_QUERY_TERMS:
                break
    return " ".join(words) or None


def lowercase(text: str) -> str:
    """Lowercase one character at a time, like Lucene's LowerCaseFilter (Java's
    Character.toLowerCase): no context rules (a final capital sigma stays σ) and never a
    change of length (İ becomes i)."""
    out = []
    for ch in text:
        low = ch.lower()
        out.append(low[0] if low else ch)
    return "".join(out)


def wildcard_literal(text: str) -> str:
    """`text` escaped for a Lucene wildcard pattern: `*`, `?` and `\\` match themselves."""
    return re.sub(r"([\\*?])", r"\\\1", text)


def score_to_cosine(score: float) -> float:
    """Cosine similarity from a faiss `innerproduct` k-NN score. The plugin maps the inner
    product p (= cosine for unit vectors) to score p + 1 when p > 0 and 1 / (1 - p) otherwise
    (always positive, as Lucene needs); this is the inverse."""
    return score - 1.0 if score > 1.0 else 1.0 - 1.0 / score


def _batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _error_type(exc: opensearchpy.TransportError) -> str:
    """OpenSearch's error type ("index_not_found_exception"), or "" when the reply has none."""
    info = exc.info
    if isinstance(info, dict):
        err = info.get("error")
        if isinstance(err, dict) and isinstance(err.get("type"), str):
            return str(err["type"])
    err = exc.error
    return err if isinstance(err, str) and _ERROR_TYPE.fullmatch(err) else ""


def _translate(exc: opensearchpy.OpenSearchException, operation: str) -> PastureError:
    """The Pasture error for an opensearch-py exception (`raise _translate(...) from exc`)."""
    if isinstance(exc, opensearchpy.ConnectionTimeout):
        return Unavailable(f"OpenSearch {operation} timed out")
    if isinstance(exc, opensearchpy.ConnectionError):  # includes SSLError
        return Unavailable(f"OpenSearch {operation}: cannot reach the service")
    if isinstance(exc, opensearchpy.TransportError):
        status = exc.status_code
        kind = _error_type(exc)
        detail = f"{status} {kind}".strip()
        if status in _RETRY_LATER:
            return Unavailable(f"OpenSearch {operation} throttled or unavailable ({detail})")
        if status == 400:
            return Invalid(f"OpenSearch refused the {operation} request ({detail})")
        return Upstream(f"OpenSearch {operation} failed ({detail})")
    return Upstream(f"OpenSearch {operation} failed ({type(exc).__name__})")


def _hit_chunk_id(hit: dict[str, Any]) -> str:
    return str(hit["fields"]["chunk_id"][0])


class _Seq:
    """Monotonic insertion stamps: wall-clock nanoseconds, strictly increasing in a process.
    Across processes (concurrent Lambdas) they order by clock, which is all "the order of the
    latest upsert" can mean there."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> int:
        """The first of n consecutive stamps."""
        with self._lock:
            first = max(_now_ns(), self._last + 1)
            self._last = first + n - 1
            return first


def _now_ns() -> int:
    return time.time_ns()


_SEQ = _Seq()


# --------------------------------------------------------------------------- the adapter


class OpenSearchSearchIndex(SearchIndex):
    """SearchIndex on one OpenSearch index shared by every tenant (see the module docstring).

    `client` is an `opensearchpy.OpenSearch` (see `opensearch_client`); the index is created
    with `create_index` by the first write of the process when it does not exist yet."""

    def __init__(self, client: OpenSearch, index: str, *, dimension: int) -> None:
        if dimension <= 0:
            raise ValueError(f"dimension must be positive, not {dimension}")
        self._client = client
        self._index = index
        self.dimension = dimension
        self._ready = False
        self._ready_lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing

    def _call(self, operation: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except opensearchpy.OpenSearchException as exc:
            raise _translate(exc, operation) from exc

    def _read(self, operation: str, call: Callable[[], T], missing: T) -> T:
        """A read or delete: a missing index holds nothing, so it answers `missing`."""
        try:
            return call()
        except opensearchpy.NotFoundError as exc:
            if _error_type(exc) == "index_not_found_exception":
                return missing
            raise _translate(exc, operation) from exc
        except opensearchpy.OpenSearchException as exc:
            raise _translate(exc, operation) from exc

    def _search(self, operation: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        resp = self._read(
            operation, lambda: self._client.search(index=self._index, body=body), None
        )
        return [] if resp is None else list(resp["hits"]["hits"])

    def _ensure_index(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if not self._ready:
                create_index(self._client, self._index, self.dimension)
                self._ready = True

    def _vector(self, vector: Any, what: str) -> list[float]:
        """A vector as JSON numbers: float32, checked, unit length. Nine significant digits
        identify a float32 exactly, at half the JSON of Python's 17-digit doubles."""
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != self.dimension:
            raise Invalid(f"{what}: {v.shape[0]}-dim vector, the index holds {self.dimension}")
        if not np.all(np.isfinite(v)):
            raise Invalid(f"{what}: the vector has a non-finite value")
        norm = float(np.linalg.norm(v))
        # The inner product is the cosine only for unit vectors; embedders already give those.
        if norm > 0 and abs(norm - 1.0) > 1e-3:
            v = (v / norm).astype(np.float32)
        return [float(f"{x:.9g}") for x in v.tolist()]

    def _query_vector(self, q: SearchQuery) -> list[float] | None:
        return None if q.vector is None else self._vector(q.vector, "query")

    @staticmethod
    def _scope(q: SearchQuery, *, full: bool = True) -> list[dict[str, Any]] | None:
        """Filter clauses of a query's scope: tenant and datasets, and with `full` its
        documents and metadata filters. None when a filter admits nothing (a metadata value
        list that is empty), so the caller need not ask."""
        clauses: list[dict[str, Any]] = [
            {"term": {"tenant": q.tenant}},
            {"terms": {"dataset_id": list(dict.fromkeys(q.dataset_ids))}},
        ]
        if not full:
            return clauses
        if q.document_ids:
            clauses.append({"terms": {"document_id": list(dict.fromkeys(q.document_ids))}})
        for key, value in q.metadata_filters.items():
            values = list(value) if isinstance(value, list | tuple) else [value]
            if not values:
                return None
            try:
                tokens = list(dict.fromkeys(filter_token(key, v) for v in values))
            except ValueError as exc:  # NaN or infinity: nothing stored can equal it
                raise Invalid(f"metadata filter {key!r}: values must be finite") from exc
            clauses.append({"terms": {"meta": tokens}})
        return clauses

    # ------------------------------------------------------------------ writes

    def _document(self, c: IndexedChunk, seq: int) -> dict[str, Any]:
        metadata = dict(c.metadata)
        doc: dict[str, Any] = {
            "tenant": c.tenant,
            "dataset_id": c.dataset_id,
            "document_id": c.document_id,
            "chunk_id": c.chunk_id,
            "text": c.text,
            "vector": self._vector(c.vector, f"chunk {c.chunk_id}"),
            "metadata": metadata,
            "meta": [filter_token(k, v) for k, v in metadata.items()],
        }
        chunk_index = metadata.get("chunk_index")
        if _is_number(chunk_index):
            doc["chunk_index"] = chunk_index
        else:
            doc["seq"] = seq
        return doc

    def upsert(self, chunks: Sequence[IndexedChunk]) -> None:
        latest = {(c.tenant, c.chunk_id): c for c in chunks}  # the last one wins in a batch
        if not latest:
            return
        first = _SEQ.take(len(latest))
        lines: list[tuple[str, int]] = []
        for i, c in enumerate(latest.values()):
            try:
                line = (
                    json.dumps({"index": {"_id": doc_id(c.tenant, c.chunk_id)}})
                    + "\n"
                    + json.dumps(
                        self._document(c, first + i),
                        ensure_ascii=False,
                        separators=(",", ":"),
                        allow_nan=False,
                    )
                    + "\n"
                )
            except ValueError as exc:  # NaN/infinity in the metadata
                raise Invalid(f"chunk {c.chunk_id}: metadata must be finite numbers") from exc
            lines.append((line, len(line.encode("utf-8", "surrogatepass"))))
        self._ensure_index()
        body: list[str] = []
        size = 0
        for line, n in lines:
            if body and (len(body) >= BULK_MAX_DOCS or size + n > BULK_MAX_BYTES):
                self._bulk("".join(body), len(body))
                body, size = [], 0
            body.append(line)
            size += n
        self._bulk("".join(body), len(body))

    def _bulk(self, payload: str, count: int) -> None:
        """One `_bulk` request; any item that failed fails the call (a retry of the whole
        upsert repairs everything: ids are deterministic)."""
        resp = self._call(
            "bulk index",
            lambda: self._client.bulk(body=payload, index=self._index, refresh="wait_for"),
        )
        if not resp.get("errors"):
            return
        failed = [
            result
            for item in resp["items"]
            for result in item.values()
            if int(result.get("status", 500)) >= 300
        ]
        if not failed:
            return
        statuses = {int(r.get("status", 500)) for r in failed}
        err = failed[0].get("error")
        kind = str(err.get("type", "")) if isinstance(err, dict) else ""
        detail = f"{len(failed)} of {count} chunks failed ({kind or min(statuses)})"
        if statuses & _RETRY_LATER:
            raise Unavailable(f"OpenSearch bulk index throttled: {detail}")
        if statuses == {400}:
            raise Invalid(f"OpenSearch refused chunks: {detail}")
        raise Upstream(f"OpenSearch bulk index: {detail}")

    def _delete_by_query(self, operation: str, clauses: list[dict[str, Any]]) -> int:
        """Delete what the filter clauses match. `conflicts=proceed`: a chunk rewritten while
        the delete runs keeps its new version (last writer wins) instead of failing the call."""
        resp = self._read(
            operation,
            lambda: self._client.delete_by_query(
                index=self._index,
                body={"query": {"bool": {"filter": clauses}}},
                refresh=True,
                conflicts="proceed",
            ),
            None,
        )
        if resp is None:
            return 0
        if resp.get("failures"):
            raise Upstream(f"OpenSearch {operation}: {len(resp['failures'])} deletions failed")
        if resp.get("version_conflicts"):
            log.info(
                "%s skipped %d chunks rewritten meanwhile", operation, resp["version_conflicts"]
            )
        return int(resp.get("deleted", 0))

    def delete_document(self, tenant: str, dataset_id: str, document_id: str) -> int:
        return self._delete_by_query(
            "delete document",
            [
                {"term": {"tenant": tenant}},
                {"term": {"dataset_id": dataset_id}},
                {"term": {"document_id": document_id}},
            ],
        )

    def delete_dataset(self, tenant: str, dataset_id: str) -> int:
        return self._delete_by_query(
            "delete dataset",
            [{"term": {"tenant": tenant}}, {"term": {"dataset_id": dataset_id}}],
        )

    def delete_chunks(self, tenant: str, dataset_id: str, chunk_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(chunk_ids))
        deleted = 0
        for batch in _batches(ids, ID_BATCH):
            deleted += self._delete_by_query(
                "delete chunks",
                [
                    {"term": {"tenant": tenant}},
                    {"term": {"dataset_id": dataset_id}},
                    {"ids": {"values": [doc_id(tenant, c) for c in batch]}},
                ],
            )
        return deleted

    # ------------------------------------------------------------------ reads

    def count(self, tenant: str, dataset_id: str) -> int:
        body = {
            "query": {
                "bool": {
                    "filter": [{"term": {"tenant": tenant}}, {"term": {"dataset_id": dataset_id}}]
                }
            }
        }
        resp = self._read(
            "count", lambda: self._client.count(index=self._index, body=body), {"count": 0}
        )
        return int(resp["count"])

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
        """One `_search` (exact total + the page, sorted and paged by the server). Keywords
        are a wildcard `*literal*` on `text.wildcard` (lowercased on both sides, `*`, `?`, `\\`
        escaped): lowercase is Lucene's per-character one, a little short of the local
        adapter's full case folding (ß does not match ss). Pages must end within
        MAX_RESULT_WINDOW chunks of the start (`Invalid` past it)."""
        if offset < 0 or limit < 0:
            raise ValueError(f"offset and limit must not be negative ({offset}, {limit})")
        clauses: list[dict[str, Any]] = [
            {"term": {"tenant": tenant}},
            {"term": {"dataset_id": dataset_id}},
            {"term": {"document_id": document_id}},
        ]
        if chunk_id is not None:
            clauses.append({"term": {"chunk_id": chunk_id}})
        if keywords:
            pattern = f"*{wildcard_literal(lowercase(keywords))}*"
            clauses.append({"wildcard": {_WILDCARD_FIELD: {"value": pattern}}})
        query = {"bool": {"filter": clauses}}
        start = min(offset, MAX_RESULT_WINDOW)
        size = min(limit, MAX_RESULT_WINDOW - start)
        body = {
            "from": start,
            "size": size,
            "track_total_hits": True,
            "_source": ["chunk_id", "text", "metadata"],
            "query": query,
            "sort": [
                {"chunk_index": {"order": "asc", "missing": "_last"}},
                {"seq": {"order": "asc", "missing": "_first"}},
                {"chunk_id": {"order": "asc"}},
            ],
        }
        resp = self._read(
            "list chunks", lambda: self._client.search(index=self._index, body=body), None
        )
        if resp is None:
            return 0, []
        total = int(resp["hits"]["total"]["value"])
        if offset >= total:
            return total, []
        if size < limit and total > start + size:  # the page was cut at the window
            raise Invalid(
                f"chunk pages must end within the first {MAX_RESULT_WINDOW} chunks of a"
                " document; narrow the listing with keywords"
            )
        empty: Vector = np.zeros((0,), dtype=np.float32)
        return total, [
            IndexedChunk(
                str(h["_source"]["chunk_id"]),
                tenant,
                dataset_id,
                document_id,
                str(h["_source"]["text"]),
                empty,
                dict(h["_source"].get("metadata") or {}),
            )
            for h in resp["hits"]["hits"]
        ]

    def get_chunks(
        self, tenant: str, dataset_id: str, chunk_ids: Sequence[str]
    ) -> dict[str, IndexedChunk]:
        """`_mget` by `_id` (realtime: no refresh needed); the tenant is part of the `_id`, the
        dataset is checked on the documents returned."""
        ids = list(dict.fromkeys(chunk_ids))
        out: dict[str, IndexedChunk] = {}
        for batch in _batches(ids, ID_BATCH):
            body = {"ids": [doc_id(tenant, c) for c in batch]}
            resp: dict[str, Any] = self._read(
                "get chunks",
                functools.partial(self._client.mget, body=body, index=self._index),
                {"docs": []},
            )
            for d in resp["docs"]:
                src = d.get("_source") if d.get("found") else None
                if not src or src.get("tenant") != tenant or src.get("dataset_id") != dataset_id:
                    continue
                vector: Vector = np.asarray(src["vector"], dtype=np.float32)
                out[str(src["chunk_id"])] = IndexedChunk(
                    str(src["chunk_id"]),
                    tenant,
                    dataset_id,
                    str(src["document_id"]),
                    str(src["text"]),
                    vector,
                    dict(src.get("metadata") or {}),
                )
        return out

    # ------------------------------------------------------------------ query primitives

    def _keyword_candidates(self, q: SearchQuery, k: int) -> dict[str, float]:
        text = query_text(q.text)
        scope = self._scope(q)
        if text is None or scope is None or k <= 0:
            return {}
        body = {
            "size": min(k, MAX_RESULT_WINDOW),
            "track_total_hits": False,
            "_source": False,
            "docvalue_fields": ["chunk_id"],
            "query": {"bool": {"must": [{"match": {"text": {"query": text}}}], "filter": scope}},
        }
        return {_hit_chunk_id(h): float(h["_score"]) for h in self._search("keyword search", body)}

    def _keyword_scores(self, q: SearchQuery, chunk_ids: Iterable[str]) -> dict[str, float]:
        ids = list(dict.fromkeys(chunk_ids))
        text = query_text(q.text)
        scope = self._scope(q)
        if not ids or text is None or scope is None:
            return {}
        out = dict.fromkeys(ids, 0.0)
        for batch in _batches(ids, ID_BATCH):
            body = {
                "size": len(batch),
                "track_total_hits": False,
                "_source": False,
                "docvalue_fields": ["chunk_id"],
                "query": {
                    "bool": {
                        "must": [{"match": {"text": {"query": text}}}],
                        "filter": [
                            *scope,
                            {"ids": {"values": [doc_id(q.tenant, c) for c in batch]}},
                        ],
                    }
                },
            }
            for h in self._search("keyword scores", body):
                out[_hit_chunk_id(h)] = float(h["_score"])
        return out

    def _vector_candidates(self, q: SearchQuery, k: int) -> dict[str, float]:
        """Efficient filtering: the scope is the knn clause's own `filter`, so HNSW only
        visits admitted chunks (and the plugin goes exact when few are admitted): k results
        whenever k exist, unlike a post-filter."""
        vector = self._query_vector(q)
        scope = self._scope(q)
        if vector is None or scope is None or k <= 0:
            return {}
        k = min(k, MAX_KNN_K)
        body = {
            "size": k,
            "track_total_hits": False,
            "_source": False,
            "docvalue_fields": ["chunk_id"],
            "query": {
                "knn": {"vector": {"vector": vector, "k": k, "filter": {"bool": {"filter": scope}}}}
            },
        }
        return {
            _hit_chunk_id(h): score_to_cosine(float(h["_score"]))
            for h in self._search("vector search", body)
        }

    def _vector_scores(self, q: SearchQuery, chunk_ids: Iterable[str]) -> dict[str, float]:
        """Exact scores of given chunks: a knn query whose filter admits just them, with k =
        their number. When the filter admits no more than k documents, the plugin scores
        them all exactly instead of walking the graph, so every one comes back."""
        ids = list(dict.fromkeys(chunk_ids))
        vector = self._query_vector(q)
        scope = self._scope(q)
        if not ids or vector is None or scope is None:
            return {}
        out: dict[str, float] = {}
        for batch in _batches(ids, ID_BATCH):
            body = {
                "size": len(batch),
                "track_total_hits": False,
                "_source": False,
                "docvalue_fields": ["chunk_id"],
                "query": {
                    "knn": {
                        "vector": {
                            "vector": vector,
                            "k": len(batch),
                            "filter": {
                                "bool": {
                                    "filter": [
                                        *scope,
                                        {"ids": {"values": [doc_id(q.tenant, c) for c in batch]}},
                                    ]
                                }
                            },
                        }
                    }
                },
            }
            for h in self._search("vector scores", body):
                out[_hit_chunk_id(h)] = score_to_cosine(float(h["_score"]))
        return out

    def _load(self, q: SearchQuery, chunk_ids: Iterable[str]) -> dict[str, IndexedChunk]:
        ids = list(dict.fromkeys(chunk_ids))
        scope = self._scope(q, full=False)
        out: dict[str, IndexedChunk] = {}
        if not ids or scope is None:
            return out
        empty: Vector = np.zeros((0,), dtype=np.float32)
        for batch in _batches(ids, ID_BATCH):
            body = {
                "size": len(batch),
                "track_total_hits": False,
                "_source": _LOAD_FIELDS,
                "query": {
                    "bool": {
                        "filter": [
                            *scope,
                            {"ids": {"values": [doc_id(q.tenant, c) for c in batch]}},
                        ]
                    }
                },
            }
            for h in self._search("load chunks", body):
                src = h["_source"]
                out[str(src["chunk_id"])] = IndexedChunk(
                    str(src["chunk_id"]),
                    q.tenant,
                    str(src["dataset_id"]),
                    str(src["document_id"]),
                    str(src["text"]),
                    empty,
                    dict(src.get("metadata") or {}),
                )
        return out
