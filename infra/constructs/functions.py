"""One Lambda per entry of `infra.plan.functions()`: arm64, Python 3.12, its own role with only
what its ports need, its own log group, the layers its ports need, and the environment
variables `pasture.config.Settings` reads."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import ROOT, StackConfig
from infra.nag import suppress
from infra.plan import LAYERS, FunctionPlan

RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
LWA_ACCOUNT = "753240598075"  # the AWS Lambda Web Adapter's publishing account


class Layers(Construct):
    """The layers built by `layers/build.py`; synthesis refuses to go on without them."""

    def __init__(self, scope: Construct, cid: str, *, config: StackConfig) -> None:
        super().__init__(scope, cid)
        base = (ROOT / config.layers_dir).resolve()
        missing = [n for n in LAYERS if not (base / n).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"layers {missing} are not built in {base}: run `python layers/build.py`"
                " (or `make synth`, which builds them first)"
            )
        self.layers: dict[str, lambda_.ILayerVersion] = {
            name: lambda_.LayerVersion(
                self,
                name.title(),
                code=lambda_.Code.from_asset(str(base / name)),
                compatible_architectures=[ARCHITECTURE],
                compatible_runtimes=[RUNTIME],
                description=f"Pasture {name} layer (layers/build.py)",
                removal_policy=RemovalPolicy.DESTROY,
            )
            for name in LAYERS
        }
        self.web_adapter = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "WebAdapter",
            f"arn:aws:lambda:{Stack.of(self).region}:{LWA_ACCOUNT}"
            f":layer:LambdaAdapterLayerArm64:{config.web_adapter_layer_version}",
        )


class PastureFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        cid: str,
        *,
        plan: FunctionPlan,
        config: StackConfig,
        layers: Layers,
        environment: Mapping[str, str],
    ) -> None:
        super().__init__(scope, cid)
        self.plan = plan
        self.log_group = log_group(self, "Logs", config)
        # No managed policy (AWSLambdaBasicExecutionRole would allow any log group): writes
        # to its own log group only. Port permissions are added by the stack.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Pasture {plan.name} function: only the ports it uses",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        fn_layers = [layers.layers[n] for n in plan.layers]
        env = dict(environment)
        env["POWERTOOLS_SERVICE_NAME"] = plan.name
        if plan.streams:
            # The Lambda Web Adapter runs run.sh's server and streams its answers
            # (functions/README.md); it must come first among the layers' wrappers.
            fn_layers.insert(0, layers.web_adapter)
            env.update(
                AWS_LAMBDA_EXEC_WRAPPER="/opt/bootstrap",
                AWS_LWA_INVOKE_MODE="response_stream",
                AWS_LWA_PORT="8080",
                AWS_LWA_READINESS_CHECK_PATH="/health/liveness",
            )
        code_dir: Path = ROOT / "functions" / plan.name
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=plan.handler,
            code=lambda_.Code.from_asset(str(code_dir), exclude=["__pycache__", "*.pyc"]),
            layers=fn_layers,
            memory_size=config.memory.get(plan.name, plan.memory_mb),
            timeout=Duration.seconds(plan.timeout_s),
            role=self.role,
            environment=env,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE if config.tracing else lambda_.Tracing.DISABLED,
            description=f"Pasture {plan.name}",
        )
        suppress(
            self,
            "AwsSolutions-L1",
            "Python 3.12 is the runtime Pasture is built and tested for (the layers are"
            " built for cp312); moving to a newer runtime is a deliberate upgrade.",
        )
        if config.tracing:
            suppress(
                self.role,
                "AwsSolutions-IAM5",
                "X-Ray's PutTraceSegments/PutTelemetryRecords have no resource-level permissions.",
                applies_to=["Resource::*"],
            )

    def grant(self, actions: list[str], resources: list[str]) -> None:
        self.role.add_to_policy(iam.PolicyStatement(actions=actions, resources=resources))


_RETENTION = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1096: "THREE_YEARS",
    1827: "FIVE_YEARS",
    2192: "SIX_YEARS",
    2557: "SEVEN_YEARS",
}


def retention(days: int) -> logs.RetentionDays:
    return logs.RetentionDays[_RETENTION[days]]


def log_group(scope: Construct, cid: str, config: StackConfig) -> logs.LogGroup:
    """Every log group of the stack: the configured retention, gone with the stack (logs are
    not user data)."""
    return logs.LogGroup(
        scope,
        cid,
        retention=retention(config.log_retention_days),
        removal_policy=RemovalPolicy.DESTROY,
    )
