"""The Amazon States Language definition of Pasture's workflow state machine, generated.

A pure function of its arguments (no AWS call), so the CDK stack, the tests and the docs all get
the same machine. Its shape:

    Batches (Map over the run's batches, MaxConcurrency bounded, inline)
      Route (Choice on the run's kind)
        kind with a pipeline (e.g. ingest): one Lambda Task per pipeline step, in order
            parse_and_chunk -> embed -> index -> finish
        any other kind: one Task, `handle`, that calls the kind's ItemHandler on the batch
      every Task: Retry (exponential backoff with full jitter) on transient errors, and
                  Catch States.ALL -> record_failure (the batch's unfinished items end FAIL,
                  with the reason; the other batches go on)
    complete_run (marks the run finished, deletes its work blobs)

Every Task invokes the one `ingest` Lambda function (functions/ingest/handler.py) with
`{"step": <name>, "state": <the state>}`; the state is `{run_id, kind, batch, work}`, where
`work` is the BlobStore key of the batch's intermediate data (chunk texts, vectors) written by
the previous step. Step Functions caps a state at 256 KB, so nothing bigger than keys travels.
The step names come from the pipelines themselves (services/ingestion.py's INGEST_STEPS): the
state machine is generated from the same steps the local worker threads run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# The error name the ingest function raises for `Unavailable` (throttling, a backend that cannot
# be reached): worth retrying. Lambda reports an exception's class name as the error name.
TRANSIENT_ERROR = "PastureTransientError"
# What Lambda's own service integration can fail with that is worth retrying (AWS's list).
LAMBDA_TRANSIENT_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
# Steps the machine adds around the pipelines' own.
HANDLE_STEP = "handle"  # kinds without a pipeline: the kind's ItemHandler, one step
FAIL_STEP = "record_failure"  # the Catch of every step
COMPLETE_STEP = "complete_run"  # after the Map
MAP_STATE = "Batches"
ROUTE_STATE = "Route"
_RESERVED = frozenset({HANDLE_STEP, FAIL_STEP, COMPLETE_STEP, MAP_STATE, ROUTE_STATE})


def default_pipelines() -> dict[str, tuple[str, ...]]:
    """The multi-step pipelines the deployed ingest function runs, by workflow kind."""
    from pasture.services.ingestion import INGEST, INGEST_STEPS

    return {INGEST: INGEST_STEPS}


def definition(
    function_arn: str,
    *,
    max_concurrency: int,
    pipelines: Mapping[str, Sequence[str]] | None = None,
    retry_interval_seconds: int = 2,
    retry_max_attempts: int = 4,
    retry_backoff_rate: float = 2.0,
    retry_max_delay_seconds: int = 60,
    task_timeout_seconds: int = 900,
) -> dict[str, Any]:
    """The state machine as a dict (json.dumps it for CreateStateMachine).

    `function_arn`: the ingest Lambda function. `max_concurrency`: batches processed at once (an
    inline Map runs at most 40 iterations concurrently whatever this says). `pipelines`: kind ->
    ordered step names (default: `default_pipelines()`); every other kind runs `handle`.
    Retries: after `retry_interval_seconds`, multiplied by `retry_backoff_rate` each attempt,
    capped at `retry_max_delay_seconds`, with full jitter, at most `retry_max_attempts` retries.
    `task_timeout_seconds`: per Lambda invocation (Lambda's own limit is 900).
    """
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be at least 1")
    if retry_interval_seconds < 1 or retry_max_attempts < 0 or retry_backoff_rate < 1.0:
        raise ValueError("retries need interval >= 1 s, attempts >= 0 and backoff rate >= 1")
    flows = dict(default_pipelines() if pipelines is None else pipelines)
    seen: set[str] = set()
    for kind, steps in flows.items():
        if not steps:
            raise ValueError(f"pipeline {kind!r} has no steps")
        clash = (set(steps) & (seen | _RESERVED)) or (
            set(steps) if len(set(steps)) != len(steps) else set()
        )
        if clash:
            raise ValueError(f"pipeline {kind!r}: step names must be unique ({sorted(clash)})")
        seen |= set(steps)

    retry = [
        {
            "ErrorEquals": [*LAMBDA_TRANSIENT_ERRORS, TRANSIENT_ERROR],
            "IntervalSeconds": retry_interval_seconds,
            "MaxAttempts": retry_max_attempts,
            "BackoffRate": retry_backoff_rate,
            "MaxDelaySeconds": retry_max_delay_seconds,
            "JitterStrategy": "FULL",
        }
    ]

    def task(step: str, payload_state: Any, *, catch: bool, next_state: str | None) -> dict:
        state: dict[str, Any] = {
            "Type": "Task",
            "Comment": f"step {step!r}: one invocation of the ingest function",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {
                "FunctionName": function_arn,
                "Payload": {"step": step, **payload_state},
            },
            # The function returns the next state ({run_id, kind, batch, work}).
            "OutputPath": "$.Payload",
            "TimeoutSeconds": task_timeout_seconds,
            "Retry": retry,
        }
        if catch:
            # Keep the state (which names the batch and its work) and add the error to it.
            state["Catch"] = [
                {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": FAIL_STEP}
            ]
        if next_state is None:
            state["End"] = True
        else:
            state["Next"] = next_state
        return state

    whole_state = {"state.$": "$"}
    item_states: dict[str, Any] = {}
    if flows:  # a Choice needs at least one rule: without pipelines every kind is `handle`
        item_states[ROUTE_STATE] = {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.kind", "StringEquals": kind, "Next": steps[0]}
                for kind, steps in flows.items()
            ],
            "Default": HANDLE_STEP,
        }
    for steps in flows.values():
        for i, step in enumerate(steps):
            nxt = steps[i + 1] if i + 1 < len(steps) else None
            item_states[step] = task(step, whole_state, catch=True, next_state=nxt)
    item_states[HANDLE_STEP] = task(HANDLE_STEP, whole_state, catch=True, next_state=None)
    # No Catch here: if even recording the failure fails after its retries, the execution
    # fails, and StepFunctionsWorkflow.status reports the run FAILED with the reason.
    item_states[FAIL_STEP] = task(FAIL_STEP, whole_state, catch=False, next_state=None)

    return {
        "Comment": "Pasture workflow runs: a Map over the run's batches of items, one Lambda"
        " task per pipeline step (generated by pasture.adapters.aws.state_machine)",
        "StartAt": MAP_STATE,
        "States": {
            MAP_STATE: {
                "Type": "Map",
                "ItemsPath": "$.batches",
                "ItemSelector": {
                    "run_id.$": "$.run_id",
                    "kind.$": "$.kind",
                    "batch.$": "$$.Map.Item.Value",
                    "work": "",
                },
                "MaxConcurrency": max_concurrency,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "INLINE"},
                    "StartAt": ROUTE_STATE if flows else HANDLE_STEP,
                    "States": item_states,
                },
                # Outcomes live in Records; drop the iterations' outputs (256 KB cap).
                "ResultPath": None,
                "Next": COMPLETE_STEP,
            },
            COMPLETE_STEP: task(
                COMPLETE_STEP,
                {"state": {"run_id.$": "$.run_id", "kind.$": "$.kind"}},
                catch=False,
                next_state=None,
            ),
        },
    }


def task_states(defn: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Every Task state of a definition by name, inside Maps too (for tests and checks)."""
    found: dict[str, Mapping[str, Any]] = {}
    for name, state in defn["States"].items():
        if state["Type"] == "Task":
            found[name] = state
        elif state["Type"] == "Map":
            found.update(task_states(state["ItemProcessor"]))
    return found
