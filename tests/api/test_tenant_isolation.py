"""Tenant isolation, generated from the route manifest.

For every route whose path takes an id, tenant A owns a real resource; tenant B asks for it
and must get exactly the answer B gets for an id that does not exist. Routes are discovered
from the app built from GROUPS, so a new route is covered by default: the test fails until
the route's ids and body are described below (or it is listed as not owning anything).
"""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pasture.api.app import create_app
from pasture.api.groups import GROUPS
from tests.helpers.llamafarm import LF, uniq

# Routes with an id in the path that still own nothing: they act in the caller's own space.
NOT_OWNED: dict[tuple[str, str], str] = {
    ("POST", "/v1/projects/{namespace}"): "creates a project in the caller's own namespace",
    ("GET", "/v1/projects/{namespace}"): "lists the caller's own projects in the namespace",
    ("POST", "/v1/examples/{example_id}/import-project"): "public example id, caller's own space",
    ("POST", "/v1/examples/{example_id}/import-data"): "public example id; body tested on its own",
    ("DELETE", "/v1/system/token/{token}"): (
        "authenticated by a RAGFlow login session, not an API key; revoking another account's"
        " key is tested in test_ragflow_accounts.py"
    ),
}

# Request bodies that pass validation, so the lookup (not the validator) decides the answer.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PUT", "/v1/projects/{namespace}/{project}"): {"json": "CONFIG"},
    ("POST", "/v1/projects/{namespace}/{project}/datasets"): {"json": {"name": "newds"}},
    ("POST", "/v1/projects/{namespace}/{project}/datasets/{dataset}/data"): {"files": True},
    ("POST", "/v1/projects/{namespace}/{project}/rag/query"): {"json": {"query": "secret plans"}},
    ("POST", "/v1/projects/{namespace}/{project}/chat/completions"): {
        "json": {"messages": [{"role": "user", "content": "secret plans?"}], "max_tokens": 1}
    },
    # llama_internet_chatbot
    ("PUT", "/chats/update/{chat_id}"): {"json": {"name": "renamed by B"}},
}

# Destructive routes run last, so earlier checks still find A's resources.
ORDER = {"GET": 0, "POST": 1, "PUT": 2, "DELETE": 3}


def id_routes() -> list[tuple[str, str]]:
    # The OpenAPI document lists every route of every group the app was built from.
    paths = create_app(GROUPS).openapi()["paths"]
    # RAGFlow's routes (`/api/...`) answer in their own envelope (HTTP 200 + code): their
    # isolation is tested in test_ragflow_isolation.py.
    out = [
        (m.upper(), path)
        for path, ops in paths.items()
        if "{" in path and not path.startswith("/api/")
        for m in ops
    ]
    out.sort(
        # Deletes last, the deepest first (a file before its dataset before its project).
        key=lambda mp: (ORDER[mp[0]], -mp[1].count("/") if mp[0] == "DELETE" else 0, mp[1])
    )
    return out


ROUTES = id_routes()


@pytest.fixture(scope="module")
def owned(client: TestClient, api_keys: dict[str, str]) -> dict[str, str]:
    """Tenant A's real resources: a project with a processed file and a task."""
    a = LF(client, {"X-Api-Key": api_keys["alice"]})
    ns, project, dataset = a.project_with_dataset(uniq("iso"))
    data = b"Tenant A secret plans: the treasure is buried under the old oak tree."
    file_hash = a.upload(ns, project, dataset, "secret.txt", data).json()["hash"]
    task_id = a.process(ns, project, dataset, asynchronous=True).json()["task_id"]
    a.wait_task(ns, project, task_id)
    chat = a.req(
        "POST",
        f"/v1/projects/{ns}/{project}/chat/completions",
        json={"messages": [{"role": "user", "content": "Where is the treasure?"}], "max_tokens": 2},
    )
    assert chat.status_code == 200, chat.text
    # llama_internet_chatbot: a chat with one message.
    ichat = a.req("POST", "/chats/create", json={"name": "A's secret chat"})
    assert ichat.status_code == 201, ichat.text
    row = a.req(
        "POST",
        "/conversations/create",
        json={"chat_id": ichat.json()["id"], "role": "Human", "message": "Where is the treasure?"},
    )
    assert row.status_code == 201, row.text
    return {
        "chat_id": ichat.json()["id"],
        "session_id": chat.headers["X-Session-ID"],
        "namespace": ns,
        "project": project,
        "dataset": dataset,
        "file_hash": file_hash,
        "task_id": task_id,
    }


def unknown_ids(owned: dict[str, str]) -> dict[str, str]:
    return {
        "namespace": owned["namespace"],  # same namespace: B may have one of the same name
        "project": "zz" + uniq("p"),
        "dataset": "zz" + uniq("d"),
        "file_hash": "0" * 64,
        "task_id": "00000000-0000-4000-8000-000000000000",
        "session_id": "00000000-0000-4000-8000-00000000beef",
        "chat_id": "00000000-0000-4000-8000-0000000000c4",
    }


def call(
    lf: LF, method: str, template: str, ids: dict[str, str], config: dict[str, Any]
) -> tuple[int, Any]:
    params = re.findall(r"{(\w+)}", template)
    missing = [p for p in params if p not in ids]
    assert not missing, f"add a value for {missing} of {method} {template} to the isolation fixture"
    path = template.format(**{p: ids[p] for p in params})
    spec = BODIES.get((method, template), {})
    kw: dict[str, Any] = {}
    if spec.get("json") == "CONFIG":
        kw["json"] = {"config": {**config, "name": ids["project"], "namespace": ids["namespace"]}}
    elif "json" in spec:
        kw["json"] = spec["json"]
    if spec.get("files"):
        kw["files"] = {"file": ("x.txt", io.BytesIO(b"B's bytes"))}
    r = lf.req(method, path, **kw)
    body = r.json()
    # The two answers may differ only by the ids they echo back.
    text = str(body)
    for p in params:
        text = text.replace(ids[p], f"<{p}>")
    return r.status_code, text


@pytest.mark.parametrize(("method", "template"), ROUTES, ids=[f"{m} {t}" for m, t in ROUTES])
def test_other_tenant_gets_the_unknown_id_answer(
    method: str, template: str, owned: dict[str, str], client: TestClient, api_keys: dict[str, str]
) -> None:
    if (method, template) in NOT_OWNED:
        pytest.skip(NOT_OWNED[(method, template)])
    if method in ("POST", "PUT") and (method, template) not in BODIES and "process" not in template:
        pytest.fail(f"describe a valid body for {method} {template} in BODIES")
    alice = LF(client, {"X-Api-Key": api_keys["alice"]})
    bob = LF(client, {"X-Api-Key": api_keys["bob"]})
    config = alice.req("GET", f"/v1/projects/{owned['namespace']}/{owned['project']}").json()[
        "project"
    ]["config"]

    b_on_a = call(bob, method, template, owned, config)
    b_on_unknown = call(bob, method, template, unknown_ids(owned), config)

    assert b_on_a == b_on_unknown
    assert b_on_a[0] == 404, f"{method} {template} answered {b_on_a} to another tenant"
    # And A's resource is untouched: A still sees its project and file.
    files = alice.req(
        "GET", f"/v1/projects/{owned['namespace']}/{owned['project']}/datasets"
    ).json()
    assert owned["file_hash"] in files["datasets"][0]["files"]


def test_listing_a_namespace_shows_only_own_projects(
    owned: dict[str, str], client: TestClient, api_keys: dict[str, str]
) -> None:
    bob = LF(client, {"X-Api-Key": api_keys["bob"]})
    assert bob.req("GET", f"/v1/projects/{owned['namespace']}").json() == {
        "total": 0,
        "projects": [],
    }
    # B may create the same names without touching A's.
    assert bob.create_project(owned["namespace"], owned["project"]).status_code == 200
    alice = LF(client, {"X-Api-Key": api_keys["alice"]})
    assert (
        alice.req("GET", f"/v1/projects/{owned['namespace']}/{owned['project']}/datasets").json()[
            "total"
        ]
        == 1
    )
    assert (
        bob.query(owned["namespace"], owned["project"], query="treasure oak tree").json()["results"]
        == []
    )


def test_every_id_route_is_covered() -> None:
    """The parametrisation really is the manifest's routes (not an empty or stale list)."""
    assert ("GET", "/v1/projects/{namespace}/{project}/tasks/{task_id}") in ROUTES
    assert (
        "DELETE",
        "/v1/projects/{namespace}/{project}/datasets/{dataset}/data/{file_hash}",
    ) in ROUTES
    assert len(ROUTES) >= 15
