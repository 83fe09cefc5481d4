"""Tenant isolation of RAGFlow's dataset, document and chunk routes, generated from the app.

Every `/api/v1` route with an id in its path is found in the app's OpenAPI document. Tenant A
owns a dataset with a parsed document and a chunk; tenant B calls each route with A's ids and
with unknown ids of the same shape, and must get the same answer (HTTP 200, a non-zero code,
the same body once the ids are replaced by placeholders), while A's things stay exactly as they
were. A new dataset route fails `test_every_ragflow_route_is_known` until it is described in
CALLS. Chats, agents and retrieval routes are someone else's (DEFERRED): listed, not exercised.
"""

from __future__ import annotations

import io
import json
import re
import secrets
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pasture.api.app import create_app
from pasture.api.groups import GROUPS
from tests.helpers.ragflow import RF, error_of, name

API = "/api/v1"
DS = API + "/datasets/{dataset_id}"
DOC = DS + "/documents/{document_id}"
DS1 = API + "/dataset/{dataset_id}"
DOC1 = DS1 + "/document/{document_id}"

# How to call each route with ids: the request's JSON body (ids as "{placeholders}") and/or a
# file. Bodies are valid, so the lookup (not the validator) decides the answer.
CALLS: dict[tuple[str, str], dict[str, Any]] = {
    ("PUT", DS): {"json": {"name": "b_was_here"}},
    ("GET", DS + "/documents"): {},
    ("POST", DS + "/documents"): {"files": True},
    ("DELETE", DS + "/documents"): {"json": {"ids": ["{document_id}"]}},
    ("GET", DOC): {},
    ("PUT", DOC): {"json": {"name": "b_was_here.txt"}},
    ("POST", DS + "/chunks"): {"json": {"document_ids": ["{document_id}"]}},
    ("DELETE", DS + "/chunks"): {"json": {"document_ids": ["{document_id}"]}},
    ("GET", DOC + "/chunks"): {},
    ("POST", DOC + "/chunks"): {"json": {"content": "B's chunk"}},
    ("DELETE", DOC + "/chunks"): {"json": {"chunk_ids": ["{chunk_id}"]}},
    ("PUT", DOC + "/chunks/{chunk_id}"): {"json": {"content": "B's edit", "available": False}},
    # The singular draft's aliases, with its field names.
    ("PUT", DS1): {"json": {"dataset_name": "b_was_here", "parse_method": "qa"}},
    ("DELETE", DS1): {},
    ("POST", DS1 + "/document"): {"files": True},
    ("GET", DOC1): {},
    ("GET", DS1 + "/info"): {},
    ("PUT", DS1 + "/info/{document_id}"): {"json": {"document_name": "b_was_here.txt"}},
    ("POST", DS1 + "/chunk"): {"json": {"documents": ["{document_id}"]}},
    ("DELETE", DS1 + "/chunk"): {"json": {"documents": ["{document_id}"]}},
    ("GET", DOC1 + "/chunk"): {},
    ("POST", DOC1 + "/chunk"): {"json": {"content": ["B's chunk"]}},
    ("PUT", DOC1 + "/chunk"): {"json": {"chunk_id": "{chunk_id}", "content": "B's edit"}},
    ("DELETE", DOC1 + "/chunk"): {"json": {"chunks": ["{chunk_id}"]}},
}
# Dataset routes without ids in the path: each has its own test below.
NO_ID = {
    ("GET", API + "/datasets"): "test_listing_never_shows_another_tenants_dataset",
    ("POST", API + "/datasets"): "test_same_name_in_another_tenant_is_another_dataset",
    ("DELETE", API + "/datasets"): "test_deleting_another_tenants_dataset_fails_like_unknown",
    ("GET", API + "/dataset"): "test_listing_never_shows_another_tenants_dataset",
    ("POST", API + "/dataset"): "test_same_name_in_another_tenant_is_another_dataset",
    ("DELETE", API + "/dataset"): "test_deleting_another_tenants_dataset_fails_like_unknown",
}
# Being written by others now: only checked to be there, never called here.
DEFERRED_PREFIXES = ("/chats", "/chat", "/agents", "/retrieval")

ORDER = {"GET": 0, "POST": 1, "PUT": 2, "DELETE": 3}


def deferred(path: str) -> bool:
    rest = path.removeprefix(API)
    return path.endswith("/retrieval") or any(
        rest == p or rest.startswith(p + "/") for p in DEFERRED_PREFIXES
    )


def ragflow_routes() -> list[tuple[str, str]]:
    paths = create_app(GROUPS).openapi()["paths"]
    return [(m.upper(), p) for p, ops in paths.items() if p.startswith(API + "/") for m in ops]


ROUTES = ragflow_routes()
DEFERRED = sorted(r for r in ROUTES if deferred(r[1]))
ID_ROUTES = sorted(
    (r for r in ROUTES if "{" in r[1] and "/dataset" in r[1] and not deferred(r[1])),
    key=lambda mp: (ORDER[mp[0]], mp[1]),
)


def test_every_ragflow_route_is_known() -> None:
    """A new route under /api/v1 must be described here (or belong to a deferred family)."""
    unknown = [r for r in ROUTES if r not in CALLS and r not in NO_ID and r not in DEFERRED]
    assert not unknown, f"describe how to call these in CALLS or NO_ID: {unknown}"
    stale = [r for r in [*CALLS, *NO_ID] if r not in ROUTES]
    assert not stale, f"no longer routes of the app: {stale}"
    assert set(ID_ROUTES) == set(CALLS)
    assert len(ID_ROUTES) >= 24


def test_deferred_routes_exist_and_are_left_to_their_owners() -> None:
    families = {
        p: [r for r in DEFERRED if r[1].removeprefix(API).startswith(p)] for p in DEFERRED_PREFIXES
    }
    assert all(families.values()), families
    assert not any(
        "{" in path and "/dataset" in path
        for _, path in DEFERRED
        if not path.endswith("/retrieval")
    )


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def owned(client: TestClient, api_keys: dict[str, str]) -> dict[str, str]:
    """Tenant A's dataset with a parsed document (and a chunk added by hand), and B's own."""
    a = RF(client, api_keys["alice"])
    ds = a.create_dataset(name("iso"))
    (doc,) = a.parsed(ds["id"], ("secret.txt", b"Tenant A's secret: the key is under the mat."))
    a.add_chunk(ds["id"], doc["id"], "A's own chunk, added by hand.")
    chunk = a.chunks(ds["id"], doc["id"])["chunks"][0]
    b_ds = RF(client, api_keys["bob"]).create_dataset(name("iso_b"))
    return {
        "dataset_id": ds["id"],
        "dataset_name": ds["name"],
        "document_id": doc["id"],
        "chunk_id": chunk["id"],
        "b_dataset_id": b_ds["id"],
    }


def snapshot(a: RF, owned: dict[str, str]) -> dict[str, Any]:
    """Everything A can see of its things."""
    ds, doc = owned["dataset_id"], owned["document_id"]
    r = a.req("GET", f"/datasets/{ds}/documents/{doc}")
    assert r.status_code == 200
    return {
        "dataset": a.dataset(ds),
        "documents": a.documents(ds),
        "chunks": a.chunks(ds, doc),
        "file": r.content,
    }


@pytest.fixture(scope="module")
def a_before(client: TestClient, api_keys: dict[str, str], owned: dict[str, str]) -> Any:
    return snapshot(RF(client, api_keys["alice"]), owned)


def unknown_ids() -> dict[str, str]:
    return {
        "dataset_id": secrets.token_hex(16),
        "document_id": secrets.token_hex(32),
        "chunk_id": secrets.token_hex(16),
    }


def fill(value: Any, ids: dict[str, str]) -> Any:
    text = json.dumps(value)
    for key, v in ids.items():
        text = text.replace("{" + key + "}", v)
    return json.loads(text)


def call(rf: RF, method: str, template: str, ids: dict[str, str]) -> tuple[int, str]:
    params = re.findall(r"{(\w+)}", template)
    path = template.format(**{p: ids[p] for p in params}).removeprefix(API)
    spec = CALLS[(method, template)]
    kw: dict[str, Any] = {}
    if "json" in spec:
        kw["json"] = fill(spec["json"], ids)
    if spec.get("files"):
        kw["files"] = [("file", ("b.txt", io.BytesIO(b"B's bytes")))]
    r = rf.req(method, path, **kw)
    code, _ = error_of(r)  # HTTP 200 and a non-zero code, never a success or a crash
    text = r.text
    for key in ("dataset_id", "document_id", "chunk_id"):
        text = text.replace(ids[key], f"<{key}>")
    return code, text


# ---------------------------------------------------------------------- id routes


@pytest.mark.parametrize(("method", "template"), ID_ROUTES, ids=[f"{m} {t}" for m, t in ID_ROUTES])
def test_another_tenants_ids_answer_like_unknown_ids(
    method: str,
    template: str,
    client: TestClient,
    api_keys: dict[str, str],
    owned: dict[str, str],
    a_before: Any,
) -> None:
    a, b = RF(client, api_keys["alice"]), RF(client, api_keys["bob"])
    on_a = call(b, method, template, owned)
    on_unknown = call(b, method, template, {**owned, **unknown_ids()})
    assert on_a == on_unknown
    assert snapshot(a, owned) == a_before


MIXED = [r for r in ID_ROUTES if "document_id" in r[1] + json.dumps(CALLS[r])]


@pytest.mark.parametrize(("method", "template"), MIXED, ids=[f"{m} {t}" for m, t in MIXED])
def test_own_dataset_with_another_tenants_document_ids(
    method: str,
    template: str,
    client: TestClient,
    api_keys: dict[str, str],
    owned: dict[str, str],
    a_before: Any,
) -> None:
    """B's own dataset id with A's document and chunk ids: as unknown as any other ids."""
    a, b = RF(client, api_keys["alice"]), RF(client, api_keys["bob"])
    mine = {**owned, "dataset_id": owned["b_dataset_id"]}
    on_a = call(b, method, template, mine)
    on_unknown = call(b, method, template, {**unknown_ids(), "dataset_id": mine["dataset_id"]})
    assert on_a == on_unknown
    assert snapshot(a, owned) == a_before


# ---------------------------------------------------------------------- routes without ids


def test_listing_never_shows_another_tenants_dataset(
    client: TestClient, api_keys: dict[str, str], owned: dict[str, str], a_before: Any
) -> None:
    b = RF(client, api_keys["bob"])
    b.create_dataset(name("bobs"))
    for path, params in (("/datasets", {}), ("/dataset", {"page": 0})):
        listed = b.ok("GET", path, params={**params, "page_size": 1000})
        assert listed and owned["dataset_id"] not in {d["id"] for d in listed}
        assert owned["dataset_name"] not in {d["name"] for d in listed}
        assert all(d["tenant_id"] == "bob" for d in listed)
        # Filtering by A's id or name answers as for ids and names nobody has.
        assert b.err("GET", path, params={"id": owned["dataset_id"]}) == b.err(
            "GET", path, params={"id": secrets.token_hex(16)}
        )
        assert b.err("GET", path, params={"name": owned["dataset_name"]}) == b.err(
            "GET", path, params={"name": name("nobody")}
        )
    assert snapshot(RF(client, api_keys["alice"]), owned) == a_before


def test_deleting_another_tenants_dataset_fails_like_unknown(
    client: TestClient, api_keys: dict[str, str], owned: dict[str, str], a_before: Any
) -> None:
    a, b = RF(client, api_keys["alice"]), RF(client, api_keys["bob"])
    mine = b.create_dataset(name("bobs"))["id"]
    unknown = secrets.token_hex(16)
    for path, body in (
        ("/datasets", {"ids": [owned["dataset_id"]]}),
        ("/datasets", {"ids": [mine, owned["dataset_id"]]}),
        ("/dataset", {"ids": [owned["dataset_id"]]}),
    ):
        on_a = b.req("DELETE", path, json=body)
        on_unknown = b.req(
            "DELETE",
            path,
            json={"ids": [unknown if i == owned["dataset_id"] else i for i in body["ids"]]},
        )
        assert error_of(on_a)[0] == error_of(on_unknown)[0]
        assert on_a.text.replace(owned["dataset_id"], "<id>") == on_unknown.text.replace(
            unknown, "<id>"
        )
    assert b.err("DELETE", "/dataset", json={"names": [owned["dataset_name"]]}) == b.err(
        "DELETE", "/dataset", json={"names": [name("nobody")]}
    )
    assert b.dataset(mine)["id"] == mine  # a failed delete deletes nothing, B's own included
    # B deleting everything it has leaves A's alone.
    b.ok("DELETE", "/datasets", json={"ids": None})
    b.ok("DELETE", "/datasets")
    assert b.datasets() == []
    assert snapshot(a, owned) == a_before


def test_same_name_in_another_tenant_is_another_dataset(
    client: TestClient, api_keys: dict[str, str], owned: dict[str, str], a_before: Any
) -> None:
    a, b = RF(client, api_keys["alice"]), RF(client, api_keys["bob"])
    theirs = b.create_dataset(owned["dataset_name"])
    assert theirs["id"] != owned["dataset_id"] and theirs["tenant_id"] == "bob"
    assert theirs["document_count"] == theirs["chunk_count"] == 0
    b.ok("DELETE", "/datasets", json={"ids": [theirs["id"]]})
    again = b.ok("POST", "/dataset", json={"dataset_name": owned["dataset_name"].upper()})
    assert again["id"] != owned["dataset_id"] and again["document_count"] == 0
    assert snapshot(a, owned) == a_before


AUTHED = sorted([*CALLS, *NO_ID], key=lambda mp: (ORDER[mp[0]], mp[1]))


@pytest.mark.parametrize(("method", "template"), AUTHED, ids=[f"{m} {t}" for m, t in AUTHED])
def test_every_dataset_route_needs_a_valid_key(
    method: str,
    template: str,
    client: TestClient,
    api_keys: dict[str, str],
    owned: dict[str, str],
    a_before: Any,
) -> None:
    """No key: code 109 with a clear message; an unknown key: RAGFlow's `Token is not valid!`."""
    spec = CALLS.get((method, template), {"json": {"ids": ["{dataset_id}"]}})
    for key in (None, "not-a-key"):
        rf = RF(client, key)
        params = re.findall(r"{(\w+)}", template)
        path = template.format(**{p: owned[p] for p in params}).removeprefix(API)
        kw: dict[str, Any] = {}
        if "json" in spec:
            kw["json"] = fill(spec["json"], owned)
        if spec.get("files"):
            kw["files"] = [("file", ("b.txt", io.BytesIO(b"B's bytes")))]
        code, message = rf.err(method, path, **kw)
        if key is None:
            assert code == 109 and "Authorization" in message, message
        else:
            assert (code, message) == (109, "Token is not valid!")
    assert snapshot(RF(client, api_keys["alice"]), owned) == a_before
