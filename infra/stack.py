"""PastureStack: everything one `cdk deploy` makes, composed of the constructs in
infra/constructs/, with every function and route taken from `infra.plan` (which reads the
route manifest) and every IAM permission from the ports each group declares."""

from __future__ import annotations

from typing import Any

from aws_cdk import App, ArnFormat, Aspects, CfnOutput, Stack
from cdk_nag import AwsSolutionsChecks
from constructs import Construct

from infra import plan
from infra.config import StackConfig, context_keys, load
from infra.constructs.api import Api, ConsumerKeys, usage_plan_name
from infra.constructs.functions import Layers, PastureFunction
from infra.constructs.inference import Inference
from infra.constructs.ingestion import Ingestion
from infra.constructs.observability import Observability
from infra.constructs.search import Search
from infra.constructs.storage import Storage
from infra.nag import suppress

# The Records adapter's calls (dynamodb_records.py): nothing else, no scans.
DYNAMODB_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"]
# The BlobStore adapter's calls (s3_blob_store.py): streamed multipart uploads, reads,
# deletes (single and by prefix, which lists).
S3_OBJECT_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
PORTS = frozenset(
    {
        "records",
        "blobs",
        "search_index",
        "workflow",
        "embedder",
        "tokenizer",
        "chat_model",
        "transcriber",
        "web",
        "api_keys",
    }
)


# CDK behaviours chosen explicitly (the cdk.json of a fresh `cdk init` sets many; these are the
# ones this stack depends on).
FEATURE_FLAGS = {
    # Server access logs are delivered through a bucket policy, not the legacy ACL.
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
}


class PastureStack(Stack):
    def __init__(self, scope: Construct, cid: str, *, config: StackConfig, **kwargs: Any) -> None:
        super().__init__(scope, cid, description="Pasture: RAG, chat and speech API", **kwargs)
        self.config = config
        plans = plan.functions(ragflow_accounts=config.ragflow_accounts)
        names = {p.name for p in plans}
        unknown = sorted(set(config.memory) - names)
        if unknown:
            raise ValueError(f"memory: unknown functions {unknown} (known: {sorted(names)})")
        for p in plans:
            if p.ports - PORTS:
                raise ValueError(f"{p.name}: no IAM mapping for ports {sorted(p.ports - PORTS)}")

        self.storage = Storage(self, "Storage", config=config)
        self.search = Search(self, "Search", config=config)
        self.inference = Inference(self, "Inference", config=config)
        self.layers = Layers(self, "Layers", config=config)

        by_name = {p.name: p for p in plans}
        self.ingestion = Ingestion(
            self,
            "Ingestion",
            plan=by_name["ingest"],
            config=config,
            layers=self.layers,
            environment=self._environment(by_name["ingest"]),
        )
        self.functions: dict[str, PastureFunction] = {"ingest": self.ingestion.function}
        for p in plans:
            if p.name == "ingest":
                continue
            self.functions[p.name] = PastureFunction(
                self,
                f"{p.name.title()}Function",
                plan=p,
                config=config,
                layers=self.layers,
                environment=self._environment(p),
            )
        groups = {p.name: self.functions[p.name] for p in plans if p.group is not None}
        deployed_groups = [p.group for p in plans if p.group is not None]
        self.api = Api(
            self,
            "Api",
            config=config,
            routes=plan.routes(deployed_groups),
            functions=groups,
            authorizer_function=self.functions["authorizer"],
        )
        keys_fn = self.functions["keys"]
        for p in plans:
            self._grant(self.functions[p.name], p.ports)
        self.consumer_keys = ConsumerKeys(
            self, "ConsumerKeys", consumers=config.consumers, function=keys_fn, config=config
        )
        self.observability = Observability(
            self,
            "Observability",
            config=config,
            functions=self.functions,
            rest_api=self.api.rest_api,
            state_machine=self.ingestion.state_machine,
            domain=self.search.domain,
        )

        CfnOutput(self, "ApiUrl", value=self.api.url, description="Base URL of every dialect")
        CfnOutput(
            self,
            "UsagePlanId",
            value=self.api.usage_plan.usage_plan_id,
            description="PASTURE_USAGE_PLAN_ID for `pasture keys create` on this stack",
        )
        CfnOutput(
            self, "TableName", value=self.storage.table.table_name, description="PASTURE_TABLE"
        )
        CfnOutput(
            self, "BucketName", value=self.storage.bucket.bucket_name, description="PASTURE_BUCKET"
        )
        CfnOutput(
            self,
            "SearchEndpoint",
            value=self.search.endpoint,
            description="PASTURE_OPENSEARCH_ENDPOINT",
        )
        CfnOutput(
            self,
            "StateMachineArn",
            value=self.ingestion.state_machine.state_machine_arn,
            description="PASTURE_STATE_MACHINE_ARN",
        )
        CfnOutput(
            self,
            "ChatModel",
            value=config.chat_model,
            description="endpoint (GPU on), url (chatUrl) or none",
        )
        if self.inference.endpoint_name:
            CfnOutput(
                self,
                "InferenceEndpoint",
                value=self.inference.endpoint_name,
                description="PASTURE_SAGEMAKER_ENDPOINT",
            )

    # ------------------------------------------------------------------ wiring

    def _environment(self, p: plan.FunctionPlan) -> dict[str, str]:
        """The `Settings` variables (shared/pasture/config.py) this function reads."""
        c = self.config
        env = {
            "PASTURE_BACKEND": "aws",
            "PASTURE_TRACING": str(c.tracing).lower(),
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "POWERTOOLS_METRICS_NAMESPACE": "Pasture",
        }
        if "records" in p.ports:
            env["PASTURE_TABLE"] = self.storage.table.table_name
            env["PASTURE_RAGFLOW_ACCOUNTS"] = str(c.ragflow_accounts).lower()
        if "blobs" in p.ports:
            env["PASTURE_BUCKET"] = self.storage.bucket.bucket_name
        if "search_index" in p.ports:
            env["PASTURE_OPENSEARCH_ENDPOINT"] = self.search.endpoint
        if "workflow" in p.ports:
            env["PASTURE_STATE_MACHINE_ARN"] = self.ingestion.state_machine.state_machine_arn
        if p.ports & {"embedder", "tokenizer"}:
            env["PASTURE_EMBEDDER"] = c.embedder
            env["PASTURE_EMBED_MODEL_DIR"] = plan.MODEL_DIR_IN_LAMBDA
        if p.ports & {"chat_model", "transcriber", "embedder"} and self.inference.endpoint_name:
            env["PASTURE_SAGEMAKER_ENDPOINT"] = self.inference.endpoint_name
        if "chat_model" in p.ports:
            env["PASTURE_CHAT_CONTEXT_LENGTH"] = str(c.chat_context_length)
            env["PASTURE_CHAT_MODEL_NAME"] = c.chat_model_name
            if c.chat_url:
                env["PASTURE_CHAT_URL"] = c.chat_url
        if "api_keys" in p.ports:  # keys it makes go into the usage plan too
            env["PASTURE_USAGE_PLAN_NAME"] = usage_plan_name(self.stack_name)
        if "transcriber" in p.ports:
            env["PASTURE_TRANSCRIBER"] = c.transcriber
            if c.transcriber == "whispercpp" and c.transcriber_url:
                env["PASTURE_TRANSCRIBER_URL"] = c.transcriber_url
        return env

    def _grant(self, fn: PastureFunction, ports: frozenset[str]) -> None:
        """Least privilege: only what the function's ports call, on this stack's resources."""
        if "records" in ports:
            fn.grant(DYNAMODB_ACTIONS, [self.storage.table.table_arn])
        if "blobs" in ports:
            fn.grant(S3_OBJECT_ACTIONS, [self.storage.bucket.arn_for_objects("*")])
            fn.grant(["s3:ListBucket"], [self.storage.bucket.bucket_arn])
        if "search_index" in ports:
            self.search.grant(fn.role)
        if "workflow" in ports:
            sm = self.ingestion.state_machine
            fn.grant(["states:StartExecution"], [sm.state_machine_arn])
            name = self.split_arn(sm.state_machine_arn, ArnFormat.COLON_RESOURCE_NAME).resource_name
            fn.grant(
                ["states:DescribeExecution", "states:StopExecution"],
                [
                    self.format_arn(
                        service="states",
                        resource="execution",
                        resource_name=f"{name}:*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        if "embedder" in ports and self.config.embedder == "sagemaker":
            self.inference.grant_invoke(fn.role, stream=False)
        if "chat_model" in ports:
            self.inference.grant_invoke(fn.role, stream=True)
        if "transcriber" in ports:
            self.inference.grant_invoke(fn.role, stream=False)
        if "api_keys" in ports:
            # ApiGatewayApiKeys: GetUsagePlans (the plan by name), CreateApiKey, GetApiKeys
            # (by name), CreateUsagePlanKey, DeleteApiKey. No reference to the plan itself:
            # plan -> stage -> methods -> function would close a cycle.
            base = f"arn:{self.partition}:apigateway:{self.region}::"
            fn.grant(["apigateway:GET"], [f"{base}/usageplans"])
            fn.grant(["apigateway:POST", "apigateway:GET"], [f"{base}/apikeys"])
            fn.grant(["apigateway:POST"], [f"{base}/usageplans/*/keys"])
            fn.grant(["apigateway:DELETE"], [f"{base}/apikeys/*"])
        _suppress_port_wildcards(fn, ports)


def _suppress_port_wildcards(fn: PastureFunction, ports: frozenset[str]) -> None:
    reasons = []
    if "blobs" in ports:
        reasons.append("objects of the stack's own bucket (keys are content hashes per tenant)")
    if "search_index" in ports:
        reasons.append("index paths of the stack's own search domain (<domain arn>/*)")
    if "workflow" in ports:
        reasons.append("executions of the stack's own state machine (names made per run)")
    if "api_keys" in ports:
        reasons.append(
            "API keys this function makes (ids assigned by API Gateway), added to the usage"
            " plan it finds by name (its id would close a dependency cycle)"
        )
    if reasons:
        suppress(
            fn.role,
            "AwsSolutions-IAM5",
            "Wildcards only below this stack's own resources: " + "; ".join(reasons) + ".",
        )


def build_app(
    context: dict[str, Any] | None = None, *, outdir: str | None = None, nag: bool = True
) -> tuple[App, PastureStack]:
    app = App(context={**FEATURE_FLAGS, **(context or {})}, outdir=outdir)
    values = {k: app.node.try_get_context(k) for k in [*context_keys(), "config"]}
    config = load({k: v for k, v in values.items() if v is not None})
    stack = PastureStack(app, config.stack_name, config=config)
    if nag:
        Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return app, stack
