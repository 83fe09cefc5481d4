"""API Gateway REST API: every route from the manifest (`infra.plan.routes`), the REQUEST
authorizer, API keys with a usage plan, access logs and throttling, gateway errors in a body
every dialect's clients can read, and the consumer keys named in the config.

What the functions need from it (functions/README.md): key source AUTHORIZER (usage plans
throttle per key the authorizer returns), authorizer result cache TTL 0, binary media types so
uploads arrive byte-exact, no authorizer on the system and accounts groups, and the chat group
integrated with response streaming (its function runs behind the Lambda Web Adapter).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from aws_cdk import CfnOutput, CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra.config import StackConfig
from infra.constructs.functions import PastureFunction, log_group
from infra.nag import suppress
from infra.plan import Route

# Everything is passed to the functions as bytes (base64 in the event; Mangum and the web
# adapter decode it): multipart uploads, audio, PDFs. JSON arrives as bytes too, which is fine.
BINARY_MEDIA_TYPES = ["*/*"]

# API Gateway's own errors (no key, throttled, unknown path, timeout) in one body that each
# dialect's clients can read: `detail` (LlamaFarm, FastAPI), `code` + `message` (RAGFlow: any
# code other than 0 is an error), `error` (LlamaChat).
GATEWAY_ERRORS: dict[str, tuple[str, str]] = {
    # response type: (status, message)
    "UNAUTHORIZED": (
        "401",
        "Unauthorized: send a valid API key (X-Api-Key or Authorization: Bearer)",
    ),
    "ACCESS_DENIED": ("403", "Forbidden"),
    "INVALID_API_KEY": ("403", "Forbidden: this API key is not enabled for this API"),
    "MISSING_AUTHENTICATION_TOKEN": ("404", "Not Found"),
    "RESOURCE_NOT_FOUND": ("404", "Not Found"),
    "THROTTLED": ("429", "Too many requests: slow down and retry"),
    "QUOTA_EXCEEDED": ("429", "This API key's quota is used up"),
    "REQUEST_TOO_LARGE": ("413", "Request too large (API Gateway accepts at most 10 MB)"),
    "INTEGRATION_TIMEOUT": ("504", "The request took too long"),
    "AUTHORIZER_FAILURE": ("500", "The authorizer failed; retry later"),
    "AUTHORIZER_CONFIGURATION_ERROR": ("500", "The authorizer failed; retry later"),
    "DEFAULT_4XX": ("400", "Bad request"),
    "DEFAULT_5XX": ("502", "Upstream error; retry later"),
}


def gateway_error_body(status: str, message: str) -> str:
    return json.dumps(
        {"detail": message, "error": message, "code": int(status), "message": message},
        separators=(",", ":"),
    )


# Access log: who (tenant, not the key), what, how it went. The key itself is never logged.
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "time": "$context.requestTime",
    "method": "$context.httpMethod",
    "path": "$context.path",
    "resource": "$context.resourcePath",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "integrationLatencyMs": "$context.integration.latency",
    "tenant": "$context.authorizer.tenant",
    "error": "$context.error.message",
    "userAgent": "$context.identity.userAgent",
}


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        cid: str,
        *,
        config: StackConfig,
        routes: list[Route],
        functions: Mapping[str, PastureFunction],
        authorizer_function: PastureFunction,
    ) -> None:
        super().__init__(scope, cid)
        stack = Stack.of(self)
        self.access_logs = log_group(self, "AccessLogs", config)
        self.rest_api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=stack.stack_name,
            description="Pasture: LlamaFarm, RAGFlow, LlamaChat, internet chatbot and OpenAI dialects",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            api_key_source_type=apigw.ApiKeySourceType.AUTHORIZER,
            binary_media_types=BINARY_MEDIA_TYPES,
            # Access and execution logs need the account's API Gateway CloudWatch role.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name=config.stage_name,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT)),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # would log request bodies and keys
                # Per-method detailed metrics are billed per metric-hour; the API-level
                # Count/Latency/4XX/5XX the alarms and dashboard use are free without them.
                metrics_enabled=False,
                tracing_enabled=config.tracing,
                throttling_rate_limit=config.throttle_rate,
                throttling_burst_limit=config.throttle_burst,
            ),
        )
        for response_type, (status, message) in GATEWAY_ERRORS.items():
            self.rest_api.add_gateway_response(
                f"Error{_pascal(response_type)}",
                type=getattr(
                    apigw.ResponseType,
                    response_type.replace("_4XX", "_4_XX").replace("_5XX", "_5_XX"),
                ),
                status_code=status,
                response_headers={"Content-Type": "'application/json'"},
                templates={"application/json": gateway_error_body(status, message)},
            )

        # Cache TTL 0: the key may arrive in either of two headers (functions/README.md), so
        # no identity source is required and nothing is cached across requests.
        self.authorizer = apigw.RequestAuthorizer(
            self,
            "Authorizer",
            handler=authorizer_function.function,
            identity_sources=[],
            results_cache_ttl=Duration.seconds(0),
        )

        integrations: dict[str, apigw.LambdaIntegration] = {}
        for name, fn in functions.items():
            streams = fn.plan.streams
            integrations[name] = apigw.LambdaIntegration(
                fn.function,
                proxy=True,
                # One permission for all of the group's methods (a statement per method would
                # overflow the function's resource policy).
                scope_permission_to_method=False,
                allow_test_invoke=False,
                response_transfer_mode=(
                    apigw.ResponseTransferMode.STREAM
                    if streams
                    else apigw.ResponseTransferMode.BUFFERED
                ),
                # A streamed answer may run for minutes; buffered ones stop at 29 s anyway.
                timeout=Duration.minutes(15) if streams else None,
            )
        self.methods: list[apigw.Method] = []
        for route in routes:
            fn = functions[route.group]
            resource = (
                self.rest_api.root
                if route.path == "/"
                else self.rest_api.root.resource_for_path(route.path.lstrip("/"))
            )
            authorized = fn.plan.authorized
            method = resource.add_method(
                "ANY",
                integrations[route.group],
                authorizer=self.authorizer if authorized else None,
                authorization_type=(
                    apigw.AuthorizationType.CUSTOM if authorized else apigw.AuthorizationType.NONE
                ),
                api_key_required=authorized,
            )
            self.methods.append(method)
            if not authorized:
                suppress(
                    method,
                    "AwsSolutions-APIG4",
                    f"The {route.group} group is open by design: health probes and service"
                    " info (system), and RAGFlow's register/login, which precede any key"
                    " (accounts).",
                )
                suppress(
                    method,
                    "AwsSolutions-COG4",
                    f"The {route.group} group takes no credentials (see APIG4).",
                )
            else:
                suppress(
                    method,
                    "AwsSolutions-COG4",
                    "Clients of the five dialects authenticate with API keys, checked by the"
                    " Lambda REQUEST authorizer; Cognito user pools are not what they speak.",
                )

        self.usage_plan = self.rest_api.add_usage_plan(
            "UsagePlan",
            name=usage_plan_name(stack.stack_name),
            description="Every Pasture key: per-key throttling (and quota, when configured)",
            throttle=apigw.ThrottleSettings(
                rate_limit=config.key_rate, burst_limit=config.key_burst
            ),
            quota=(
                apigw.QuotaSettings(limit=config.key_quota_per_day, period=apigw.Period.DAY)
                if config.key_quota_per_day
                else None
            ),
        )
        self.usage_plan.add_api_stage(stage=self.rest_api.deployment_stage)

        suppress(
            self.rest_api,
            "AwsSolutions-APIG2",
            "Requests are validated by each dialect's own models in the functions (pydantic),"
            " which answer in that dialect's error envelope; a gateway validator cannot.",
        )
        suppress(
            self.rest_api,
            "AwsSolutions-APIG3",
            "No WAF by default: a web ACL costs $5+/month idle (over the idle budget). Stage"
            " and per-key throttling are on; attach a WAF web ACL to the stage where needed.",
        )
        suppress(
            self.rest_api,
            "AwsSolutions-IAM4",
            "The account-level API Gateway CloudWatch role uses AWS's managed policy"
            " AmazonAPIGatewayPushToCloudWatchLogs, made for exactly this role.",
            applies_to=[
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs"
            ],
        )

    @property
    def url(self) -> str:
        return self.rest_api.url


class ConsumerKeys(Construct):
    """One key per configured consumer, made by the `keys` function as a custom resource: the
    key's digest in the table (what the authorizer checks) and the key itself as an API
    Gateway API key in the usage plan (what key source AUTHORIZER requires). The key value
    never enters the template; `aws apigateway get-api-key --include-value` reads it."""

    def __init__(
        self,
        scope: Construct,
        cid: str,
        *,
        consumers: tuple[str, ...],
        function: PastureFunction,
        config: StackConfig,
    ) -> None:
        super().__init__(scope, cid)
        self.key_ids: dict[str, str] = {}
        if not consumers:
            return  # no provider framework function either
        self.provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=function.function,
            log_group=log_group(self, "ProviderLogs", config),
        )
        suppress(
            self.provider,
            "AwsSolutions-IAM4",
            "The CDK custom-resource provider framework's own function uses"
            " AWSLambdaBasicExecutionRole (CDK-managed).",
            applies_to=[
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
            ],
        )
        suppress(
            self.provider,
            "AwsSolutions-IAM5",
            "The CDK provider framework may invoke the keys function's versions (CDK-managed).",
        )
        suppress(
            self.provider,
            "AwsSolutions-L1",
            "The CDK provider framework's runtime is chosen by CDK and updated with it.",
        )
        for consumer in consumers:
            resource = CustomResource(
                self,
                f"Key{_pascal(consumer)}",
                service_token=self.provider.service_token,
                resource_type="Custom::PastureConsumerKey",
                properties={"Consumer": consumer},
            )
            self.key_ids[consumer] = resource.get_att_string("ApiKeyId")
            CfnOutput(
                scope,
                f"ApiKeyId{_pascal(consumer)}",
                value=self.key_ids[consumer],
                description=f"API key id of consumer {consumer}: aws apigateway get-api-key"
                " --include-value --api-key <id> --query value --output text",
            )


def usage_plan_name(stack_name: str) -> str:
    """The usage plan's fixed name: functions that make keys find the plan by it, since its id
    in their environment would be a dependency cycle (plan -> stage -> methods -> function)."""
    return f"{stack_name}-keys"


def _pascal(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", name.lower()) if p)
