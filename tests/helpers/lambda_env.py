"""The aws backend in process, for driving the Lambda handlers: moto's S3 and DynamoDB (the
bucket and the table created), Settings(backend="aws") naming them, and a container built by
bootstrap over those clients. Chat models are fakes (FakeChatModel, one per model name).

Step Functions is moto's too (the state machine exists; its executions are not run here).
OpenSearch is tests/helpers/opensearch_fake.py: the real opensearch-py client over an
in-process fake cluster, passed in as the `opensearch` client.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from pasture.bootstrap import AwsClients, Container, build_container
from pasture.config import Settings
from pasture.domain.projects import ModelConfig
from pasture.ports import ChatModel
from pasture.services.models import ModelFactory
from tests.helpers.aws import BUCKET, REGION, TABLE, mocked_aws, refuse_scans
from tests.helpers.fakes import FakeChatModel
from tests.helpers.opensearch_fake import fake_opensearch_client

ROOT = Path(__file__).resolve().parents[2]
STATE_MACHINE = f"arn:aws:states:{REGION}:123456789012:stateMachine:pasture-ingest"
# Only in the settings (a real client is never made here: the fake's is passed in).
OPENSEARCH = "https://pasture-search.invalid"


def fake_chat_factory(fakes: dict[str, FakeChatModel]) -> ModelFactory:
    """Every model config -> one FakeChatModel per model name."""

    def factory(mc: ModelConfig) -> tuple[Hashable, Callable[[], ChatModel]]:
        name = mc.model or mc.name
        if name not in fakes:
            fakes[name] = FakeChatModel(name, reply="Grass grows in the pasture.")
        return ("fake", name), lambda: fakes[name]

    return factory


@dataclass
class AwsStack:
    settings: Settings
    container: Container
    s3: Any
    dynamodb: Any
    stepfunctions: Any
    fakes: dict[str, FakeChatModel] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """The function's environment, as the CDK stack sets it."""
        s = self.settings
        return {
            "PASTURE_BACKEND": "aws",
            "PASTURE_TABLE": s.table,
            "PASTURE_BUCKET": s.bucket,
            "PASTURE_OPENSEARCH_ENDPOINT": s.opensearch_endpoint,
            "PASTURE_STATE_MACHINE_ARN": s.state_machine_arn,
            "PASTURE_DATA_DIR": str(s.data_dir),
            "PASTURE_API_KEYS": s.api_keys,
            **({"PASTURE_USAGE_PLAN_ID": s.usage_plan_id} if s.usage_plan_id else {}),
            **({"PASTURE_MODEL_CACHE_DIR": str(s.model_cache_dir)} if s.model_cache_dir else {}),
        }


def aws_settings(data_dir: Path, model_cache: Path, keys: dict[str, str], **kw: Any) -> Settings:
    return Settings(
        backend="aws",
        data_dir=data_dir,
        model_cache_dir=model_cache,
        table=TABLE,
        bucket=BUCKET,
        opensearch_endpoint=OPENSEARCH,
        state_machine_arn=STATE_MACHINE,
        api_keys=",".join(f"{k}:{v}" for k, v in keys.items()),
        chat_preload=False,
        **kw,
    )


@contextmanager
def aws_stack(
    data_dir: Path, model_cache: Path, keys: dict[str, str], **settings: Any
) -> Iterator[AwsStack]:
    import boto3

    from pasture.adapters.aws.dynamodb_records import create_table

    with mocked_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        ddb = boto3.client("dynamodb", region_name=REGION)
        refuse_scans(ddb)
        create_table(ddb, TABLE)
        # The state machine exists, but moto does not execute it here: runs stay RUNNING,
        # which is all the tasks routes need (tests/helpers/stepfunctions.py runs them).
        sfn = boto3.client("stepfunctions", region_name=REGION)
        sfn.create_state_machine(
            name=STATE_MACHINE.rpartition(":")[2],
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/pasture-workflow",
        )
        # The stack's usage plan: consumer keys are API keys in it too.
        apigw = boto3.client("apigateway", region_name=REGION)
        plan = apigw.create_usage_plan(name="pasture-test")["id"]
        s = aws_settings(data_dir, model_cache, keys, usage_plan_id=plan, **settings)
        fakes: dict[str, FakeChatModel] = {}
        search, _ = fake_opensearch_client()
        clients = AwsClients(
            s, s3=s3, dynamodb=ddb, stepfunctions=sfn, opensearch=search, apigateway=apigw
        )
        container = build_container(s, chat_factory=fake_chat_factory(fakes), aws=clients)
        yield AwsStack(s, container, s3, ddb, sfn, fakes)


def load_function(name: str, env: dict[str, str]) -> Any:
    """Import functions/<name>/handler.py the way the Lambda runtime does (a fresh module,
    settings read from the environment), inside the current moto mock."""
    from pasture.config import get_settings

    path = ROOT / "functions" / name / "handler.py"
    spec = importlib.util.spec_from_file_location(f"pasture_function_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ, env):
        get_settings.cache_clear()
        try:
            spec.loader.exec_module(module)
        finally:
            get_settings.cache_clear()
    return module


@contextmanager
def restored_logging() -> Iterator[None]:
    """The handlers route Pasture's loggers through Powertools (no propagation); put them
    back so other test modules' log capture still sees them."""
    names = ["pasture", *[n for n in logging.root.manager.loggerDict if "." not in n]]
    saved = {}
    for n in names:
        lg = logging.getLogger(n)
        saved[n] = (list(lg.handlers), lg.propagate, lg.level)
    try:
        yield
    finally:
        for n, (handlers, propagate, level) in saved.items():
            lg = logging.getLogger(n)
            lg.handlers, lg.propagate = handlers, propagate
            lg.setLevel(level)
