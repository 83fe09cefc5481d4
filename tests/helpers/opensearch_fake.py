"""An in-process fake of the OpenSearch REST calls that `OpenSearchSearchIndex` makes.

No OpenSearch or Elasticsearch server can be installed on the machines these tests run on (no
JVM, no network), so the fake sits BELOW the client: `FakeConnection` is an opensearch-py
`Connection` whose `perform_request` interprets the request. The real `OpenSearch` client, its
URL and parameter building, its JSON serializer, its transport (retries included: the client is
built with the adapter's own `client_options`) and its HTTP-status-to-exception mapping all run;
only the socket is replaced.

What it implements, and nothing more (anything else is answered 400 with type
`fake_not_implemented` and a reason, so a query body the fake does not understand can never pass
silently):
- `HEAD /{index}`, `PUT /{index}` (settings: shards, replicas, `knn`, `knn.algo_param.ef_search`,
  `max_result_window`, analysis with a custom analyzer of the standard tokenizer and the filters
  lowercase / asciifolding / porter_stem / stop `_english_` / stemmer `possessive_english`;
  mappings: `dynamic: strict` with keyword, text (+ wildcard/keyword subfields), wildcard
  (lowercase normalizer), knn_vector (hnsw / faiss / innerproduct), long, double, object with
  `enabled: false`), `POST /{index}/_refresh`.
- `POST /{index}/_bulk` (NDJSON, `index` actions with `_id`; documents checked against the strict
  mapping; per-item errors; `refresh=true|false|wait_for`).
- `_search` with `query`, `size`, `from`, `sort` (field asc/desc, missing _first/_last),
  `_source` (bool or field list), `docvalue_fields`, `track_total_hits`; queries `bool`
  (must/filter), `term`, `terms`, `ids`, `match` (OR of the analyzed terms, BM25), `wildcard`
  (`*`, `?`, `\\` escapes; the field's normalizer applied to the pattern), `knn` (+ `filter`:
  efficient filtering, i.e. the top k among the documents the filter admits, exact).
- `_count`, `_mget` (`ids`; realtime), `_delete_by_query` (`refresh`, `conflicts`).

Scoring: BM25 as Lucene computes it (k1 = 1.2, b = 0.75, idf = ln(1 + (N - n + 0.5) / (n + 0.5)),
document lengths quantised through Lucene's one-byte norm encoding, scores rounded to float32),
statistics over every visible document of the index (one shard). k-NN scores are the faiss
`innerproduct` scores (p + 1 for p > 0, else 1 / (1 - p)), computed exactly, rounded to float32.

Visibility is modelled: indexed documents become searchable only at a refresh (`refresh` on the
write, `_refresh`, or `FakeOpenSearch.refresh()`); `_mget` is realtime. There is no periodic
refresh.

What it does NOT prove: the standard tokenizer is an approximation of UAX #29 (letters, digits,
`_`, letters joined by `'` `.` `:`, digits by `.` `,`; one token per CJK ideograph; no emoji or
Thai tokens), asciifolding is Unicode decomposition plus a few letters, Porter is Martin
Porter's algorithm as Lucene ships it; HNSW recall (the fake's k-NN is exact), segment merges,
deleted-document statistics, shards, the real limits (clause counts, payload sizes, timeouts),
security (SigV4, fine-grained access control) and OpenSearch Serverless are not modelled.

Every request is recorded (`FakeOpenSearch.requests`: method, path, decoded params, parsed
body) so tests can assert on exactly what was sent; `fail`, `fail_connection` and `fail_items`
inject errors.
"""

from __future__ import annotations

import functools
import json
import math
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote

import numpy as np
import opensearchpy
from opensearchpy import Connection, OpenSearch

if TYPE_CHECKING:
    from pasture.adapters.aws.opensearch_search_index import OpenSearchSearchIndex


class _Reject(Exception):
    """Answer the request with an error status (400 unless told)."""

    def __init__(self, reason: str, kind: str = "fake_not_implemented", status: int = 400):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.status = status


def _unsupported(what: str) -> _Reject:
    return _Reject(f"the fake OpenSearch does not implement {what}")


def _error_body(status: int, kind: str, reason: str, **extra: Any) -> dict[str, Any]:
    err = {"type": kind, "reason": reason, **extra}
    return {"error": {"root_cause": [err], **err}, "status": status}


def _f32(x: float) -> float:
    return float(np.float32(x))


# --------------------------------------------------------------------------- analysis

_MID_LETTER = frozenset(":\u00b7\u0387\u05f4\u2027\ufe13\ufe55\uff1a")
_MID_NUM_LET = frozenset(".'\u2018\u2019\u2024\ufe52\uff07\uff0e")
_MID_NUM = frozenset(
    ",;\u037e\u0589\u060c\u060d\u066c\u07f8\u2044\ufe10\ufe14\ufe50\ufe54\uff0c\uff1b"
)
_MAX_TOKEN_LENGTH = 255
# Lucene's English stop set (EnglishAnalyzer.ENGLISH_STOP_WORDS_SET, what `_english_` names).
ENGLISH_STOP_WORDS = frozenset(
    {
        *("a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into"),
        *("is", "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then"),
        *("there", "these", "they", "this", "to", "was", "will", "with"),
    }
)
_FOLD_SPECIAL = {
    "ß": "ss",
    "æ": "ae",
    "Æ": "AE",
    "œ": "oe",
    "Œ": "OE",
    "ø": "o",
    "Ø": "O",
    "đ": "d",
    "Đ": "D",
    "ð": "d",
    "Ð": "D",
    "ł": "l",
    "Ł": "L",
    "þ": "th",
    "Þ": "TH",
    "ı": "i",
}


def _ideographic(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x3400 <= cp <= 0x4DBF
        or 0x4E00 <= cp <= 0x9FFF
        or 0xF900 <= cp <= 0xFAFF
        or 0x20000 <= cp <= 0x2FFFF
        or 0x3040 <= cp <= 0x309F  # hiragana: one token per character too
    )


def _kind(ch: str) -> str | None:
    if _ideographic(ch):
        return "I"
    if ch.isalpha() or unicodedata.category(ch).startswith("M"):
        return "L"
    if ch.isdigit():
        return "N"
    if unicodedata.category(ch) == "Pc":  # "_": ExtendNumLet
        return "X"
    return None


def standard_tokenize(text: str) -> list[str]:
    """An approximation of Lucene's StandardTokenizer (UAX #29 word boundaries)."""
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        k = _kind(text[i])
        if k is None:
            i += 1
            continue
        if k == "I":
            tokens.append(text[i])
            i += 1
            continue
        start, last = i, k
        i += 1
        while i < n:
            k2 = _kind(text[i])
            if k2 in ("L", "N", "X"):
                last = k2
                i += 1
                continue
            if k2 is None and i + 1 < n:
                mid, nxt = text[i], _kind(text[i + 1])
                if last == "L" and nxt == "L" and (mid in _MID_LETTER or mid in _MID_NUM_LET):
                    i += 2
                    continue
                if last == "N" and nxt == "N" and (mid in _MID_NUM or mid in _MID_NUM_LET):
                    i += 2
                    continue
            break
        word = text[start:i]
        if any(ch.isalnum() for ch in word):
            tokens += [
                word[j : j + _MAX_TOKEN_LENGTH] for j in range(0, len(word), _MAX_TOKEN_LENGTH)
            ]
    return tokens


def lucene_lowercase(token: str) -> str:
    out = []
    for ch in token:
        low = ch.lower()
        out.append(low[0] if low else ch)
    return "".join(out)


def ascii_fold(token: str) -> str:
    out = []
    for ch in token:
        if ch.isascii():
            out.append(ch)
            continue
        special = _FOLD_SPECIAL.get(ch)
        if special is not None:
            out.append(special)
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        out.append(base if base and base.isascii() else ch)
    return "".join(out)


def possessive(token: str) -> str:
    if len(token) >= 2 and token[-2] in "'\u2019\uff07" and token[-1] in "sS":
        return token[:-2]
    return token


class _Porter:
    """Martin Porter's stemmer, as Lucene's PorterStemmer implements it (with the published
    departures from the 1980 paper: "bli" -> "ble", "logi" -> "log")."""

    def __init__(self, word: str) -> None:
        self.b = list(word)
        self.k = len(word) - 1
        self.j = 0

    def cons(self, i: int) -> bool:
        ch = self.b[i]
        if ch in "aeiou":
            return False
        if ch == "y":
            return i == 0 or not self.cons(i - 1)
        return True

    def m(self) -> int:
        n, i, j = 0, 0, self.j
        while True:
            if i > j:
                return n
            if not self.cons(i):
                break
            i += 1
        i += 1
        while True:
            while True:
                if i > j:
                    return n
                if self.cons(i):
                    break
                i += 1
            i += 1
            n += 1
            while True:
                if i > j:
                    return n
                if not self.cons(i):
                    break
                i += 1
            i += 1

    def vowel_in_stem(self) -> bool:
        return any(not self.cons(i) for i in range(self.j + 1))

    def doublec(self, j: int) -> bool:
        return j >= 1 and self.b[j] == self.b[j - 1] and self.cons(j)

    def cvc(self, i: int) -> bool:
        if i < 2 or not self.cons(i) or self.cons(i - 1) or not self.cons(i - 2):
            return False
        return self.b[i] not in "wxy"

    def ends(self, s: str) -> bool:
        start = self.k - len(s) + 1
        if start < 0 or "".join(self.b[start : self.k + 1]) != s:
            return False
        self.j = self.k - len(s)
        return True

    def setto(self, s: str) -> None:
        self.b = self.b[: self.j + 1] + list(s)
        self.k = self.j + len(s)

    def r(self, s: str) -> None:
        if self.m() > 0:
            self.setto(s)

    def step1(self) -> None:
        if self.b[self.k] == "s":
            if self.ends("sses"):
                self.k -= 2
            elif self.ends("ies"):
                self.setto("i")
            elif self.b[self.k - 1] != "s":
                self.k -= 1
        if self.ends("eed"):
            if self.m() > 0:
                self.k -= 1
        elif (self.ends("ed") or self.ends("ing")) and self.vowel_in_stem():
            self.k = self.j
            if self.ends("at"):
                self.setto("ate")
            elif self.ends("bl"):
                self.setto("ble")
            elif self.ends("iz"):
                self.setto("ize")
            elif self.doublec(self.k):
                ch = self.b[self.k]
                self.k -= 1
                if ch in "lsz":
                    self.k += 1
            elif self.m() == 1 and self.cvc(self.k):
                self.setto("e")

    def step2(self) -> None:
        if self.ends("y") and self.vowel_in_stem():
            self.b[self.k] = "i"

    _STEP3: ClassVar[dict[str, tuple[tuple[str, str], ...]]] = {
        "a": (("ational", "ate"), ("tional", "tion")),
        "c": (("enci", "ence"), ("anci", "ance")),
        "e": (("izer", "ize"),),
        "l": (("bli", "ble"), ("alli", "al"), ("entli", "ent"), ("eli", "e"), ("ousli", "ous")),
        "o": (("ization", "ize"), ("ation", "ate"), ("ator", "ate")),
        "s": (("alism", "al"), ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous")),
        "t": (("aliti", "al"), ("iviti", "ive"), ("biliti", "ble")),
        "g": (("logi", "log"),),
    }
    _STEP4: ClassVar[dict[str, tuple[tuple[str, str], ...]]] = {
        "e": (("icate", "ic"), ("ative", ""), ("alize", "al")),
        "i": (("iciti", "ic"),),
        "l": (("ical", "ic"), ("ful", "")),
        "s": (("ness", ""),),
    }
    _STEP5: ClassVar[dict[str, tuple[str, ...]]] = {
        "a": ("al",),
        "c": ("ance", "ence"),
        "e": ("er",),
        "i": ("ic",),
        "l": ("able", "ible"),
        "n": ("ant", "ement", "ment", "ent"),
        "s": ("ism",),
        "t": ("ate", "iti"),
        "u": ("ous",),
        "v": ("ive",),
        "z": ("ize",),
    }

    def _rules(self, rules: tuple[tuple[str, str], ...]) -> None:
        for suffix, repl in rules:
            if self.ends(suffix):
                self.r(repl)
                return

    def step3(self) -> None:
        if self.k == 0:
            return
        self._rules(self._STEP3.get(self.b[self.k - 1], ()))

    def step4(self) -> None:
        self._rules(self._STEP4.get(self.b[self.k], ()))

    def step5(self) -> None:
        if self.k == 0:
            return
        ch = self.b[self.k - 1]
        if ch == "o":
            if not (
                (self.ends("ion") and self.j >= 0 and self.b[self.j] in "st") or self.ends("ou")
            ):
                return
        elif not any(self.ends(s) for s in self._STEP5.get(ch, ())):
            return
        if self.m() > 1:
            self.k = self.j

    def step6(self) -> None:
        self.j = self.k
        if self.b[self.k] == "e":
            a = self.m()
            if a > 1 or (a == 1 and not self.cvc(self.k - 1)):
                self.k -= 1
        if self.b[self.k] == "l" and self.doublec(self.k) and self.m() > 1:
            self.k -= 1

    def stem(self) -> str:
        if self.k > 1:
            self.step1()
            if self.k > 0:
                self.step2()
                self.step3()
                self.step4()
                self.step5()
                self.step6()
        return "".join(self.b[: self.k + 1])


def porter_stem(token: str) -> str:
    return _Porter(token).stem() if len(token) > 2 else token


_BUILTIN_FILTERS: dict[str, Callable[[list[str]], list[str]]] = {
    "lowercase": lambda ts: [lucene_lowercase(t) for t in ts],
    "asciifolding": lambda ts: [ascii_fold(t) for t in ts],
    "porter_stem": lambda ts: [porter_stem(t) for t in ts],
}


def _custom_filter(name: str, spec: Any) -> Callable[[list[str]], list[str]]:
    if not isinstance(spec, dict):
        raise _unsupported(f"token filter [{name}] given as {spec!r}")
    kind = spec.get("type")
    if kind == "stop" and set(spec) <= {"type", "stopwords"}:
        words = spec.get("stopwords", "_english_")
        if words == "_english_":
            stop = ENGLISH_STOP_WORDS
        elif isinstance(words, list) and all(isinstance(w, str) for w in words):
            stop = frozenset(words)
        else:
            raise _unsupported(f"stop words {words!r}")
        return lambda ts: [t for t in ts if t not in stop]
    if kind == "stemmer" and set(spec) == {"type", "language"}:
        if spec["language"] == "possessive_english":
            return lambda ts: [possessive(t) for t in ts]
        if spec["language"] in ("english", "porter"):
            return _BUILTIN_FILTERS["porter_stem"]
        raise _unsupported(f"stemmer language {spec['language']!r}")
    raise _unsupported(f"token filter [{name}] {spec!r}")


@dataclass
class _Analyzer:
    filters: list[Callable[[list[str]], list[str]]]

    def __call__(self, text: str) -> list[str]:
        tokens = standard_tokenize(text)
        for f in self.filters:
            tokens = f(tokens)
        return [t for t in tokens if t]


# --------------------------------------------------------------------------- BM25 and knn

K1, B = 1.2, 0.75


def _long_to_int4(i: int) -> int:
    bits = i.bit_length()
    if bits < 4:
        return i
    shift = bits - 4
    return ((i >> shift) & 0x07) | ((shift + 1) << 3)


def _int4_to_long(i: int) -> int:
    bits, shift = i & 0x07, (i >> 3) - 1
    return bits if shift == -1 else (bits | 0x08) << shift


_FREE_VALUES = 255 - _long_to_int4(2**31 - 1)  # 24


def norm_length(length: int) -> int:
    """A field length as Lucene's BM25 sees it: stored in one byte (SmallFloat.intToByte4),
    exact below 24, coarser above."""
    encoded = (
        length if length < _FREE_VALUES else _FREE_VALUES + _long_to_int4(length - _FREE_VALUES)
    )
    return (
        encoded if encoded < _FREE_VALUES else _FREE_VALUES + _int4_to_long(encoded - _FREE_VALUES)
    )


def knn_score(inner_product: float) -> float:
    """The faiss `innerproduct` space's score (distance d = -p): 1 / (1 + d) for d >= 0,
    -d + 1 otherwise."""
    d = -inner_product
    return 1.0 / (1.0 + d) if d >= 0 else -d + 1.0


# --------------------------------------------------------------------------- the cluster


@dataclass
class Recorded:
    """One request as the fake received it: body parsed (a list of objects for NDJSON)."""

    method: str
    path: str
    params: dict[str, str]
    body: Any


@dataclass
class _Doc:
    source: dict[str, Any]
    version: int
    seq_no: int
    terms: dict[str, Counter[str]] = field(default_factory=dict)  # text field -> term freqs
    lengths: dict[str, int] = field(default_factory=dict)
    normalized: dict[str, str] = field(default_factory=dict)  # wildcard field -> value


@dataclass
class _Field:
    type: str
    analyzer: _Analyzer | None = None
    normalize: Callable[[str], str] | None = None
    dimension: int = 0


@dataclass
class _Stats:
    doc_count: int
    avgdl: float
    df: Counter[str]


class _Index:
    def __init__(self, name: str, body: Any) -> None:
        if not isinstance(body, dict) or not set(body) <= {"settings", "mappings"}:
            raise _unsupported(f"index creation body keys {sorted(body or {})}")
        self.name = name
        self.body = body
        self.settings = self._settings(body.get("settings", {}))
        analyzers = self._analyzers(self.analysis)
        self.fields = self._mappings(body.get("mappings", {}), analyzers)
        self.docs: dict[str, _Doc] = {}
        self.visible: dict[str, _Doc] = {}
        self.generation = 0
        self._stats: dict[str, _Stats] = {}
        self._stats_generation = -1
        self._seq_no = 0

    # ---------------------------------------------------------------- creation

    _SETTINGS: ClassVar[dict[str, type]] = {
        "index.number_of_shards": int,
        "index.number_of_replicas": int,
        "index.knn": bool,
        "index.knn.algo_param.ef_search": int,
        "index.max_result_window": int,
    }

    def _settings(self, settings: Any) -> dict[str, Any]:
        flat: dict[str, Any] = {}
        self.analysis: dict[str, Any] = {}

        def walk(prefix: str, node: Any) -> None:
            for key, value in node.items():
                path = f"{prefix}{key}"
                if path in ("analysis", "index.analysis"):
                    self.analysis = value
                elif isinstance(value, dict):
                    walk(path + ".", value)
                else:
                    flat[path if path.startswith("index.") else f"index.{path}"] = value

        if not isinstance(settings, dict):
            raise _unsupported("settings that are not an object")
        walk("", settings)
        for key, value in flat.items():
            want = self._SETTINGS.get(key)
            if want is None:
                raise _unsupported(f"setting [{key}]")
            if type(value) is not want:
                raise _Reject(
                    f"setting [{key}] must be {want.__name__}", "illegal_argument_exception"
                )
        return flat

    def _analyzers(self, analysis: Any) -> dict[str, _Analyzer]:
        if not isinstance(analysis, dict) or not set(analysis) <= {"filter", "analyzer"}:
            raise _unsupported(f"analysis sections {sorted(analysis or {})}")
        custom = {n: _custom_filter(n, s) for n, s in analysis.get("filter", {}).items()}
        analyzers = {"standard": _Analyzer([_BUILTIN_FILTERS["lowercase"]])}
        for name, spec in analysis.get("analyzer", {}).items():
            if (
                not isinstance(spec, dict)
                or set(spec) != {"type", "tokenizer", "filter"}
                or spec["type"] != "custom"
                or spec["tokenizer"] != "standard"
            ):
                raise _unsupported(f"analyzer [{name}] {spec!r}")
            chain = []
            for f in spec["filter"]:
                fn = custom.get(f) or _BUILTIN_FILTERS.get(f)
                if fn is None:
                    raise _unsupported(f"token filter [{f}]")
                chain.append(fn)
            analyzers[name] = _Analyzer(chain)
        return analyzers

    def _mappings(self, mappings: Any, analyzers: dict[str, _Analyzer]) -> dict[str, _Field]:
        if not isinstance(mappings, dict) or set(mappings) != {"dynamic", "properties"}:
            raise _unsupported(
                f"mappings keys {sorted(mappings or {})} (need dynamic + properties)"
            )
        if mappings["dynamic"] != "strict":
            raise _unsupported(f"dynamic mapping [{mappings['dynamic']}] (only strict)")
        fields: dict[str, _Field] = {}
        for name, spec in mappings["properties"].items():
            fields[name] = self._field(name, spec, analyzers)
            for sub, sub_spec in spec.get("fields", {}).items():
                if sub_spec.get("type") not in ("wildcard", "keyword"):
                    raise _unsupported(f"subfield [{name}.{sub}] {sub_spec!r}")
                fields[f"{name}.{sub}"] = self._field(f"{name}.{sub}", sub_spec, analyzers)
        return fields

    def _field(self, name: str, spec: Any, analyzers: dict[str, _Analyzer]) -> _Field:
        kind = spec.get("type") if isinstance(spec, dict) else None
        keys = set(spec) if isinstance(spec, dict) else set()
        if kind in ("keyword", "long", "double") and keys == {"type"}:
            return _Field(kind)
        if kind == "text" and keys <= {"type", "analyzer", "fields"}:
            analyzer = analyzers.get(spec.get("analyzer", "standard"))
            if analyzer is None:
                raise _Reject(
                    f"analyzer [{spec['analyzer']}] has not been configured",
                    "mapper_parsing_exception",
                )
            return _Field("text", analyzer=analyzer)
        if kind in ("wildcard", "keyword") and keys == {"type", "normalizer"}:
            if spec["normalizer"] != "lowercase":
                raise _unsupported(f"normalizer [{spec['normalizer']}]")
            return _Field(kind, normalize=lucene_lowercase)
        if kind == "wildcard" and keys == {"type"}:
            return _Field(kind, normalize=lambda s: s)
        if kind == "object" and spec == {"type": "object", "enabled": False}:
            return _Field("object")
        if kind == "knn_vector" and keys == {"type", "dimension", "method"}:
            method = spec["method"]
            if not self.settings.get("index.knn"):
                raise _Reject("knn_vector fields need index.knn: true", "mapper_parsing_exception")
            if (
                set(method) - {"parameters"} != {"name", "engine", "space_type"}
                or (method["name"], method["engine"], method["space_type"])
                != ("hnsw", "faiss", "innerproduct")
                or not set(method.get("parameters", {})) <= {"m", "ef_construction"}
            ):
                raise _unsupported(f"k-NN method {method!r} (only hnsw/faiss/innerproduct)")
            if not isinstance(spec["dimension"], int) or spec["dimension"] <= 0:
                raise _Reject("bad dimension", "mapper_parsing_exception")
            return _Field("knn_vector", dimension=spec["dimension"])
        raise _unsupported(f"mapping of field [{name}]: {spec!r}")

    # ---------------------------------------------------------------- documents

    def parse(self, source: Any) -> _Doc:
        """Check a document against the strict mapping and analyse it."""
        if not isinstance(source, dict):
            raise _Reject("the document must be an object", "mapper_parsing_exception")
        doc = _Doc(source=source, version=0, seq_no=0)
        for key, value in source.items():
            fld = self.fields.get(key)
            if fld is None or "." in key:
                raise _Reject(
                    f"mapping set to strict, dynamic introduction of [{key}] within [_doc] is not allowed",
                    "strict_dynamic_mapping_exception",
                )
            if value is None:
                continue
            self._check(key, fld, value)
            if fld.type == "text":
                assert fld.analyzer is not None
                tokens = fld.analyzer(value)
                doc.terms[key] = Counter(tokens)
                doc.lengths[key] = len(tokens)
                for sub, sub_fld in self.fields.items():
                    if sub.startswith(key + ".") and sub_fld.normalize is not None:
                        doc.normalized[sub] = sub_fld.normalize(value)
            elif fld.normalize is not None:
                doc.normalized[key] = fld.normalize(value)
        return doc

    @staticmethod
    def _check(key: str, fld: _Field, value: Any) -> None:
        def bad(why: str) -> _Reject:
            return _Reject(
                f"failed to parse field [{key}] of type [{fld.type}]: {why}",
                "mapper_parsing_exception",
            )

        if fld.type in ("keyword", "wildcard"):
            values = value if isinstance(value, list) else [value]
            if not all(isinstance(v, str) for v in values):
                raise bad("the fake takes strings only")
        elif fld.type == "text" and not isinstance(value, str):
            raise bad("not a string")
        elif fld.type == "long" and (not isinstance(value, int) or isinstance(value, bool)):
            raise bad("not an integer")
        elif fld.type == "double" and (
            not isinstance(value, int | float) or isinstance(value, bool)
        ):
            raise bad("not a number")
        elif fld.type == "object" and not isinstance(value, dict):
            raise bad("not an object")
        elif fld.type == "knn_vector":
            if not isinstance(value, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in value
            ):
                raise bad("not a list of finite numbers")
            if len(value) != fld.dimension:
                raise bad(
                    f"Vector dimension mismatch. Expected: {fld.dimension}, Given: {len(value)}"
                )

    def put(self, doc_id: str, doc: _Doc) -> str:
        old = self.docs.pop(doc_id, None)  # an update is a delete plus an append, as in Lucene
        self._seq_no += 1
        doc.version = 1 if old is None else old.version + 1
        doc.seq_no = self._seq_no
        self.docs[doc_id] = doc
        return "created" if old is None else "updated"

    def refresh(self) -> None:
        self.visible = dict(self.docs)
        self.generation += 1

    def stats(self, name: str) -> _Stats:
        if self._stats_generation != self.generation:
            self._stats = {}
            self._stats_generation = self.generation
        st = self._stats.get(name)
        if st is None:
            with_field = [d for d in self.visible.values() if d.lengths.get(name)]
            df: Counter[str] = Counter()
            for d in with_field:
                df.update(d.terms[name].keys())
            total = sum(d.lengths[name] for d in with_field)
            st = _Stats(len(with_field), total / len(with_field) if with_field else 0.0, df)
            self._stats[name] = st
        return st

    # ---------------------------------------------------------------- queries

    def field(self, name: str, *types: str) -> _Field:
        fld = self.fields.get(name)
        if fld is None:
            raise _unsupported(f"queries on the unmapped field [{name}]")
        if fld.type not in types:
            raise _unsupported(f"this query on field [{name}] of type [{fld.type}]")
        return fld

    def evaluate(self, query: Any, docs: Mapping[str, _Doc]) -> dict[str, float]:
        """Matching documents of `docs` -> score, in index order."""
        if not isinstance(query, dict) or len(query) != 1:
            raise _Reject(f"a query must be an object with one key: {query!r}", "parsing_exception")
        ((kind, arg),) = query.items()
        handler = getattr(self, f"_q_{kind}", None)
        if handler is None:
            raise _unsupported(f"the [{kind}] query")
        result: dict[str, float] = handler(arg, docs)
        return result

    @staticmethod
    def _single(kind: str, arg: Any) -> tuple[str, Any]:
        if not isinstance(arg, dict) or len(arg) != 1:
            raise _unsupported(f"[{kind}] with {arg!r}")
        ((name, value),) = arg.items()
        return name, value

    def _q_bool(self, arg: Any, docs: Mapping[str, _Doc]) -> dict[str, float]:
        if not isinstance(arg, dict) or not arg or not set(arg) <= {"must", "filter"}:
            raise _unsupported(f"bool clauses {sorted(arg) if isinstance(arg, dict) else arg!r}")
        scores = dict.fromkeys(docs, 0.0)
        for occur in ("must", "filter"):
            clauses = arg.get(occur, [])
            if not isinstance(clauses, list):
                raise _unsupported(f"bool [{occur}] that is not a list")
            for clause in clauses:
                matched = self.evaluate(clause, {i: docs[i] for i in scores})
                scores = {
                    i: s + (matched[i] if occur == "must" else 0.0)
                    for i, s in scores.items()
                    if i in matched
                }
        return scores

    def _q_term(self, arg: Any, docs: Mapping[str, _Doc]) -> dict[str, float]:
        name, value = self._single("term", arg)
        self.field(name, "keyword")
        if not isinstance(value, str):
            raise _unsupported(f"term [{name}] with the non-string {value!r}")
        return {i: 1.0 for i, d in docs.items() if value in _values(d.source.get(name))}

    def _q_terms(self, arg: Any, docs: Mapping[str, _Doc]) -> dict[str, float]:
        name, values = self._single("terms", arg)
        self.field(name, "keyword")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise _unsupported(f"terms [{name}] with {values!r}")
        wanted = set(values)
        return {i: 1.0 for i, d in docs.items() if wanted & set(_values(d.source.get(name)))}

    def _q_ids(self, arg: Any, docs: Mapping[str, _Doc]) -> dict[str, float]:
        if (
            not isinstance(arg, dict)
            or set(arg) != {"values"}
            or not isinstance(arg["values"], list)
        ):
            raise _unsupported(f"ids with {arg!r}")
        wanted = set(arg["values"])
        return {i: 1.0 for i in docs if i in wanted}

    def _q_match(self, arg: Any, docs: Mapping[str, _Doc]) -> dict[str, float]:
        name, spec = self._single("match", arg)
        fld = self.field(name, "text")
        if (
            not isinstance(spec, dict)
            or set(spec) != {"query"}
            or not isinstance(spec["query"], str)
        ):
            raise _unsupported(f"match on [{name}] with {spec!r} (only {{'query': text}})")
        assert fld.analyzer is not None
        terms = fld.analyzer(spec["query"])  # OR of the terms, duplicates counting twice
        st = self.stats(name)
        out: dict[str, float] = {}
        for i, d in docs.items():
            tf = d.terms.get(name)
            if not tf or not any(t in tf for t in terms):
                continue
            dl = norm_length(d.lengths[name])
            score = 0.0
            for t in terms:
                f = tf.get(t, 0)
                if f:
                    n = st.df[t]
                    idf = math.log(1 + (st.doc_count - n + 0.5) / (n + 0.5))
                    score += idf * f / (f + K1 * (1 - B + B * dl / st.avgdl))
            out[i] = _f32(score)
        return out

    def _q_wildcard(self, arg: Any, docs: Mapping[str, _Doc]) -> dict[str, float]:
        name, spec = self._single("wildcard", arg)
        fld = self.field(name, "wildcard")
        if (
            not isinstance(spec, dict)
            or set(spec) != {"value"}
            or not isinstance(spec["value"], str)
        ):
            raise _unsupported(f"wildcard on [{name}] with {spec!r} (only {{'value': pattern}})")
        assert fld.normalize is not None
        regex = re.compile(wildcard_regex(fld.normalize(spec["value"])), re.DOTALL)
        return {
            i: 1.0
            for i, d in docs.items()
            if name in d.normalized and regex.fullmatch(d.normalized[name])
        }

    def _q_knn(self, arg: Any, docs: Mapping[str, _Doc]) -> dict[str, float]:
        name, spec = self._single("knn", arg)
        fld = self.field(name, "knn_vector")
        if not isinstance(spec, dict) or not {"vector", "k"} <= set(spec) <= {
            "vector",
            "k",
            "filter",
        }:
            raise _unsupported(
                f"knn on [{name}] with keys {sorted(spec) if isinstance(spec, dict) else spec!r}"
            )
        k, vector = spec["k"], spec["vector"]
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 10_000:
            raise _Reject(f"[knn] requires 0 < k <= 10000, got {k!r}", "illegal_argument_exception")
        if not isinstance(vector, list) or len(vector) != fld.dimension:
            raise _Reject(
                f"[knn] query vector has dimension {len(vector) if isinstance(vector, list) else '?'},"
                f" the field {fld.dimension}",
                "illegal_argument_exception",
            )
        admitted = self.evaluate(spec["filter"], docs) if "filter" in spec else dict(docs)
        qv = np.asarray(vector, dtype=np.float64)
        scored = []
        for i in admitted:
            v = docs[i].source.get(name)
            if v is not None:
                scored.append(
                    (_f32(knn_score(float(np.dot(qv, np.asarray(v, dtype=np.float64))))), i)
                )
        top = sorted(scored, key=lambda t: -t[0])[:k]  # stable: ties keep index order
        order = {i: n for n, i in enumerate(docs)}
        return {i: s for s, i in sorted(top, key=lambda t: order[t[1]])}


def _values(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


def wildcard_regex(pattern: str) -> str:
    """A Lucene wildcard pattern as a Python regex: `*` any run, `?` one character, `\\` makes
    the next character literal."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
        i += 1
    return "".join(out)


@dataclass
class _Fault:
    times: int
    method: str | None
    path: str | None
    status: int = 0
    kind: str = ""
    exception: type[opensearchpy.TransportError] | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or self.path in path
        )


class FakeOpenSearch:
    """The fake cluster: indices, the request log and injected faults. Thread-safe."""

    def __init__(self) -> None:
        self.indices: dict[str, _Index] = {}
        self.requests: list[Recorded] = []
        self._faults: list[_Fault] = []
        self._item_faults: list[tuple[int, str]] = []
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- test controls

    def fail(
        self,
        status: int,
        *,
        error_type: str = "injected_exception",
        times: int = 1,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """The next `times` requests (matching `method` and a `path` substring) answer
        `status` with an OpenSearch error body of type `error_type`."""
        self._faults.append(_Fault(times, method, path, status=status, kind=error_type))

    def fail_connection(
        self,
        *,
        times: int = 1,
        timeout: bool = False,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """The next `times` matching requests fail like a dropped connection (or a timeout)."""
        exc = opensearchpy.ConnectionTimeout if timeout else opensearchpy.ConnectionError
        self._faults.append(_Fault(times, method, path, exception=exc))

    def fail_items(
        self, count: int, *, status: int = 429, error_type: str = "es_rejected_execution_exception"
    ) -> None:
        """The next `count` bulk items fail (not applied) with this per-item status."""
        self._item_faults += [(status, error_type)] * count

    def refresh(self, index: str | None = None) -> None:
        with self._lock:
            for name, ix in self.indices.items():
                if index is None or name == index:
                    ix.refresh()

    def documents(self, index: str) -> dict[str, dict[str, Any]]:
        """Every stored document (realtime view): `_id` -> `_source`."""
        with self._lock:
            return {i: d.source for i, d in self.indices[index].docs.items()}

    def calls(self, endpoint: str) -> list[Recorded]:
        """Recorded requests whose path ends with `endpoint` (e.g. "/_search")."""
        return [r for r in self.requests if r.path.endswith(endpoint)]

    # ---------------------------------------------------------------- dispatch

    def handle(
        self, method: str, url: str, params: Mapping[str, Any] | None, body: bytes | None
    ) -> tuple[int, Any]:
        path = url.split("?", 1)[0]
        decoded = {
            k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in (params or {}).items()
        }
        text = body.decode("utf-8", "surrogatepass") if isinstance(body, bytes) else body
        with self._lock:
            try:
                parsed = self._parse_body(path, text)
            except _Reject as rej:
                self.requests.append(Recorded(method, path, decoded, text))
                return rej.status, _error_body(rej.status, rej.kind, rej.reason)
            self.requests.append(Recorded(method, path, decoded, parsed))
            for fault in self._faults:
                if fault.times > 0 and fault.matches(method, path):
                    fault.times -= 1
                    if fault.exception is not None:
                        raise fault.exception("N/A", "injected by the test", OSError("injected"))
                    return fault.status, _error_body(
                        fault.status, fault.kind, "injected by the test"
                    )
            try:
                return self._route(method, path, decoded, parsed)
            except _Reject as rej:
                return rej.status, _error_body(rej.status, rej.kind, rej.reason)

    @staticmethod
    def _parse_body(path: str, text: str | None) -> Any:
        if text is None or text == "":
            return None
        if path.endswith("/_bulk"):
            if not text.endswith("\n"):
                raise _Reject(
                    "The bulk request must be terminated by a newline [\\n]",
                    "illegal_argument_exception",
                )
            try:
                return [json.loads(line) for line in text.split("\n") if line.strip()]
            except ValueError as exc:
                raise _Reject(f"bulk line is not JSON: {exc}", "json_parse_exception") from exc
        try:
            return json.loads(text)
        except ValueError as exc:
            raise _Reject(f"body is not JSON: {exc}", "parsing_exception") from exc

    def _route(self, method: str, path: str, params: dict[str, str], body: Any) -> tuple[int, Any]:
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        if len(parts) == 1 and not parts[0].startswith("_"):
            name = parts[0]
            if method == "HEAD":
                self._params(params, set())
                return (200 if name in self.indices else 404), None
            if method == "PUT":
                self._params(params, set())
                return self._create(name, body)
        if len(parts) == 2 and not parts[0].startswith("_"):
            name, endpoint = parts
            handlers: dict[
                tuple[str, str], Callable[[_Index, dict[str, str], Any], tuple[int, Any]]
            ] = {
                ("POST", "_bulk"): self._bulk,
                ("POST", "_search"): self._search,
                ("GET", "_search"): self._search,
                ("POST", "_count"): self._count,
                ("GET", "_count"): self._count,
                ("POST", "_mget"): self._mget,
                ("GET", "_mget"): self._mget,
                ("POST", "_delete_by_query"): self._delete_by_query,
                ("POST", "_refresh"): self._refresh,
            }
            handler = handlers.get((method, endpoint))
            if handler is not None:
                ix = self.indices.get(name)
                if ix is None:
                    raise _Reject(
                        f"no such index [{name}]", "index_not_found_exception", status=404
                    )
                return handler(ix, params, body)
        raise _unsupported(f"{method} {path}")

    @staticmethod
    def _params(params: dict[str, str], allowed: set[str]) -> None:
        extra = set(params) - allowed
        if extra:
            raise _unsupported(f"the request parameters {sorted(extra)}")

    @staticmethod
    def _keys(body: Any, allowed: set[str], what: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _Reject(f"{what} needs a JSON object body", "parsing_exception")
        extra = set(body) - allowed
        if extra:
            raise _unsupported(f"{what} body keys {sorted(extra)}")
        return body

    @staticmethod
    def _refresh_param(params: dict[str, str]) -> bool:
        value = params.get("refresh", "false")
        if value not in ("true", "false", "wait_for", ""):
            raise _Reject(f"unknown refresh value [{value}]", "illegal_argument_exception")
        return value != "false"

    # ---------------------------------------------------------------- endpoints

    def _create(self, name: str, body: Any) -> tuple[int, Any]:
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
            raise _Reject(f"Invalid index name [{name}]", "invalid_index_name_exception")
        if name in self.indices:
            raise _Reject(
                f"index [{name}/fake] already exists", "resource_already_exists_exception"
            )
        self.indices[name] = _Index(name, body or {})
        return 200, {"acknowledged": True, "shards_acknowledged": True, "index": name}

    def _refresh(self, ix: _Index, params: dict[str, str], body: Any) -> tuple[int, Any]:
        self._params(params, set())
        ix.refresh()
        return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}

    def _bulk(self, ix: _Index, params: dict[str, str], body: Any) -> tuple[int, Any]:
        self._params(params, {"refresh"})
        refresh = self._refresh_param(params)
        if not isinstance(body, list) or not body:
            raise _Reject("bulk request needs actions", "action_request_validation_exception")
        items, errors = [], False
        lines = iter(body)
        for action in lines:
            if not isinstance(action, dict) or set(action) != {"index"}:
                raise _unsupported(f"the bulk action {action!r} (only index)")
            meta = action["index"]
            if (
                not isinstance(meta, dict)
                or set(meta) != {"_id"}
                or not isinstance(meta["_id"], str)
            ):
                raise _unsupported(f"bulk action metadata {meta!r} (only _id)")
            source = next(lines, None)
            if source is None:
                raise _Reject("bulk action without a document", "illegal_argument_exception")
            result: dict[str, Any] = {"_index": ix.name, "_id": meta["_id"]}
            try:
                if self._item_faults:
                    status, kind = self._item_faults.pop(0)
                    raise _Reject("injected by the test", kind, status)
                outcome = ix.put(meta["_id"], ix.parse(source))
                doc = ix.docs[meta["_id"]]
                result |= {
                    "_version": doc.version,
                    "result": outcome,
                    "_seq_no": doc.seq_no,
                    "_primary_term": 1,
                    "status": 201 if outcome == "created" else 200,
                }
            except _Reject as rej:
                errors = True
                result |= {"status": rej.status, "error": {"type": rej.kind, "reason": rej.reason}}
            items.append({"index": result})
        if refresh:
            ix.refresh()
        return 200, {"took": 1, "errors": errors, "items": items}

    def _search(self, ix: _Index, params: dict[str, str], body: Any) -> tuple[int, Any]:
        self._params(params, set())
        body = self._keys(
            body if body is not None else {},
            {"query", "size", "from", "sort", "_source", "docvalue_fields", "track_total_hits"},
            "search",
        )
        size, start = body.get("size", 10), body.get("from", 0)
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (size, start)
        ):
            raise _Reject(
                "from and size must be non-negative integers", "illegal_argument_exception"
            )
        window = ix.settings.get("index.max_result_window", 10_000)
        if start + size > window:
            raise _Reject(
                f"Result window is too large, from + size must be less than or equal to: [{window}]"
                f" but was [{start + size}]",
                "illegal_argument_exception",
            )
        matched = (
            ix.evaluate(body["query"], ix.visible)
            if "query" in body
            else dict.fromkeys(ix.visible, 1.0)
        )
        order = list(matched)  # index order
        sort = body.get("sort")
        if sort is not None:
            order = self._sorted(ix, order, sort)
        else:
            order.sort(key=lambda i: -matched[i])  # stable: ties keep index order
        page = order[start : start + size]
        hits = [self._hit(ix, i, None if sort is not None else matched[i], body) for i in page]
        hits_obj: dict[str, Any] = {}
        track = body.get("track_total_hits", 10_000)
        if track is True:
            hits_obj["total"] = {"value": len(matched), "relation": "eq"}
        elif track is not False:
            if not isinstance(track, int):
                raise _unsupported(f"track_total_hits={track!r}")
            over = len(matched) > track
            hits_obj["total"] = {
                "value": min(len(matched), track),
                "relation": "gte" if over else "eq",
            }
        hits_obj["max_score"] = None if sort is not None or not matched else max(matched.values())
        hits_obj["hits"] = hits
        return 200, {
            "took": 1,
            "timed_out": False,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": hits_obj,
        }

    @staticmethod
    def _sorted(ix: _Index, ids: list[str], sort: Any) -> list[str]:
        if not isinstance(sort, list) or not sort:
            raise _unsupported(f"sort {sort!r} (only a list of field sorts)")
        specs = []
        for s in sort:
            if not isinstance(s, dict) or len(s) != 1:
                raise _unsupported(f"sort entry {s!r}")
            ((name, spec),) = s.items()
            ix.field(name, "keyword", "long", "double")
            if not isinstance(spec, dict) or not {"order"} <= set(spec) <= {"order", "missing"}:
                raise _unsupported(f"sort options {spec!r}")
            order, missing = spec["order"], spec.get("missing", "_last")
            if order not in ("asc", "desc") or missing not in ("_first", "_last"):
                raise _unsupported(f"sort options {spec!r}")
            specs.append((name, order == "desc", missing == "_first"))

        def compare(a: str, b: str) -> int:
            for name, desc, missing_first in specs:
                va, vb = ix.visible[a].source.get(name), ix.visible[b].source.get(name)
                if va is None or vb is None:
                    if va is None and vb is None:
                        continue
                    return (-1 if missing_first else 1) * (1 if va is None else -1)
                if va != vb:
                    c = -1 if va < vb else 1
                    return -c if desc else c
            return 0

        return sorted(ids, key=functools.cmp_to_key(compare))

    @staticmethod
    def _hit(ix: _Index, doc_id: str, score: float | None, body: dict[str, Any]) -> dict[str, Any]:
        src = ix.visible[doc_id].source
        hit: dict[str, Any] = {"_index": ix.name, "_id": doc_id, "_score": score}
        wanted = body.get("_source", True)
        if wanted is True:
            hit["_source"] = src
        elif isinstance(wanted, list) and all(
            isinstance(f, str) and "*" not in f and "." not in f for f in wanted
        ):
            hit["_source"] = {f: src[f] for f in wanted if f in src}
        elif wanted is not False:
            raise _unsupported(f"_source={wanted!r} (only a bool or a list of top-level fields)")
        dv = body.get("docvalue_fields")
        if dv is not None:
            if not isinstance(dv, list) or not all(isinstance(f, str) for f in dv):
                raise _unsupported(f"docvalue_fields={dv!r} (only field names)")
            fields = {}
            for f in dv:
                ix.field(f, "keyword", "long", "double")
                if src.get(f) is not None:
                    fields[f] = _values(src[f])
            if fields:
                hit["fields"] = fields
        return hit

    def _count(self, ix: _Index, params: dict[str, str], body: Any) -> tuple[int, Any]:
        self._params(params, set())
        body = self._keys(body if body is not None else {}, {"query"}, "count")
        matched = ix.evaluate(body["query"], ix.visible) if "query" in body else ix.visible
        return 200, {
            "count": len(matched),
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        }

    def _mget(self, ix: _Index, params: dict[str, str], body: Any) -> tuple[int, Any]:
        self._params(params, set())
        body = self._keys(body, {"ids"}, "mget")
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise _Reject(
                "mget needs a non-empty list of ids", "action_request_validation_exception"
            )
        docs = []
        for i in ids:
            d = ix.docs.get(i)  # realtime: no refresh needed
            if d is None:
                docs.append({"_index": ix.name, "_id": i, "found": False})
            else:
                docs.append(
                    {
                        "_index": ix.name,
                        "_id": i,
                        "_version": d.version,
                        "_seq_no": d.seq_no,
                        "_primary_term": 1,
                        "found": True,
                        "_source": d.source,
                    }
                )
        return 200, {"docs": docs}

    def _delete_by_query(self, ix: _Index, params: dict[str, str], body: Any) -> tuple[int, Any]:
        self._params(params, {"refresh", "conflicts"})
        refresh = self._refresh_param(params)
        conflicts = params.get("conflicts", "abort")
        if conflicts not in ("abort", "proceed"):
            raise _Reject(f"conflicts [{conflicts}]", "illegal_argument_exception")
        body = self._keys(body, {"query"}, "delete_by_query")
        if "query" not in body:
            raise _Reject("delete_by_query needs a query", "action_request_validation_exception")
        matched = ix.evaluate(body["query"], ix.visible)
        deleted = version_conflicts = 0
        for i in matched:
            current = ix.docs.get(i)
            if current is None:
                continue
            if current is not ix.visible[i]:  # rewritten since the last refresh
                version_conflicts += 1
                if conflicts == "abort":
                    raise _Reject(
                        f"[{i}]: version conflict", "version_conflict_engine_exception", 409
                    )
                continue
            del ix.docs[i]
            deleted += 1
        if refresh:
            ix.refresh()
        return 200, {
            "took": 1,
            "timed_out": False,
            "total": len(matched),
            "deleted": deleted,
            "batches": 1,
            "version_conflicts": version_conflicts,
            "noops": 0,
            "retries": {"bulk": 0, "search": 0},
            "throttled_millis": 0,
            "requests_per_second": -1.0,
            "throttled_until_millis": 0,
            "failures": [],
        }


class FakeConnection(Connection):
    """An opensearch-py Connection answered by a `FakeOpenSearch` instead of a socket."""

    def __init__(self, fake: FakeOpenSearch, **kwargs: Any) -> None:
        kwargs.pop("metrics", None)
        kwargs.pop("pool_maxsize", None)
        super().__init__(**kwargs)
        self.fake = fake

    def perform_request(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        timeout: int | float | None = None,
        ignore: Iterable[int] = (),
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        status, payload = self.fake.handle(method, url, params, body)
        raw = "" if payload is None else json.dumps(payload)
        if not 200 <= status < 300 and status not in tuple(ignore):
            self._raise_error(status, raw, "application/json")
        return status, {"content-type": "application/json"}, raw


def fake_opensearch_client(
    fake: FakeOpenSearch | None = None, *, timeout: float = 5.0
) -> tuple[OpenSearch, FakeOpenSearch]:
    """A real `OpenSearch` client whose one connection is the fake (a new one unless given),
    with the adapter's transport options (retries as in production)."""
    from pasture.adapters.aws.opensearch_search_index import client_options

    fake = fake or FakeOpenSearch()
    client = OpenSearch(
        hosts=[{"host": "opensearch.fake.invalid", "port": 443, "scheme": "https"}],
        connection_class=FakeConnection,
        fake=fake,
        **client_options(timeout),
    )
    return client, fake


def fake_search_index(
    dimension: int = 384, *, index: str = "pasture-chunks"
) -> tuple[OpenSearchSearchIndex, FakeOpenSearch]:
    """An `OpenSearchSearchIndex` on a fresh fake cluster (the index is created by its first
    write, as in production)."""
    from pasture.adapters.aws.opensearch_search_index import OpenSearchSearchIndex

    client, fake = fake_opensearch_client()
    return OpenSearchSearchIndex(client, index, dimension=dimension), fake
