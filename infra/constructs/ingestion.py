"""The ingestion workflow: the `ingest` Lambda and the Step Functions state machine generated
by `pasture.adapters.aws.state_machine.definition()` from the same steps the local worker
threads run (services/ingestion.py)."""

from __future__ import annotations

import json

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import StackConfig
from infra.constructs.functions import Layers, PastureFunction, log_group
from infra.nag import suppress
from infra.plan import FunctionPlan
from pasture.adapters.aws.state_machine import definition

FUNCTION_ARN = "${IngestFunctionArn}"  # substituted by CloudFormation


class Ingestion(Construct):
    def __init__(
        self,
        scope: Construct,
        cid: str,
        *,
        plan: FunctionPlan,
        config: StackConfig,
        layers: Layers,
        environment: dict[str, str],
    ) -> None:
        super().__init__(scope, cid)
        self.function = PastureFunction(
            self, "Ingest", plan=plan, config=config, layers=layers, environment=environment
        )
        self.log_group = log_group(self, "Logs", config)
        body = definition(FUNCTION_ARN, max_concurrency=config.ingest_concurrency)
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="Pasture ingestion state machine: invoke the ingest function",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[self.function.function.function_arn],
            )
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_string(json.dumps(body)),
            definition_substitutions={"IngestFunctionArn": self.function.function.function_arn},
            role=role,
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False
            ),
            tracing_enabled=config.tracing,
            # A run is bounded by its batches' Lambda timeouts and retries; a day is far past it.
            timeout=Duration.hours(24),
        )
        if not config.tracing:
            suppress(
                self.state_machine,
                "AwsSolutions-SF2",
                "X-Ray tracing follows the stack's `tracing` setting (off by default, like the"
                " functions'); its execution history and ALL-level logs stay on.",
            )
        suppress(
            role,
            "AwsSolutions-IAM5",
            "CloudWatch Logs' log-delivery APIs (and X-Ray's, with tracing) have no"
            " resource-level permissions (Step Functions' documented policy for them).",
            applies_to=["Resource::*"],
        )
