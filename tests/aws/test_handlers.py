"""Every group's Lambda handler driven with API Gateway REST proxy events under moto.

The handlers are the ones `functions/<group>/handler.py` builds (`lambda_handler(group)`),
here over one container on moto's S3 and DynamoDB with fake chat models; the function modules
themselves are imported from the environment the stack sets, as the Lambda runtime does.
Each group: at least one success and one failure route; another tenant's id answers exactly
like an unknown id; the tenant comes only from the authorizer's context (key headers and a
forged request-context header are ignored); no context is a 401 in the dialect's envelope.

Step Functions is moto's (executions recorded, not run: tests/helpers/stepfunctions.py runs
them); OpenSearch is the in-process fake of tests/helpers/opensearch_fake.py under the real
client; embeddings are the in-Lambda ONNX embedder.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import threading
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pasture.api.groups import GROUPS
from pasture.api.lambda_app import lambda_handler
from pasture.domain.speech import Transcript
from pasture.ports import Transcriber
from pasture.services.transcription import TranscriptionService
from tests.helpers.apigw import LambdaContext, Reply, multipart, rest_event
from tests.helpers.aws import BUCKET
from tests.helpers.lambda_env import AwsStack, aws_stack, load_function, restored_logging

Call = Callable[..., Reply]
RF = "/api/v1"


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, api_keys: dict[str, str]
) -> Iterator[AwsStack]:
    with restored_logging(), aws_stack(tmp_path_factory.mktemp("aws"), model_cache, api_keys) as s:
        yield s


@pytest.fixture(scope="module")
def handlers(stack: AwsStack) -> dict[str, Any]:
    return {g.name: lambda_handler(g.name, container=stack.container) for g in GROUPS}


@pytest.fixture(scope="module")
def call(handlers: dict[str, Any]) -> Call:
    """call(group, method, path, tenant=..., ...) -> the decoded proxy answer."""

    def go(group: str, method: str, path: str, **kw: Any) -> Reply:
        response = handlers[group](rest_event(method, path, **kw), LambdaContext())
        assert set(response) >= {"statusCode", "headers", "body", "isBase64Encoded"}
        return Reply.of(response)

    return go


def alike(theirs: Reply, unknown: Reply, real_id: str, unknown_id: str) -> bool:
    """Another tenant's id answers exactly like an unknown one (but for the id itself)."""
    return theirs.status == unknown.status and theirs.body.replace(
        real_id.encode(), b"ID"
    ) == unknown.body.replace(unknown_id.encode(), b"ID")


def uniq(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def project(call: Call, tenant: str) -> tuple[str, str]:
    ns, p = uniq("ns"), uniq("proj")
    r = call("projects", "POST", f"/v1/projects/{ns}", tenant=tenant, json_body={"name": p})
    assert r.status == 200, r.text
    return ns, p


# ------------------------------------------------------------------ the function modules


def test_every_group_has_a_function_module(stack: AwsStack) -> None:
    """functions/<group>/handler.py for every group of the manifest, importable from the
    stack's environment alone; importing builds the app and container but starts no thread
    and makes no AWS call (the adapters are lazy)."""
    before = {t.ident for t in threading.enumerate()}
    calls: list[str] = []
    for client in (stack.s3, stack.dynamodb):
        client.meta.events.register("before-call", lambda model, **_: calls.append(model.name))
    for g in GROUPS:
        module = load_function(g.name, stack.env())
        assert callable(module.handler), g.name
    assert {t.ident for t in threading.enumerate()} <= before
    assert calls == []


def test_system_health_is_open_through_the_real_module(stack: AwsStack) -> None:
    """The stack attaches no authorizer to /health: no context, still 200, and the records
    probe really reached DynamoDB (moto) with the function's own boto3 client."""
    handler = load_function("system", stack.env()).handler
    r = Reply.of(handler(rest_event("GET", "/health"), LambdaContext()))
    assert r.status == 200, r.text
    assert r.json() == {"status": "healthy", "services": {"api": "healthy", "records": "healthy"}}
    info = Reply.of(handler(rest_event("GET", "/info"), LambdaContext()))
    assert info.status == 200 and info.json()["backend"] == "aws"


def test_system_unknown_route_is_404(call: Call) -> None:
    r = call("system", "GET", "/no/such/route")
    assert r.status == 404 and r.json() == {"detail": "Not Found"}


def test_a_group_serves_only_its_own_routes(call: Call) -> None:
    """API Gateway sends a group's prefixes to its function; anything else is not there."""
    r = call("system", "POST", "/v1/projects/acme", tenant="alice", json_body={"name": "x"})
    assert r.status == 404


# ------------------------------------------------------------------ projects


def test_projects_create_get_and_isolation(call: Call) -> None:
    ns, p = project(call, "alice")
    mine = call("projects", "GET", f"/v1/projects/{ns}/{p}", tenant="alice")
    assert mine.status == 200 and mine.json()["project"]["name"] == p
    other = uniq("none")
    theirs = call("projects", "GET", f"/v1/projects/{ns}/{p}", tenant="bob")
    unknown = call("projects", "GET", f"/v1/projects/{ns}/{other}", tenant="bob")
    assert theirs.status == 404
    assert alike(theirs, unknown, p, other)
    listed = call("projects", "GET", f"/v1/projects/{ns}", tenant="bob")
    assert listed.status == 200 and listed.json()["projects"] == []


def test_projects_without_context_is_401(call: Call) -> None:
    r = call("projects", "GET", f"/v1/projects/{uniq('ns')}")
    assert r.status == 401
    assert r.json() == {"detail": "missing API key (send Authorization: Bearer <key> or X-Api-Key)"}
    assert r.headers["www-authenticate"] == "Bearer"


def test_key_headers_never_choose_the_tenant(call: Call, api_keys: dict[str, str]) -> None:
    """A valid key in the headers is no substitute for the authorizer's context, and it never
    overrides the tenant the context names."""
    ns, p = project(call, "alice")
    path = f"/v1/projects/{ns}/{p}"
    for headers in (
        {"X-Api-Key": api_keys["alice"]},
        {"Authorization": f"Bearer {api_keys['alice']}"},
    ):
        assert call("projects", "GET", path, headers=headers).status == 401
        assert call("projects", "GET", path, tenant="bob", headers=headers).status == 404


def test_forged_request_context_header_is_ignored_under_mangum(call: Call) -> None:
    """Only the Lambda Web Adapter's app reads `x-amzn-request-context`; through Mangum a
    client sending it gets nothing."""
    ns, p = project(call, "alice")
    forged = json.dumps({"authorizer": {"tenant": "alice", "principalId": "alice"}})
    r = call(
        "projects", "GET", f"/v1/projects/{ns}/{p}", headers={"x-amzn-request-context": forged}
    )
    assert r.status == 401


def test_context_from_another_authorizer_shape_without_tenant_is_401(call: Call) -> None:
    r = call(
        "projects",
        "GET",
        f"/v1/projects/{uniq('ns')}",
        authorizer={"principalId": "alice", "claims": {"sub": "alice"}},
    )
    assert r.status == 401


# ------------------------------------------------------------------ datasets


def dataset(call: Call, tenant: str) -> tuple[str, str, str]:
    ns, p = project(call, tenant)
    ds = uniq("ds")
    r = call(
        "datasets", "POST", f"/v1/projects/{ns}/{p}/datasets", tenant=tenant, json_body={"name": ds}
    )
    assert r.status == 200, r.text
    return ns, p, ds


def upload(call: Call, tenant: str, path: str, name: str, data: bytes) -> Reply:
    body, ctype = multipart([("file", name, data, "application/octet-stream")])
    return call(
        "datasets",
        "POST",
        path,
        tenant=tenant,
        headers={"Content-Type": ctype},
        body=body,
        binary=True,
    )


def test_binary_upload_through_api_gateway_lands_in_s3(call: Call, stack: AwsStack) -> None:
    """A multipart body with every byte value, base64-encoded by API Gateway (a binary media
    type), arrives intact: the file id is its sha256 and S3 holds exactly those bytes."""
    ns, p, ds = dataset(call, "alice")
    data = bytes(range(256)) * 2048 + secrets.token_bytes(4096)  # ~0.5 MB, not UTF-8
    r = upload(call, "alice", f"/v1/projects/{ns}/{p}/datasets/{ds}/data", "blob.bin", data)
    assert r.status == 200, r.text
    digest = hashlib.sha256(data).hexdigest()
    assert r.json()["hash"] == digest
    stored = [
        o["Key"]
        for o in stack.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        if digest in o["Key"]
    ]
    assert len(stored) == 1
    assert stack.s3.get_object(Bucket=BUCKET, Key=stored[0])["Body"].read() == data
    listed = call("datasets", "GET", f"/v1/projects/{ns}/{p}/datasets", tenant="alice")
    assert listed.status == 200, listed.text
    assert [d["name"] for d in listed.json()["datasets"]] == [ds]


def test_datasets_isolation_and_failures(call: Call) -> None:
    ns, p, ds = dataset(call, "alice")
    other = uniq("none")
    theirs = call("datasets", "GET", f"/v1/projects/{ns}/{p}/datasets", tenant="bob")
    unknown = call("datasets", "GET", f"/v1/projects/{ns}/{other}/datasets", tenant="bob")
    assert theirs.status == 404 and alike(theirs, unknown, p, other)
    # Bob cannot upload into Alice's dataset either: same answer as an unknown project.
    up = upload(call, "bob", f"/v1/projects/{ns}/{p}/datasets/{ds}/data", "x.txt", b"bob")
    up_unknown = upload(
        call, "bob", f"/v1/projects/{ns}/{other}/datasets/{ds}/data", "x.txt", b"bob"
    )
    assert up.status == 404 and alike(up, up_unknown, p, other)
    assert call("datasets", "GET", f"/v1/projects/{ns}/{p}/datasets").status == 401


def test_ragflow_datasets_through_the_datasets_function(call: Call) -> None:
    name = uniq("kb")
    created = call("datasets", "POST", f"{RF}/datasets", tenant="alice", json_body={"name": name})
    assert created.status == 200 and created.json()["code"] == 0, created.text
    ds_id = created.json()["data"]["id"]
    mine = call("datasets", "GET", f"{RF}/datasets", tenant="alice", query={"id": ds_id})
    assert mine.json()["code"] == 0 and [d["id"] for d in mine.json()["data"]] == [ds_id]
    other = uniq("0")
    theirs = call("datasets", "GET", f"{RF}/datasets", tenant="bob", query={"id": ds_id})
    unknown = call("datasets", "GET", f"{RF}/datasets", tenant="bob", query={"id": other})
    assert theirs.status == 200 and theirs.json()["code"] != 0
    assert alike(theirs, unknown, ds_id, other)
    bobs = call("datasets", "GET", f"{RF}/datasets", tenant="bob", query={"name": name})
    assert bobs.json().get("data") in (None, [])
    # RAGFlow's envelope for a missing context: HTTP 200, code 109.
    anon = call("datasets", "GET", f"{RF}/datasets")
    assert anon.status == 200 and anon.json()["code"] == 109


def test_ragflow_document_upload_base64(call: Call) -> None:
    created = call(
        "datasets", "POST", f"{RF}/datasets", tenant="alice", json_body={"name": uniq("kb")}
    )
    ds_id = created.json()["data"]["id"]
    data = "Les vaches mangent de l'herbe. 牛は草を食べる。".encode() + bytes(range(256))
    body, ctype = multipart([("file", "cows.txt", data, "text/plain")])
    r = call(
        "datasets",
        "POST",
        f"{RF}/datasets/{ds_id}/documents",
        tenant="alice",
        headers={"Content-Type": ctype},
        body=body,
        binary=True,
    )
    assert r.json()["code"] == 0, r.text
    docs = r.json()["data"]
    assert docs[0]["name"] == "cows.txt" and docs[0]["size"] == len(data)
    doc_id = docs[0]["id"]
    # The download goes back through Mangum base64-encoded: the same bytes.
    got = call("datasets", "GET", f"{RF}/datasets/{ds_id}/documents/{doc_id}", tenant="alice")
    assert got.status == 200 and got.body == data
    kw: dict[str, Any] = {"headers": {"Content-Type": ctype}, "body": body, "binary": True}
    unknown_id = uniq("0")
    theirs = call("datasets", "POST", f"{RF}/datasets/{ds_id}/documents", tenant="bob", **kw)
    unknown = call("datasets", "POST", f"{RF}/datasets/{unknown_id}/documents", tenant="bob", **kw)
    assert theirs.json()["code"] != 0 and alike(theirs, unknown, ds_id, unknown_id)
    theirs = call("datasets", "GET", f"{RF}/datasets/{ds_id}/documents/{doc_id}", tenant="bob")
    unknown = call(
        "datasets", "GET", f"{RF}/datasets/{unknown_id}/documents/{doc_id}", tenant="bob"
    )
    assert theirs.body != data and alike(theirs, unknown, ds_id, unknown_id)


# ------------------------------------------------------------------ retrieval


def test_retrieval_health_uses_the_in_lambda_embedder(call: Call) -> None:
    ns, p = project(call, "alice")
    r = call("retrieval", "GET", f"/v1/projects/{ns}/{p}/rag/health", tenant="alice")
    assert r.status == 200, r.text
    body = r.json()
    assert body["components"]["embeddings"]["status"] == "healthy", body
    assert "384 dimensions" in body["components"]["embeddings"]["message"]


def test_chunk_indexed_by_datasets_is_retrieved_by_retrieval(call: Call) -> None:
    """Two functions, one index: a chunk added through the datasets function (embedded in
    the Lambda, written to OpenSearch) is found by the retrieval function, for its owner only."""
    made = call(
        "datasets", "POST", f"{RF}/datasets", tenant="alice", json_body={"name": uniq("kb")}
    )
    ds_id = made.json()["data"]["id"]
    body, ctype = multipart([("file", "notes.txt", b"Field notes.", "text/plain")])
    up = call(
        "datasets",
        "POST",
        f"{RF}/datasets/{ds_id}/documents",
        tenant="alice",
        headers={"Content-Type": ctype},
        body=body,
        binary=True,
    )
    doc_id = up.json()["data"][0]["id"]
    fact = "The brown cows of Pasture graze on clover behind the red barn."
    added = call(
        "datasets",
        "POST",
        f"{RF}/datasets/{ds_id}/documents/{doc_id}/chunks",
        tenant="alice",
        json_body={"content": fact},
    )
    assert added.json()["code"] == 0, added.text
    q = {"question": "Where do the cows graze?", "dataset_ids": [ds_id]}
    found = call("retrieval", "POST", f"{RF}/retrieval", tenant="alice", json_body=q)
    assert found.json()["code"] == 0, found.text
    chunks = found.json()["data"]["chunks"]
    assert chunks and chunks[0]["content"] == fact
    assert chunks[0]["vector_similarity"] > 0 and chunks[0]["term_similarity"] > 0
    other = uniq("0")
    theirs = call("retrieval", "POST", f"{RF}/retrieval", tenant="bob", json_body=q)
    unknown = call(
        "retrieval",
        "POST",
        f"{RF}/retrieval",
        tenant="bob",
        json_body={**q, "dataset_ids": [other]},
    )
    assert theirs.json()["code"] != 0 and alike(theirs, unknown, ds_id, other)


def test_retrieval_isolation_and_failures(call: Call) -> None:
    ns, p = project(call, "alice")
    other = uniq("none")
    q = {"query": "x"}
    theirs = call(
        "retrieval", "POST", f"/v1/projects/{ns}/{p}/rag/query", tenant="bob", json_body=q
    )
    unknown = call(
        "retrieval", "POST", f"/v1/projects/{ns}/{other}/rag/query", tenant="bob", json_body=q
    )
    assert theirs.status == 404 and alike(theirs, unknown, p, other)
    bad = call(
        "retrieval", "POST", f"/v1/projects/{ns}/{p}/rag/query", tenant="alice", json_body={}
    )
    assert bad.status == 422
    rf = call("retrieval", "POST", f"{RF}/retrieval", tenant="alice", json_body={"question": "x"})
    assert rf.status == 200 and rf.json()["code"] != 0
    assert (
        call("retrieval", "POST", f"{RF}/retrieval", json_body={"question": "x"}).json()["code"]
        == 109
    )


# ------------------------------------------------------------------ chat


def test_llamachat_conversation_through_the_chat_function(call: Call) -> None:
    created = call("chat", "POST", "/api/conversations", tenant="alice")
    assert created.status == 200, created.text
    cid = created.json()["id"]
    sent = call(
        "chat",
        "POST",
        f"/api/conversations/{cid}/messages",
        tenant="alice",
        json_body={"content": "What grows in a pasture?"},
    )
    assert sent.status == 200, sent.text
    assert "Grass grows in the pasture." in sent.text
    got = call("chat", "GET", f"/api/conversations/{cid}", tenant="alice")
    assert got.status == 200 and len(got.json()["messages"]) == 2
    other = uniq("")
    theirs = call("chat", "GET", f"/api/conversations/{cid}", tenant="bob")
    unknown = call("chat", "GET", f"/api/conversations/{other}", tenant="bob")
    assert theirs.status == 404 and alike(theirs, unknown, cid, other)
    assert theirs.json().keys() == {"error"}
    anon = call("chat", "POST", "/api/conversations")
    assert anon.status == 401 and set(anon.json()) == {"error"}


def test_internet_chatbot_chats_isolation(call: Call) -> None:
    made = call("chat", "POST", "/chats/create", tenant="alice", json_body={"name": "cows"})
    assert made.status == 201, made.text
    chat_id = made.json()["id"]
    assert call("chat", "GET", f"/chats/{chat_id}", tenant="alice").status == 200
    other = uniq("")
    theirs = call("chat", "GET", f"/chats/{chat_id}", tenant="bob")
    unknown = call("chat", "GET", f"/chats/{other}", tenant="bob")
    assert theirs.status == 404 and alike(theirs, unknown, str(chat_id), other)
    assert chat_id not in {c["id"] for c in call("chat", "GET", "/chats/", tenant="bob").json()}
    assert call("chat", "GET", "/chats/").status == 401


# ------------------------------------------------------------------ transcription


class _Fixed(Transcriber):
    """FAKE transcriber (the real ones are tested in tests/api and tests/e2e)."""

    name = "fixed"

    def transcribe(self, audio: Any, *, language: str | None, prompt: str | None) -> Transcript:
        return Transcript(
            f"{audio.seconds:.1f} seconds of {audio.source_format}", "en", audio.seconds
        )


def _wav(seconds: float = 1.0) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(secrets.token_bytes(int(16000 * seconds)) * 2)
    return buf.getvalue()


def test_transcription_audio_through_api_gateway(
    call: Call, stack: AwsStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recording arrives base64-encoded, is decoded for real (PyAV) and transcribed."""
    from pasture.adapters.local.pyav_audio import decode_audio

    service = TranscriptionService(
        lambda f: decode_audio(f, max_seconds=60), lambda: _Fixed(), max_audio_bytes=10**7
    )
    monkeypatch.setattr(stack.container, "transcription", service)
    body, ctype = multipart([("audio", "note.wav", _wav(1.0), "audio/wav")])
    kw: dict[str, Any] = {"headers": {"Content-Type": ctype}, "body": body, "binary": True}
    r = call("transcription", "POST", "/api/transcription", tenant="alice", **kw)
    assert r.status == 200, r.text
    assert r.json() == {"text": "1.0 seconds of wav"}
    assert call("transcription", "POST", "/api/transcription", **kw).status == 401
    empty, ctype2 = multipart([], {"language": "en"})
    missing = call(
        "transcription",
        "POST",
        "/api/transcription",
        tenant="alice",
        headers={"Content-Type": ctype2},
        body=empty,
        binary=True,
    )
    assert missing.status == 400 and "audio" in missing.json()["error"]


# ------------------------------------------------------------------ tasks


def test_processing_starts_a_step_functions_run_seen_through_tasks(
    call: Call, stack: AwsStack
) -> None:
    """The datasets function starts the ingestion run (a Step Functions execution, on moto);
    the tasks function reports it to its owner, and cancels it; to anyone else it is unknown."""
    ns, p, ds = dataset(call, "alice")
    base = f"/v1/projects/{ns}/{p}/datasets/{ds}"
    assert upload(call, "alice", f"{base}/data", "cows.txt", b"Cows eat grass.").status == 200
    started = call(
        "datasets", "POST", f"{base}/process", tenant="alice", query={"async_processing": "true"}
    )
    assert started.status == 200, started.text
    task_id = started.json()["task_id"]
    runs = stack.stepfunctions.list_executions(stateMachineArn=stack.settings.state_machine_arn)
    assert any(task_id in e["name"] for e in runs["executions"]), runs["executions"]
    task = call("tasks", "GET", f"/v1/projects/{ns}/{p}/tasks/{task_id}", tenant="alice")
    assert task.status == 200, task.text
    assert task.json()["task_id"] == task_id and task.json()["state"] in ("PENDING", "STARTED")
    other = uniq("none")
    theirs = call("tasks", "GET", f"/v1/projects/{ns}/{p}/tasks/{task_id}", tenant="bob")
    unknown = call("tasks", "GET", f"/v1/projects/{ns}/{p}/tasks/{other}", tenant="bob")
    assert theirs.status == 404 and alike(theirs, unknown, task_id, other)
    cancelled = call("tasks", "DELETE", f"/v1/projects/{ns}/{p}/tasks/{task_id}", tenant="alice")
    assert cancelled.status == 200, cancelled.text
    assert cancelled.json()["state"] == "REVOKED"


def test_tasks_unknown_and_other_tenants_alike(call: Call) -> None:
    ns, p = project(call, "alice")
    other, task = uniq("none"), uniq("t")
    mine = call("tasks", "GET", f"/v1/projects/{ns}/{p}/tasks/{task}", tenant="alice")
    assert mine.status == 404
    theirs = call("tasks", "GET", f"/v1/projects/{ns}/{p}/tasks/{task}", tenant="bob")
    unknown = call("tasks", "GET", f"/v1/projects/{ns}/{other}/tasks/{task}", tenant="bob")
    assert theirs.status == 404 and alike(theirs, unknown, p, other)
    assert call("tasks", "GET", f"/v1/projects/{ns}/{p}/tasks/x").status == 401


# ------------------------------------------------------------------ accounts


def test_accounts_are_off_by_default_on_aws(call: Call) -> None:
    r = call(
        "accounts",
        "POST",
        "/v1/user/register",
        json_body={"email": "a@example.com", "nickname": "a", "password": "pw-123456"},
    )
    assert r.status == 200 and r.json()["code"] == 108


# ------------------------------------------------------------------ plumbing


def test_events_name_the_resource_the_stack_declares() -> None:
    """The helper's events carry the proxy resource of the group prefix that owns the path,
    as API Gateway fills `resource` and `pathParameters`."""
    ev = rest_event("POST", "/v1/projects/acme/farm/datasets/cows/data", tenant="alice")
    assert ev["resource"] == "/v1/projects/{namespace}/{project}/datasets/{proxy+}"
    assert ev["pathParameters"] == {"namespace": "acme", "project": "farm", "proxy": "cows/data"}
    assert ev["requestContext"]["path"] == "/prod/v1/projects/acme/farm/datasets/cows/data"
    assert ev["requestContext"]["authorizer"]["tenant"] == "alice"
    assert rest_event("GET", "/health")["resource"] == "/health"


def test_tracing_only_when_asked_and_installed(stack: AwsStack) -> None:
    import importlib.util

    from pasture.api.lambda_app import traced

    def h(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {}

    assert traced(h, "system", stack.settings) is h  # PASTURE_TRACING off: never imported
    on = stack.settings.model_copy(update={"tracing": True})
    if importlib.util.find_spec("aws_xray_sdk") is None:
        assert traced(h, "system", on) is h  # asked for, not installed: a warning, no tracer
    else:
        assert traced(h, "system", on) is not h


def test_served_app_on_the_aws_backend_takes_tenants_from_keys(
    stack: AwsStack, api_keys: dict[str, str]
) -> None:
    """`pasture serve` with PASTURE_BACKEND=aws (no API Gateway in front): the key decides,
    as locally; an authorizer context in a client's header counts for nothing there."""
    from fastapi.testclient import TestClient

    from pasture.api.app import create_app

    app = create_app(container=stack.container)
    with TestClient(app) as client:
        ns = uniq("ns")
        alice = {"X-Api-Key": api_keys["alice"]}
        made = client.post(f"/v1/projects/{ns}", json={"name": "p"}, headers=alice)
        assert made.status_code == 200, made.text
        assert client.get(f"/v1/projects/{ns}/p", headers=alice).status_code == 200
        bob = {"Authorization": f"Bearer {api_keys['bob']}"}
        assert client.get(f"/v1/projects/{ns}/p", headers=bob).status_code == 404
        forged = json.dumps({"authorizer": {"tenant": "alice"}})
        r = client.get(f"/v1/projects/{ns}/p", headers={"x-amzn-request-context": forged})
        assert r.status_code == 401
