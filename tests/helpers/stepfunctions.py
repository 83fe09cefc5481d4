"""Step Functions on moto, executing the real generated state machine, all in process.

moto 5 interprets Amazon States Language when asked to
(`mock_aws(config={"stepfunctions": {"execute_state_machine": True}})`: its `stepfunctions/parser`
backend runs each execution in a thread). A Lambda task (`arn:aws:states:::lambda:invoke`) is a
real boto3 `Invoke` (`parser/asl/component/state/exec/state_task/lambda_eval_utils.py`), which
mock_aws routes to moto's Lambda backend; that would run the function's code in Docker
(`moto.awslambda.models.LambdaFunction._invoke_lambda`), and there is no Docker here.

The patch point is exactly that method, `LambdaFunction._invoke_lambda(self, event)`: it returns
`(payload, errored, logs)`, and everything around it stays moto's: the Invoke API, the
`FunctionError` header, Step Functions' parsing of the error payload into an error name, its
Retry/Catch/Map logic. Our replacement calls the real `functions/ingest/handler.py`
`handler(event, context)` in this process and answers as the Lambda runtime does: the return
value as JSON, or for an exception `{"errorType": <class name>, "errorMessage", "stackTrace"}`
with the error flag. Patching anything higher (the Lambda Invoke response, the ASL task state)
would skip code the real service path runs.

Each `stepfunctions_env()` is a fresh moto world: a bucket (S3BlobStore), the Records table
(DynamoDBRecords), an IAM role, the ingest function, and a freshly loaded handler module whose
`_tasks` the test sets (the Lambda's own cold start builds them from the settings instead).
On exit, running executions are stopped and moto's interpreter threads joined, so no
execution outlives its mock.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

from pasture.adapters.aws.dynamodb_records import DynamoDBRecords, create_table
from pasture.adapters.aws.s3_blob_store import S3BlobStore
from pasture.adapters.aws.state_machine import definition
from pasture.adapters.aws.stepfunctions_workflow import StepFunctionsWorkflow
from pasture.adapters.aws.workflow_tasks import StepPipeline, WorkflowTasks
from pasture.ports import ItemHandler, RunState, RunStatus, Workflow
from tests.helpers.aws import BUCKET, REGION, TABLE, _isolated_env

HANDLER_PATH = Path(__file__).resolve().parents[2] / "functions" / "ingest" / "handler.py"
FUNCTION = "pasture-ingest"
_modules = itertools.count()


def load_handler_module() -> ModuleType:
    """A fresh copy of functions/ingest/handler.py (not a package: loaded by path)."""
    name = f"pasture_ingest_handler_{next(_modules)}"
    spec = importlib.util.spec_from_file_location(name, HANDLER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class SfnEnv:
    s3: Any
    dynamodb: Any
    sfn: Any
    records: DynamoDBRecords
    blobs: S3BlobStore
    handler_module: ModuleType
    function_arn: str
    role_arn: str
    invocations: list[dict[str, Any]] = field(default_factory=list)
    # Called with each event before the handler runs; raise to fail that invocation.
    before_invoke: Callable[[dict[str, Any]], None] | None = None

    def use_tasks(self, tasks: WorkflowTasks) -> None:
        self.handler_module._tasks = tasks

    def create_machine(self, defn: Mapping[str, Any], name: str = "pasture-workflow") -> str:
        return str(
            self.sfn.create_state_machine(
                name=name, definition=json.dumps(defn), roleArn=self.role_arn
            )["stateMachineArn"]
        )

    def workflow(
        self,
        handlers: Mapping[str, ItemHandler],
        *,
        pipelines: Mapping[str, StepPipeline] | None = None,
        max_concurrency: int = 2,
        batch_items: int = 3,
        records: DynamoDBRecords | None = None,
    ) -> StepFunctionsWorkflow:
        """A workflow over a machine generated for these pipelines (plus `handle` for every
        other kind), with the handler module dispatching to them."""
        pipes = dict(pipelines or {})
        self.use_tasks(WorkflowTasks(records or self.records, self.blobs, handlers, pipes))
        arn = self.create_machine(
            definition(
                self.function_arn,
                max_concurrency=max_concurrency,
                pipelines={k: tuple(p.steps) for k, p in pipes.items()},
                retry_interval_seconds=1,
                retry_max_attempts=2,
            )
        )
        return StepFunctionsWorkflow(
            self.sfn,
            records or self.records,
            arn,
            kinds=set(handlers) | set(pipes),
            batch_items=batch_items,
        )

    def _invoke(self, event: Any) -> tuple[str, bool, str]:
        """The stand-in for moto's Docker run of the function: the real handler, in process."""
        if isinstance(event, str):
            event = json.loads(event or "{}")
        self.invocations.append(event)
        try:
            if self.before_invoke is not None:
                self.before_invoke(event)
            result = self.handler_module.handler(event, None)
        except Exception as exc:  # what the Lambda runtime reports for an unhandled error
            body = {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_tb(exc.__traceback__),
            }
            return json.dumps(body), True, ""
        return json.dumps(result), False, ""


def _stop_everything(sfn: Any) -> None:
    from moto.stepfunctions.parser.utils import TMP_THREADS

    for machine in sfn.list_state_machines()["stateMachines"]:
        running = sfn.list_executions(
            stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING"
        )["executions"]
        for ex in running:
            sfn.stop_execution(executionArn=ex["executionArn"])
    deadline = time.time() + 10
    for t in list(TMP_THREADS):
        t.join(max(0.0, deadline - time.time()))


@contextmanager
def stepfunctions_env() -> Iterator[SfnEnv]:
    import boto3
    from moto import mock_aws
    from moto.awslambda.models import LambdaFunction

    with ExitStack() as stack:
        stack.enter_context(mock.patch.dict(os.environ, _isolated_env(), clear=True))
        stack.enter_context(mock_aws(config={"stepfunctions": {"execute_state_machine": True}}))
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        create_table(dynamodb, TABLE)
        iam = boto3.client("iam", region_name=REGION)
        role_arn = iam.create_role(
            RoleName="pasture-test",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
        lam = boto3.client("lambda", region_name=REGION)
        function_arn = lam.create_function(
            FunctionName=FUNCTION,
            Runtime="python3.12",
            Role=role_arn,
            Handler="handler.handler",
            Code={"ZipFile": b"not run: the test calls functions/ingest/handler.py in process"},
            Timeout=900,
        )["FunctionArn"]
        sfn = boto3.client("stepfunctions", region_name=REGION)
        env = SfnEnv(
            s3=s3,
            dynamodb=dynamodb,
            sfn=sfn,
            records=DynamoDBRecords(dynamodb, TABLE),
            blobs=S3BlobStore(s3, BUCKET),
            handler_module=load_handler_module(),
            function_arn=function_arn,
            role_arn=role_arn,
        )

        def invoke(_fn: Any, event: Any = None) -> tuple[str, bool, str]:
            return env._invoke(event)

        stack.enter_context(mock.patch.object(LambdaFunction, "_invoke_lambda", invoke))
        stack.callback(_stop_everything, sfn)  # runs first on exit, while the mock is up
        yield env


class MotoStepFunctionsWorkflow(StepFunctionsWorkflow):
    """For the Workflow contract suite: `stop()` (its cleanup hook) ends the moto world."""

    _closer: ExitStack

    def stop(self) -> None:
        self._closer.close()


def contract_workflow(_tmp: Path, handlers: Mapping[str, ItemHandler]) -> Workflow:
    stack = ExitStack()
    env = stack.enter_context(stepfunctions_env())
    base = env.workflow(handlers, max_concurrency=2, batch_items=3)
    wf = MotoStepFunctionsWorkflow(
        env.sfn, env.records, base._arn, kinds=set(handlers), batch_items=3
    )
    wf._closer = stack
    return wf


def wait_finished(wf: Workflow, run_id: str, timeout: float = 30.0) -> RunStatus:
    deadline = time.time() + timeout
    st = wf.status(run_id)
    while not st.state.finished and time.time() < deadline:
        time.sleep(0.02)
        st = wf.status(run_id)
    assert st.state.finished, f"run {run_id} still {st.state} after {timeout} s"
    return st


def execution_status(env: SfnEnv, wf: StepFunctionsWorkflow, run_id: str) -> str:
    return str(env.sfn.describe_execution(executionArn=wf._execution_arn(run_id))["status"])


__all__ = [
    "FUNCTION",
    "HANDLER_PATH",
    "MotoStepFunctionsWorkflow",
    "RunState",
    "SfnEnv",
    "contract_workflow",
    "execution_status",
    "load_handler_module",
    "stepfunctions_env",
    "wait_finished",
]
