"""The generated ingestion state machine: its shape, and its real execution end to end.

End to end: moto executes the generated definition (tests/helpers/stepfunctions.py: every
Lambda task runs the real functions/ingest/handler.py in process, no Docker). The services are
the aws wiring of bootstrap (S3BlobStore and DynamoDBRecords on moto, the real OnnxEmbedder,
StepFunctionsWorkflow), except the SearchIndex: OpenSearch cannot run here, so the container's
lazy index is given the local SqliteSearchIndex in a tmp dir before first use.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from pasture.adapters.aws.state_machine import (
    COMPLETE_STEP,
    FAIL_STEP,
    HANDLE_STEP,
    LAMBDA_TRANSIENT_ERRORS,
    MAP_STATE,
    TRANSIENT_ERROR,
    definition,
    task_states,
)
from pasture.adapters.aws.workflow_tasks import WorkflowTasks, failure_message
from pasture.bootstrap import AwsClients, Container, build_container
from pasture.config import Settings
from pasture.domain.documents import DocStatus
from pasture.ports import RunState
from pasture.services.ingestion import INGEST, INGEST_STEPS
from pasture.services.retrieval import RetrievalRequest
from tests.helpers.aws import BUCKET, TABLE
from tests.helpers.files import pdf_bytes
from tests.helpers.lambda_env import fake_chat_factory
from tests.helpers.stepfunctions import SfnEnv, stepfunctions_env

FN = "arn:aws:lambda:us-east-1:123456789012:function:pasture-ingest"
NS, PROJECT, TENANT = "acme", "farm", "t-ingest"

# ---------------------------------------------------------------------------- the definition


def test_definition_is_a_bounded_map_of_one_task_per_pipeline_step() -> None:
    d = definition(FN, max_concurrency=7)
    json.dumps(d)  # plain JSON
    assert d["StartAt"] == MAP_STATE
    m = d["States"][MAP_STATE]
    assert m["Type"] == "Map" and m["MaxConcurrency"] == 7 and m["ItemsPath"] == "$.batches"
    assert m["ResultPath"] is None and m["Next"] == COMPLETE_STEP
    proc = m["ItemProcessor"]
    route = proc["States"][proc["StartAt"]]
    assert route["Type"] == "Choice" and route["Default"] == HANDLE_STEP
    assert route["Choices"] == [
        {"Variable": "$.kind", "StringEquals": INGEST, "Next": INGEST_STEPS[0]}
    ]
    # The states are the pipeline's steps, chained in its order.
    chain, name = [], INGEST_STEPS[0]
    while True:
        chain.append(name)
        state = proc["States"][name]
        if state.get("End"):
            break
        name = state["Next"]
    assert tuple(chain) == INGEST_STEPS == ("parse_and_chunk", "embed", "index", "finish")


def test_every_task_retries_transient_errors_with_backoff_and_catches_the_rest() -> None:
    d = definition(FN, max_concurrency=3, retry_interval_seconds=2, retry_max_attempts=5)
    tasks = task_states(d)
    assert set(tasks) == {*INGEST_STEPS, HANDLE_STEP, FAIL_STEP, COMPLETE_STEP}
    for name, t in tasks.items():
        assert t["Resource"] == "arn:aws:states:::lambda:invoke"
        assert t["Parameters"]["FunctionName"] == FN
        assert t["Parameters"]["Payload"]["step"] == name
        (retry,) = t["Retry"]
        assert set(retry["ErrorEquals"]) == {*LAMBDA_TRANSIENT_ERRORS, TRANSIENT_ERROR}
        assert retry["IntervalSeconds"] == 2 and retry["MaxAttempts"] == 5
        assert retry["BackoffRate"] == 2.0 and retry["JitterStrategy"] == "FULL"
        assert retry["MaxDelaySeconds"] >= retry["IntervalSeconds"]
        if name in (FAIL_STEP, COMPLETE_STEP):
            assert "Catch" not in t  # nothing left to catch into
        else:
            assert t["Catch"] == [
                {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": FAIL_STEP}
            ]
    # Only keys travel: the whole (small) state, never chunk texts or vectors.
    assert tasks["embed"]["Parameters"]["Payload"] == {"step": "embed", "state.$": "$"}


def test_definition_refuses_what_would_not_run() -> None:
    with pytest.raises(ValueError):
        definition(FN, max_concurrency=0)
    with pytest.raises(ValueError):
        definition(FN, max_concurrency=1, pipelines={"a": ("x", "y"), "b": ("y",)})
    with pytest.raises(ValueError):
        definition(FN, max_concurrency=1, pipelines={"a": ("handle",)})
    with pytest.raises(ValueError):
        definition(FN, max_concurrency=1, pipelines={"a": ()})
    only_handle = definition(FN, max_concurrency=1, pipelines={})
    assert only_handle["States"][MAP_STATE]["ItemProcessor"]["StartAt"] == HANDLE_STEP


def _check_references(machine: dict[str, Any]) -> None:
    """What the ASL grammar does not check: StartAt and every Next/Default/Catch name a state
    of the same scope, and every state but a Choice either goes Next or Ends."""
    states = machine["States"]
    assert machine["StartAt"] in states
    for name, st in states.items():
        targets = [st["Next"]] if "Next" in st else []
        targets += [c["Next"] for c in st.get("Catch", [])]
        if st["Type"] == "Choice":
            targets += [c["Next"] for c in st["Choices"]] + [st["Default"]]
        else:
            assert ("Next" in st) != bool(st.get("End")), name
        assert all(t in states for t in targets), (name, targets)
        if st["Type"] == "Map":
            _check_references(st["ItemProcessor"])


@pytest.mark.parametrize("pipelines", [None, {}, {"a": ("one",), "b": ("two", "three")}])
def test_the_definition_is_valid_asl(pipelines: dict[str, tuple[str, ...]] | None) -> None:
    d = definition(FN, max_concurrency=4, pipelines=pipelines)
    _check_references(d)
    with stepfunctions_env() as env:
        env.create_machine(d)  # moto parses it with the ASL grammar
        broken = definition(FN, max_concurrency=4, pipelines=pipelines)
        broken["States"][COMPLETE_STEP]["Retry"][0]["BackoffRate"] = "fast"
        with pytest.raises(ClientError):
            env.create_machine(broken, name="broken")


def test_failure_messages_are_readable_and_leak_nothing() -> None:
    def lam(error_type: str, message: str) -> dict[str, str]:
        cause = {"errorType": error_type, "errorMessage": message, "stackTrace": ["x.py"]}
        return {"Error": error_type, "Cause": json.dumps(cause)}

    assert failure_message(lam("Invalid", "no text found in the file")) == (
        "no text found in the file"
    )
    assert failure_message(lam(TRANSIENT_ERROR, "S3 GetObject throttled (SlowDown)")) == (
        "S3 GetObject throttled (SlowDown) (gave up after retries)"
    )
    assert failure_message(lam("KeyError", "'secret-ish'")) == "internal error: KeyError"
    assert failure_message({"Error": "States.Timeout", "Cause": ""}).endswith("timed out")
    assert failure_message(None) == "internal error: unknown error"


# ---------------------------------------------------------------------------- end to end


@dataclass
class World:
    env: SfnEnv
    c: Container


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[World]:
    from pasture.adapters.local.sqlite_search_index import SqliteSearchIndex

    data = tmp_path_factory.mktemp("sfn-ingest")
    with stepfunctions_env() as env:
        arn = env.create_machine(
            definition(
                env.function_arn,
                max_concurrency=4,
                retry_interval_seconds=1,
                retry_max_attempts=2,
            )
        )
        settings = Settings(
            backend="aws",
            data_dir=data,
            model_cache_dir=model_cache,
            table=TABLE,
            bucket=BUCKET,
            state_machine_arn=arn,
            opensearch_endpoint="https://pasture-search.invalid",
            chat_preload=False,
        )
        c = build_container(
            settings,
            chat_factory=fake_chat_factory({}),
            aws=AwsClients(settings, s3=env.s3, dynamodb=env.dynamodb, stepfunctions=env.sfn),
        )
        # The one stand-in: the lazy SearchIndex, built before first use as SQLite.
        index = SqliteSearchIndex(data / "index.db", data / "vectors")
        c.index._target = index  # type: ignore[attr-defined]
        # What the ingest Lambda builds from the same settings on its cold start.
        env.use_tasks(WorkflowTasks.from_container(c))
        c.projects.create(TENANT, NS, PROJECT, "rag")
        try:
            yield World(env, c)
        finally:
            index.close()


def _upload(w: World, dataset: str, files: dict[str, bytes]) -> dict[str, str]:
    w.c.datasets.create(TENANT, NS, PROJECT, dataset, None, None)
    ids = {}
    for name, data in files.items():
        up = w.c.datasets.upload(TENANT, NS, PROJECT, dataset, name, io.BytesIO(data))
        ids[name] = up.document.id
    return ids


def _docs(w: World, dataset: str) -> dict[str, Any]:
    ds = w.c.datasets.get(TENANT, NS, PROJECT, dataset)
    return {d.filename: d for d in w.c.datasets.documents(TENANT, ds.id)}


def _work_keys(w: World) -> list[str]:
    got = w.env.s3.list_objects_v2(Bucket=BUCKET, Prefix="work/")
    return [o["Key"] for o in got.get("Contents", [])]


def test_upload_process_done_and_searchable_and_a_corrupt_file_fails(world: World) -> None:
    good = pdf_bytes(["Honey bees communicate with a waggle dance.", "Drones do not sting."])
    corrupt = pdf_bytes(["This PDF is cut off before its end."])[:300]  # truncated
    note = b"Tides are caused by the gravity of the moon and the sun."
    _upload(world, "mixed", {"bees.pdf": good, "cut.pdf": corrupt, "tides.txt": note})
    world.env.invocations.clear()

    report = world.c.ingestion.process(TENANT, NS, PROJECT, "mixed", wait=True)

    assert report.finished and (report.processed, report.failed) == (2, 1)
    docs = _docs(world, "mixed")
    assert docs["bees.pdf"].status == DocStatus.DONE and docs["bees.pdf"].chunk_count >= 1
    assert docs["tides.txt"].status == DocStatus.DONE
    assert docs["cut.pdf"].status == DocStatus.FAIL
    assert "PDF" in docs["cut.pdf"].message  # the parser's readable reason
    by_name = {d["filename"]: d for d in report.details}
    assert by_name["cut.pdf"]["status"] == "failed" and "PDF" in by_name["cut.pdf"]["error"]
    assert by_name["bees.pdf"]["parser"] == "pdf"

    st = world.c.workflow.status(report.task_id)
    assert st.state == RunState.SUCCEEDED
    assert (st.total, st.succeeded, st.failed, st.cancelled) == (3, 2, 1, 0)
    # Each pipeline step ran as its own task, then the run was completed.
    steps = [e["step"] for e in world.env.invocations]
    assert steps == [*INGEST_STEPS, COMPLETE_STEP]  # 3 documents: one batch
    assert all(len(json.dumps(e)) < 1024 for e in world.env.invocations)  # keys, not data
    assert _work_keys(world) == []  # intermediate blobs deleted

    hits = world.c.retrieval.query(
        TENANT, NS, PROJECT, RetrievalRequest(query="how do honey bees communicate?")
    ).hits
    assert hits and hits[0].metadata["filename"] == "bees.pdf"


def test_a_transient_error_is_retried_and_then_succeeds(world: World) -> None:
    _upload(world, "flaky", {"a.txt": b"Basalt is a volcanic rock.", "b.txt": b"Lava cools."})
    failed: list[str] = []

    def throttle_once(params: dict[str, Any], **_: Any) -> None:
        # The embed step reading parse_and_chunk's output: S3 says slow down, once.
        if params["Key"].endswith("/parse_and_chunk") and not failed:
            failed.append(params["Key"])
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow"}}, "GetObject")

    world.env.s3.meta.events.register("before-parameter-build.s3.GetObject", throttle_once)
    world.env.invocations.clear()
    try:
        report = world.c.ingestion.process(TENANT, NS, PROJECT, "flaky", wait=True)
    finally:
        world.env.s3.meta.events.unregister("before-parameter-build.s3.GetObject", throttle_once)

    assert failed, "the throttle never fired"
    assert (report.processed, report.failed) == (2, 0)
    assert {d.status for d in _docs(world, "flaky").values()} == {DocStatus.DONE}
    steps = [e["step"] for e in world.env.invocations]
    assert steps.count("embed") == 2 and FAIL_STEP not in steps  # retried, not caught


def test_a_step_that_keeps_failing_ends_its_documents_fail_with_the_reason(world: World) -> None:
    _upload(world, "down", {"c.txt": b"Obsidian is volcanic glass."})

    def always(params: dict[str, Any], **_: Any) -> None:
        if params["Key"].endswith("/parse_and_chunk"):
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow"}}, "GetObject")

    world.env.s3.meta.events.register("before-parameter-build.s3.GetObject", always)
    world.env.invocations.clear()
    try:
        report = world.c.ingestion.process(TENANT, NS, PROJECT, "down", wait=True)
    finally:
        world.env.s3.meta.events.unregister("before-parameter-build.s3.GetObject", always)

    assert (report.processed, report.failed) == (0, 1)
    doc = _docs(world, "down")["c.txt"]
    assert doc.status == DocStatus.FAIL
    assert doc.message == "S3 GetObject throttled or unavailable (SlowDown) (gave up after retries)"
    steps = [e["step"] for e in world.env.invocations]
    assert steps.count("embed") == 3 and FAIL_STEP in steps  # 1 + 2 retries, then the Catch
    assert _work_keys(world) == []
