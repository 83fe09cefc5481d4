"""RAGFlow datasets over raw HTTP: `/api/v1/datasets` and the singular draft's `/api/v1/dataset`.

Shapes and messages follow ragflow-api-v0.14.txt and compat-notes.md (RAGFlow section): HTTP
200 with `{code, data}` or `{code, message}`, ids of 32 hex, epoch-ms times with RFC 1123 dates.
Tests that look at a whole listing use a tenant of their own (the module's extra API keys).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers.ragflow import (
    CHUNK_METHODS,
    RF,
    assert_dataset,
    error_of,
    name,
    unknown_dataset_id,
)

TENANTS = ("alice", "bob", "carol", "dave", "erin", "frank")
NAIVE_DEFAULTS = {
    "chunk_token_num": 128,
    "delimiter": "\n!?;。；！？",
    "html4excel": False,
    "layout_recognize": True,
    "raptor": {"use_raptor": False},
}
DUPLICATE = "Duplicated dataset name in creating dataset."


def not_in(method: Any) -> str:
    return f"'{method}' is not in {CHUNK_METHODS}"


@pytest.fixture(scope="module")
def api_keys() -> dict[str, str]:
    """More tenants than the usual two, so listing tests own a whole tenant."""
    return {t: f"{t[0]}k-{secrets.token_hex(16)}" for t in TENANTS}


@pytest.fixture
def rf(client: TestClient, api_keys: dict[str, str]) -> dict[str, RF]:
    return {t: RF(client, api_keys[t]) for t in TENANTS}


def empty_tenant(rf: RF) -> RF:
    rf.ok("DELETE", "/datasets", json={"ids": None})
    assert rf.datasets() == []
    return rf


def ids_of(items: list[dict[str, Any]]) -> list[str]:
    return [i["id"] for i in items]


# ---------------------------------------------------------------------- create


def test_create_returns_the_dataset_with_ragflows_defaults(rf: dict[str, RF]) -> None:
    a = rf["alice"]
    n = name("create")
    ds = a.create_dataset(n)
    assert_dataset(ds)
    assert ds["name"] == n
    assert (ds["chunk_count"], ds["document_count"], ds["token_num"]) == (0, 0, 0)
    assert ds["chunk_method"] == "naive" and ds["parser_config"] == NAIVE_DEFAULTS
    assert (ds["similarity_threshold"], ds["vector_similarity_weight"]) == (0.2, 0.3)
    assert (ds["permission"], ds["language"]) == ("me", "English")
    assert ds["tenant_id"] == ds["created_by"] == "alice"
    assert ds["create_time"] == ds["update_time"]
    assert abs(ds["create_time"] / 1000 - time.time()) < 60
    # The listing shows exactly what create returned.
    assert a.datasets(id=ds["id"]) == [ds]


def test_create_with_settings(rf: dict[str, RF]) -> None:
    ds = rf["alice"].create_dataset(
        name("qa"),
        chunk_method="qa",
        language="Chinese",
        description="questions",
        permission="team",
        parser_config={"chunk_token_count": 64, "delimiter": "\n"},
    )
    assert ds["chunk_method"] == "qa"
    assert (ds["language"], ds["description"], ds["permission"]) == ("Chinese", "questions", "team")
    # The document's `chunk_token_count` spelling is stored as the server's `chunk_token_num`.
    assert ds["parser_config"] == {
        "raptor": {"use_raptor": False},
        "chunk_token_num": 64,
        "delimiter": "\n",
    }
    for method, config in (("one", {}), ("knowledge_graph", {"entity_types"})):
        got = rf["alice"].create_dataset(name(method), chunk_method=method)
        assert got["chunk_method"] == method
        assert set(config) <= set(got["parser_config"])
        if not config:
            assert got["parser_config"] == {}


def test_names_are_unique_per_tenant_case_insensitively(rf: dict[str, RF]) -> None:
    a, b = rf["alice"], rf["bob"]
    n = name("Dup")
    first = a.create_dataset(n)
    for other in (n, n.upper(), n.lower(), f"  {n}  "):
        assert a.err("POST", "/datasets", json={"name": other}) == (102, DUPLICATE)
    assert [d["name"] for d in a.datasets(name=n.lower())] == [n]  # nothing half-created
    # Another tenant may use the name; its dataset is its own.
    theirs = b.create_dataset(n.upper())
    assert theirs["id"] != first["id"]
    assert ids_of(a.datasets(name=n)) == [first["id"]]
    # Once deleted, the name is free again (in any case).
    a.ok("DELETE", "/datasets", json={"ids": [first["id"]]})
    again = a.create_dataset(n.lower())
    assert again["name"] == n.lower() and again["id"] != first["id"]


def test_create_refuses_bad_fields_and_creates_nothing(rf: dict[str, RF]) -> None:
    a = rf["erin"]
    before = a.datasets()
    n = name("bad")
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"name": n, "chunk_method": "x"}, not_in("x")),
        ({"name": n, "chunk_method": "general"}, not_in("general")),  # only the draft's alias
        ({}, None),
        ({"name": ""}, None),
        ({"name": "   "}, None),
        ({"name": 42}, None),
        ({"name": n, "tenant_id": "bob"}, None),
        ({"name": n, "id": unknown_dataset_id()}, None),
        ({"name": n, "chunk_count": 3}, None),
        ({"name": n, "document_count": 1}, None),
        ({"name": n, "permission": "everyone"}, None),
        ({"name": n, "language": "Klingon"}, None),
        ({"name": n, "embedding_model": "BAAI/bge-zh-v1.5"}, None),
        ({"name": n, "parser_config": "big"}, None),
        ({"name": n, "parser_config": {"chunk_token_num": 0}}, None),
        ({"name": n, "parser_config": {"chunk_token_num": "128"}}, None),
    ]
    for body, message in cases:
        code, got = a.err("POST", "/datasets", json=body)
        if message is not None:
            assert (code, got) == (102, message), body
    assert a.datasets() == before


def test_embedding_model_may_name_the_servers_model(rf: dict[str, RF]) -> None:
    a = rf["alice"]
    model = a.create_dataset(name("emb"))["embedding_model"]
    for spelled in (model, f"{model}@Local", f"sentence-transformers/{model}"):
        assert a.create_dataset(name("emb"), embedding_model=spelled)["embedding_model"] == model


# ---------------------------------------------------------------------- auth and bodies


def test_auth_failures_are_code_109(client: TestClient, rf: dict[str, RF]) -> None:
    ds = rf["alice"].create_dataset(name("auth"))
    routes: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/datasets", {}),
        ("POST", "/datasets", {"json": {"name": name("auth")}}),
        ("PUT", f"/datasets/{ds['id']}", {"json": {"name": "stolen"}}),
        ("DELETE", "/datasets", {"json": {"ids": [ds["id"]]}}),
        ("GET", f"/datasets/{ds['id']}/documents", {}),
        ("POST", "/dataset", {"json": {"dataset_name": name("auth")}}),
    ]
    for method, path, kw in routes:
        code, message = RF(client, None).err(method, path, **kw)
        assert code == 109 and "Authorization" in message, (method, path, message)
        assert RF(client, "not-a-key").err(method, path, **kw) == (109, "Token is not valid!")
        for header in ("Bearer", "Bearer ", "Basic abc", "Token"):
            r = client.request(method, "/api/v1" + path, headers={"Authorization": header}, **kw)
            assert error_of(r)[0] == 109, (header, r.text)
    # Nothing above changed A's dataset.
    assert rf["alice"].dataset(ds["id"]) == ds


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2]", b'["name"]', b'"a string"', b"42", b"true", b"{'name': 'x'}"],
)
def test_bodies_that_are_not_json_objects_are_refused(rf: dict[str, RF], raw: bytes) -> None:
    a = rf["alice"]
    ds = a.create_dataset(name("body"))
    headers = {"Content-Type": "application/json"}
    for method, path in (
        ("POST", "/datasets"),
        ("PUT", f"/datasets/{ds['id']}"),
        ("DELETE", "/datasets"),
        ("POST", "/dataset"),
        ("PUT", f"/dataset/{ds['id']}"),
        ("DELETE", f"/dataset/{ds['id']}"),
        ("DELETE", "/dataset"),
    ):
        code, message = a.err(method, path, content=raw, headers=headers)
        assert code == 101, (method, path, code, message)
        assert "JSON" in message, message
    assert a.dataset(ds["id"]) == ds  # still there, unchanged


def test_json_null_body_is_an_empty_body(rf: dict[str, RF]) -> None:
    a = rf["alice"]
    ds = a.create_dataset(name("null"))
    a.ok(
        "PUT",
        f"/datasets/{ds['id']}",
        content=b"null",
        headers={"Content-Type": "application/json"},
    )
    assert a.dataset(ds["id"])["name"] == ds["name"]


# ---------------------------------------------------------------------- list


def test_list_paging_order_and_filters(rf: dict[str, RF]) -> None:
    c = empty_tenant(rf["carol"])
    made = []
    for i in range(3):
        made.append(c.create_dataset(f"List_{i}_{secrets.token_hex(3)}"))
        time.sleep(0.005)
    first, second, third = ids_of(made)
    newest_first = [third, second, first]

    assert ids_of(c.datasets()) == newest_first  # create_time, descending by default
    assert ids_of(c.datasets(desc="true")) == newest_first
    for off in ("false", "False", "FALSE", "0"):
        assert ids_of(c.datasets(desc=off)) == [first, second, third], off
    assert ids_of(c.datasets(orderby="create_time", desc="False")) == [first, second, third]

    # Pages are 1-based; page_size cuts; past the end is empty.
    assert ids_of(c.datasets(page=1, page_size=2)) == [third, second]
    assert ids_of(c.datasets(page=2, page_size=2)) == [first]
    assert c.datasets(page=3, page_size=2) == []
    assert ids_of(c.datasets(page=2, page_size=1, desc="false")) == [second]

    # update_time: the dataset changed last comes first.
    time.sleep(0.005)
    c.ok("PUT", f"/datasets/{first}", json={"description": "touched"})
    assert ids_of(c.datasets(orderby="update_time"))[0] == first
    assert ids_of(c.datasets(orderby="update_time", desc="false"))[-1] == first
    assert ids_of(c.datasets(orderby="create_time")) == newest_first

    # Filters: id, name (case-insensitive), and both.
    assert ids_of(c.datasets(id=second)) == [second]
    assert ids_of(c.datasets(name=made[1]["name"].upper())) == [second]
    assert ids_of(c.datasets(id=second, name=made[1]["name"])) == [second]
    missing = (102, "The dataset doesn't exist")
    assert c.err("GET", "/datasets", params={"id": unknown_dataset_id()}) == missing
    assert c.err("GET", "/datasets", params={"name": "no_such_dataset"}) == missing
    assert c.err("GET", "/datasets", params={"id": second, "name": made[0]["name"]}) == missing

    for params in (
        {"page": 0},
        {"page": -1},
        {"page": "abc"},
        {"page_size": 0},
        {"page_size": "x"},
        {"orderby": "name"},
    ):
        code, message = c.err("GET", "/datasets", params=params)
        assert code == 102, (params, message)
    assert c.err("GET", "/datasets", params={"orderby": "name"})[1] == (
        "'name' is not in ['create_time', 'update_time']"
    )


def test_list_counts_documents_and_chunks(rf: dict[str, RF]) -> None:
    a = rf["alice"]
    ds = a.create_dataset(name("counts"))
    docs = a.upload(ds["id"], ("one.txt", b"First file."), ("two.txt", b"Second file."))
    a.add_chunk(ds["id"], docs[0]["id"], "A chunk by hand.")
    a.add_chunk(ds["id"], docs[0]["id"], "Another chunk by hand.")
    listed = a.dataset(ds["id"])
    assert (listed["document_count"], listed["chunk_count"]) == (2, 2)
    assert listed["token_num"] > 0


# ---------------------------------------------------------------------- delete


def test_delete_by_ids_all_and_nothing(rf: dict[str, RF]) -> None:
    d = empty_tenant(rf["dave"])
    one, two, three = (d.create_dataset(name("del"))["id"] for _ in range(3))

    d.ok("DELETE", "/datasets", json={"ids": []})  # an empty list deletes nothing
    assert len(d.datasets()) == 3
    d.ok("DELETE", "/datasets", json={"ids": [one, one]})
    assert sorted(ids_of(d.datasets())) == sorted([two, three])
    assert d.err("GET", f"/datasets/{one}/documents") == (102, f"You don't own the dataset {one}.")

    # One unknown id: nothing is deleted, and the message names it.
    unknown = unknown_dataset_id()
    assert d.err("DELETE", "/datasets", json={"ids": [two, unknown]}) == (
        102,
        f"You don't own the dataset {unknown}.",
    )
    assert d.err("DELETE", "/datasets", json={"ids": [one]}) == (
        102,
        f"You don't own the dataset {one}.",
    )
    assert len(d.datasets()) == 2
    for bad in ("abc", [1], {"id": two}):
        d.err("DELETE", "/datasets", json={"ids": bad})
    assert len(d.datasets()) == 2

    # `ids` null, left out, or no body at all: every dataset of the tenant.
    d.ok("DELETE", "/datasets", json={"ids": None})
    assert d.datasets() == []
    d.create_dataset(name("del"))
    d.ok("DELETE", "/datasets", json={})
    assert d.datasets() == []
    d.create_dataset(name("del"))
    d.ok("DELETE", "/datasets")
    assert d.datasets() == []


def test_delete_all_takes_documents_and_leaves_other_tenants(rf: dict[str, RF]) -> None:
    f, a = empty_tenant(rf["frank"]), rf["alice"]
    mine = a.create_dataset(name("keep"))
    ds = f.create_dataset(name("gone"))
    f.upload(ds["id"], ("f.txt", b"Frank's file."))
    f.ok("DELETE", "/datasets")
    assert f.datasets() == []
    assert f.err("GET", f"/datasets/{ds['id']}/documents")[0] == 102
    assert a.dataset(mine["id"]) == mine


# ---------------------------------------------------------------------- update


def test_update_name_and_settings(rf: dict[str, RF]) -> None:
    a = rf["alice"]
    ds = a.create_dataset(name("upd"))
    new = name("renamed")
    time.sleep(0.005)
    assert a.ok("PUT", f"/datasets/{ds['id']}", json={"name": new}) is None
    got = a.dataset(ds["id"])
    assert got["name"] == new
    assert got["update_time"] > ds["update_time"] and got["create_time"] == ds["create_time"]
    # The old name is free again; the new one is taken.
    assert a.create_dataset(ds["name"])["name"] == ds["name"]
    assert a.err("POST", "/datasets", json={"name": new.upper()}) == (102, DUPLICATE)
    # A change of case only is the same name.
    a.ok("PUT", f"/datasets/{ds['id']}", json={"name": new.upper()})
    assert a.dataset(ds["id"])["name"] == new.upper()

    a.ok(
        "PUT",
        f"/datasets/{ds['id']}",
        json={
            "description": "d",
            "language": "Chinese",
            "permission": "team",
            "avatar": "aGk=",
            "similarity_threshold": 0.5,
            "vector_similarity_weight": 0.7,
            "chunk_method": "one",
        },
    )
    got = a.dataset(ds["id"])
    assert (got["description"], got["language"], got["permission"]) == ("d", "Chinese", "team")
    assert (got["similarity_threshold"], got["vector_similarity_weight"]) == (0.5, 0.7)
    assert (got["chunk_method"], got["parser_config"]) == ("one", {})
    a.ok("PUT", f"/datasets/{ds['id']}", json={"chunk_method": "naive"})
    assert a.dataset(ds["id"])["parser_config"] == NAIVE_DEFAULTS
    a.ok("PUT", f"/datasets/{ds['id']}", json={"parser_config": {"chunk_token_num": 256}})
    assert a.dataset(ds["id"])["parser_config"] == {**NAIVE_DEFAULTS, "chunk_token_num": 256}


def test_update_refusals(rf: dict[str, RF]) -> None:
    a = rf["alice"]
    ds = a.create_dataset(name("refuse"))
    other = a.create_dataset(name("Other"))
    path = f"/datasets/{ds['id']}"
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"name": other["name"].lower()}, "Duplicated dataset name in updating dataset."),
        ({"tenant_id": "bob"}, "Can't change `tenant_id`."),
        ({"chunk_count": 1}, "Can't change `chunk_count`."),
        ({"document_count": 9}, "Can't change `document_count`."),
        ({"chunk_method": "x"}, not_in("x")),
        ({"name": ""}, None),
        ({"name": None}, None),
        ({"id": unknown_dataset_id()}, None),
        ({"permission": "all"}, None),
        ({"language": "Elvish"}, None),
        ({"similarity_threshold": 2}, None),
        ({"vector_similarity_weight": "high"}, None),
        ({"parser_config": []}, None),
        ({"embedding_model": "BAAI/bge-zh-v1.5"}, None),
    ]
    for body, message in cases:
        code, got = a.err("PUT", path, json=body)
        if message is not None:
            assert (code, got) == (102, message), body
    assert a.dataset(ds["id"]) == ds  # nothing changed
    # Read-only fields that match are accepted (clients send them back).
    a.ok("PUT", path, json={"tenant_id": "alice", "chunk_count": 0, "document_count": 0})
    unknown = unknown_dataset_id()
    assert a.err("PUT", f"/datasets/{unknown}", json={"name": name()}) == (
        102,
        f"You don't own the dataset {unknown}.",
    )


def test_chunk_method_is_fixed_once_there_are_chunks(rf: dict[str, RF]) -> None:
    a = rf["alice"]
    ds = a.create_dataset(name("fixed"))
    (doc,) = a.upload(ds["id"], ("c.txt", b"Some text."))
    a.ok("PUT", f"/datasets/{ds['id']}", json={"chunk_method": "qa"})  # no chunks yet: fine
    a.add_chunk(ds["id"], doc["id"], "A chunk.")
    assert a.err("PUT", f"/datasets/{ds['id']}", json={"chunk_method": "naive"}) == (
        102,
        "If `chunk_count` is not 0, `chunk_method` is not changeable.",
    )
    assert a.err("PUT", f"/datasets/{ds['id']}", json={"chunk_count": 0})[1] == (
        "Can't change `chunk_count`."
    )
    a.ok("PUT", f"/datasets/{ds['id']}", json={"chunk_method": "qa", "chunk_count": 1})
    assert a.dataset(ds["id"])["chunk_method"] == "qa"


# ---------------------------------------------------------------------- the singular draft


def test_singular_create_list_update_delete(rf: dict[str, RF]) -> None:
    a = rf["alice"]
    n = name("singular")
    # The draft's create body, read-only fields and all.
    draft = {
        "dataset_name": n,
        "tenant_id": "4fb0cd625f9311efba4a0242ac120006",
        "chunk_count": 0,
        "document_count": 0,
        "parse_method": "general",
    }
    created = a.ok("POST", "/dataset", json=draft)
    assert_dataset(created)
    assert (created["name"], created["chunk_method"], created["tenant_id"]) == (
        n,
        "naive",
        "alice",
    )
    assert a.err("POST", "/dataset", json={"dataset_name": n.upper()}) == (102, DUPLICATE)
    assert a.err("POST", "/dataset", json={"dataset_name": n, "parse_method": "x"})[1] == not_in(
        "x"
    )

    # The draft counts pages from 0.
    listed = a.ok(
        "GET",
        "/dataset",
        params={"page": 0, "page_size": 50, "orderby": "create_time", "desc": "false"},
    )
    assert created["id"] in ids_of(listed)
    assert a.ok("GET", "/dataset", params={"name": n}) == a.datasets(name=n)

    new = name("singular_renamed")
    a.ok(
        "PUT",
        f"/dataset/{created['id']}",
        json={**draft, "dataset_name": new, "parse_method": "qa"},
    )
    got = a.dataset(created["id"])
    assert (got["name"], got["chunk_method"]) == (new, "qa")
    a.ok("PUT", f"/dataset/{created['id']}", json={"parse_method": "general"})
    assert a.dataset(created["id"])["chunk_method"] == "naive"

    # DELETE /dataset/{id} with no body deletes that dataset.
    a.ok("DELETE", f"/dataset/{created['id']}")
    assert a.err("GET", "/datasets", params={"id": created["id"]})[0] == 102
    unknown = unknown_dataset_id()
    assert a.err("DELETE", f"/dataset/{unknown}") == (102, f"You don't own the dataset {unknown}.")


def test_singular_delete_by_names_and_ids(rf: dict[str, RF]) -> None:
    a = rf["alice"]
    x, y, z = (a.create_dataset(name("byname")) for _ in range(3))
    # The draft's example: DELETE /api/v1/dataset/0 with `names` (the path id is ignored).
    a.ok("DELETE", "/dataset/0", json={"names": [x["name"].upper(), y["name"]]})
    for gone in (x, y):
        assert a.err("GET", "/datasets", params={"id": gone["id"]})[0] == 102
    # An unknown name deletes nothing.
    assert a.err("DELETE", "/dataset/0", json={"names": [z["name"], "no_such"]}) == (
        102,
        "Try to delete non-existent dataset.",
    )
    assert a.dataset(z["id"]) == z
    code, message = a.err("DELETE", "/dataset", json={"names": [z["name"]], "ids": [z["id"]]})
    assert code == 102 and "exclusive" in message
    a.err("DELETE", "/dataset", json={"names": z["name"]})
    a.err("DELETE", "/dataset")  # neither ids nor names: nothing to do, and not "all"
    assert a.dataset(z["id"]) == z
    a.ok("DELETE", "/dataset", json={"ids": [z["id"]]})
    assert a.err("GET", "/datasets", params={"id": z["id"]})[0] == 102
