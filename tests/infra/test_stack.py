"""CDK Template assertions on the synthesized stack: routes from the manifest, one
least-privilege role per function, keys and authorizer, streaming chat, storage settings,
encryption, environment, and cdk-nag with no finding left unsuppressed.

No AWS account and no Docker: the stack is synthesized in process (tests/infra/conftest.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from infra.config import ConfigError, load
from infra.nag import unsuppressed

from infra import plan
from pasture.api.app import create_app
from pasture.api.groups import GROUPS
from pasture.config import Settings
from tests.infra.conftest import FULL, Synth

CONFIGS = {"default": {}, "full": FULL}


@pytest.fixture(scope="module", params=list(CONFIGS))
def stack(request: pytest.FixtureRequest, synth: Any) -> Synth:
    s: Synth = synth(**CONFIGS[request.param])
    s.name = request.param  # type: ignore[attr-defined]
    return s


@pytest.fixture(scope="module")
def default(synth: Any) -> Synth:
    return synth()


@pytest.fixture(scope="module")
def full(synth: Any) -> Synth:
    return synth(**FULL)


# --------------------------------------------------------------------------- helpers


def flat(value: Any) -> str:
    """An intrinsic-laden CloudFormation value as text: Ref X -> <X>, GetAtt X.Y -> <X.Y>,
    Fn::Join concatenated; enough to read ARNs and URIs."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if "Ref" in value:
            return f"<{value['Ref']}>"
        if "Fn::GetAtt" in value:
            return f"<{'.'.join(value['Fn::GetAtt'])}>"
        if "Fn::Join" in value:
            sep, parts = value["Fn::Join"]
            return sep.join(flat(p) for p in parts)
        if "Fn::Select" in value:
            return f"<select:{flat(value['Fn::Select'][1])}>"
        if "Fn::Split" in value:
            return flat(value["Fn::Split"][1])
    return json.dumps(value)


def function_ids(s: Synth) -> dict[str, str]:
    """Function name (functions/<name>) -> logical id, from the plan's naming."""
    out = {}
    for lid, r in s.resources("AWS::Lambda::Function").items():
        desc = r["Properties"].get("Description", "")
        if isinstance(desc, str) and desc.startswith("Pasture "):
            out[desc.removeprefix("Pasture ")] = lid
    return out


def plans(s: Synth) -> list[plan.FunctionPlan]:
    return plan.functions(ragflow_accounts=s.stack.config.ragflow_accounts)


class Gateway:
    """API Gateway's REST resource tree from the template, matched as API Gateway does: at
    each level an exact segment, else the level's one path variable, else `{proxy+}`."""

    def __init__(self, s: Synth) -> None:
        self.s = s
        (api_id,) = s.resources("AWS::ApiGateway::RestApi")
        self.root = f"<{api_id}.RootResourceId>"
        self.children: dict[str, dict[str, str]] = {}
        for lid, r in s.resources("AWS::ApiGateway::Resource").items():
            parent = flat(r["Properties"]["ParentId"])
            self.children.setdefault(parent, {})[r["Properties"]["PathPart"]] = f"<{lid}>"
        self.methods: dict[str, dict[str, Any]] = {}
        for m in s.resources("AWS::ApiGateway::Method").values():
            self.methods.setdefault(flat(m["Properties"]["ResourceId"]), {})[
                m["Properties"]["HttpMethod"]
            ] = m["Properties"]

    def resolve(self, path: str) -> dict[str, Any] | None:
        node = self.root
        for seg in (p for p in path.split("/") if p):
            kids = self.children.get(node, {})
            variables = [k for k in kids if k.startswith("{") and not k.endswith("+}")]
            assert len(variables) <= 1, f"two variables under one resource: {variables}"
            if seg in kids:
                node = kids[seg]
            elif variables:
                node = kids[variables[0]]
            elif "{proxy+}" in kids:
                node = kids["{proxy+}"]
                break
            else:
                return None
        return self.methods.get(node, {}).get("ANY")


def sample_path(template: str) -> str:
    return re.sub(r"{(\w+)(:path)?}", lambda m: f"x-{m.group(1)}", template)


# --------------------------------------------------------------------------- routes


def test_every_manifest_route_reaches_its_groups_function(stack: Synth) -> None:
    # Given the synthesized API and the functions by name
    gw = Gateway(stack)
    fns = function_ids(stack)
    deployed = {p.name for p in plans(stack) if p.group is not None}
    checked = 0
    for g in GROUPS:
        if g.name not in deployed:
            continue
        for path in create_app([g]).openapi()["paths"]:
            # When API Gateway routes a request for the route
            method = gw.resolve(sample_path(path))
            # Then it lands on the group's own function
            assert method is not None, f"{g.name}: {path} has no method"
            uri = flat(method["Integration"]["Uri"])
            assert f"<{fns[g.name]}.Arn>" in uri, f"{path} -> {uri}, not {g.name}"
            checked += 1
    assert checked > 60


def test_routes_are_exactly_the_plans(stack: Synth) -> None:
    # Every method of the template comes from infra.plan.routes (no second list of paths).
    gw = Gateway(stack)
    deployed = [p.group for p in plans(stack) if p.group is not None]
    planned = plan.routes(deployed)
    assert len(stack.resources("AWS::ApiGateway::Method")) == len(planned)
    for route in planned:
        assert gw.resolve(route.path.replace("{proxy+}", "x/y")) is not None, route


def test_unknown_paths_and_unowned_parents_have_no_method(default: Synth) -> None:
    gw = Gateway(default)
    for path in ("/v1", "/api", "/api/v1", "/nope", "/v1/projects"):
        assert gw.resolve(path) is None, path


def test_accounts_group_only_with_ragflow_accounts(default: Synth, full: Synth) -> None:
    assert "accounts" not in function_ids(default)
    assert Gateway(default).resolve("/v1/user/login") is None
    assert "accounts" in function_ids(full)
    assert Gateway(full).resolve("/v1/user/login") is not None


def test_route_plan_refuses_conflicting_prefixes() -> None:
    from pasture.api.groups import Group

    a = Group("a", (), ("/x/{id}",), frozenset())
    b = Group("b", (), ("/x/{name}/y",), frozenset())
    with pytest.raises(ValueError, match="variables"):
        plan.routes([a, b])
    c = Group("c", (), ("/x/{id}",), frozenset())
    with pytest.raises(ValueError, match="claimed"):
        plan.routes([a, c])


# --------------------------------------------------------------------------- auth and keys


def test_api_key_and_authorizer_on_every_method_but_the_open_groups(stack: Synth) -> None:
    fns = function_ids(stack)
    open_fns = {fns[g] for g in plan.OPEN_GROUPS if g in fns}
    (authorizer_id,) = stack.resources("AWS::ApiGateway::Authorizer")
    for lid, m in stack.resources("AWS::ApiGateway::Method").items():
        p = m["Properties"]
        target = re.search(r"<(\w+)\.Arn>", flat(p["Integration"]["Uri"])).group(1)  # type: ignore[union-attr]
        if target in open_fns:
            assert p["AuthorizationType"] == "NONE" and not p.get("ApiKeyRequired"), lid
        else:
            assert p["ApiKeyRequired"] is True, lid
            assert p["AuthorizationType"] == "CUSTOM", lid
            assert p["AuthorizerId"] == {"Ref": authorizer_id}, lid


def test_health_is_open_and_projects_need_a_key(default: Synth) -> None:
    gw = Gateway(default)
    assert gw.resolve("/health")["AuthorizationType"] == "NONE"  # type: ignore[index]
    assert gw.resolve("/v1/projects/ns/p")["ApiKeyRequired"] is True  # type: ignore[index]


def test_authorizer_is_request_type_uncached_with_optional_identity(default: Synth) -> None:
    (auth,) = default.resources("AWS::ApiGateway::Authorizer").values()
    p = auth["Properties"]
    assert p["Type"] == "REQUEST"
    assert p["AuthorizerResultTtlInSeconds"] == 0
    assert not p.get("IdentitySource")  # either header may carry the key
    assert function_ids(default)["authorizer"] in flat(p["AuthorizerUri"])


def test_rest_api_key_source_and_binary_media(default: Synth) -> None:
    (api,) = default.resources("AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["ApiKeySourceType"] == "AUTHORIZER"
    assert api["Properties"]["BinaryMediaTypes"] == ["*/*"]


def test_stage_has_access_logs_throttling_and_no_body_logging(default: Synth) -> None:
    (stage,) = default.resources("AWS::ApiGateway::Stage").values()
    p = stage["Properties"]
    fmt = json.loads(p["AccessLogSetting"]["Format"])
    assert {"requestId", "status", "tenant", "ip"} <= set(fmt)
    assert "apiKey" not in p["AccessLogSetting"]["Format"]  # keys never in logs
    (settings,) = p["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == 50 and settings["ThrottlingBurstLimit"] == 100
    assert settings["DataTraceEnabled"] is False
    assert settings["LoggingLevel"] == "ERROR"


def test_usage_plan_throttles_keys_on_the_stage(default: Synth) -> None:
    (up,) = default.resources("AWS::ApiGateway::UsagePlan").values()
    p = up["Properties"]
    assert p["Throttle"] == {"RateLimit": 20, "BurstLimit": 40}
    (stage_id,) = default.resources("AWS::ApiGateway::Stage")
    assert p["ApiStages"][0]["Stage"] == {"Ref": stage_id}


def test_consumer_keys_and_their_outputs(default: Synth, full: Synth) -> None:
    assert not default.resources("Custom::PastureConsumerKey")
    keys = full.resources("Custom::PastureConsumerKey")
    assert sorted(k["Properties"]["Consumer"] for k in keys.values()) == ["alice", "mobile-app"]
    outputs = full.template["Outputs"]
    assert {"ApiKeyIdAlice", "ApiKeyIdMobileApp", "ApiUrl", "UsagePlanId"} <= set(outputs)
    # The functions that make keys know the usage plan they add keys to, by its name.
    (up,) = full.resources("AWS::ApiGateway::UsagePlan").values()
    for name in ("keys", "accounts"):
        fn = full.template["Resources"][function_ids(full)[name]]
        env = fn["Properties"]["Environment"]["Variables"]
        assert env["PASTURE_USAGE_PLAN_NAME"] == up["Properties"]["UsagePlanName"]


def _references(value: Any) -> set[str]:
    """Logical ids a CloudFormation value refers to (Ref, GetAtt, Sub)."""
    out: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            out.add(value["Ref"])
        if "Fn::GetAtt" in value:
            out.add(value["Fn::GetAtt"][0])
        for v in value.values():
            out |= _references(v)
    elif isinstance(value, list):
        for v in value:
            out |= _references(v)
    return out


def test_no_dependency_cycle(stack: Synth) -> None:
    """CloudFormation refuses a template whose resources depend on each other in a circle
    (synthesis does not check it)."""
    resources = stack.template["Resources"]
    edges = {
        lid: {
            d
            for d in _references(r.get("Properties", {})) | set(_as_list(r.get("DependsOn", [])))
            if d in resources
        }
        for lid, r in resources.items()
    }
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in edges[node]:
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
                raise AssertionError(f"dependency cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for lid in resources:
        if lid not in state:
            visit(lid, [lid])


def test_gateway_errors_answer_in_every_dialects_fields(default: Synth) -> None:
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in default.resources("AWS::ApiGateway::GatewayResponse").values()
    }
    assert {"UNAUTHORIZED", "MISSING_AUTHENTICATION_TOKEN", "THROTTLED", "DEFAULT_5XX"} <= set(
        responses
    )
    unauthorized = responses["UNAUTHORIZED"]
    assert unauthorized["StatusCode"] == "401"
    body = json.loads(unauthorized["ResponseTemplates"]["application/json"])
    assert {"detail", "error", "message"} <= set(body) and body["code"] == 401
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["StatusCode"] == "404"


# --------------------------------------------------------------------------- chat streaming


def test_chat_streams_through_the_web_adapter(stack: Synth) -> None:
    fns = function_ids(stack)
    chat = stack.template["Resources"][fns["chat"]]["Properties"]
    assert chat["Handler"] == "run.sh"
    env = chat["Environment"]["Variables"]
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert env["AWS_LWA_READINESS_CHECK_PATH"] == "/health/liveness"
    assert "LambdaAdapterLayerArm64" in flat(chat["Layers"][0])
    assert len(chat["Layers"]) <= 5  # Lambda's limit
    for m in stack.resources("AWS::ApiGateway::Method").values():
        integ = m["Properties"]["Integration"]
        uri = flat(integ["Uri"])
        if f"<{fns['chat']}.Arn>" in uri:
            assert integ["ResponseTransferMode"] == "STREAM"
            assert uri.endswith("/response-streaming-invocations")
            assert integ["TimeoutInMillis"] == 900_000
        else:
            assert integ.get("ResponseTransferMode", "BUFFERED") == "BUFFERED"
            assert uri.endswith("/invocations")


# --------------------------------------------------------------------------- functions


def test_one_function_per_plan_entry_arm64_python312(stack: Synth) -> None:
    fns = function_ids(stack)
    assert sorted(fns) == sorted(p.name for p in plans(stack))
    for p in plans(stack):
        props = stack.template["Resources"][fns[p.name]]["Properties"]
        assert props["Architectures"] == ["arm64"]
        assert props["Runtime"] == "python3.12"
        assert props["Handler"] == p.handler
        assert props["Timeout"] == p.timeout_s


def test_each_function_has_its_own_role_without_managed_policies(stack: Synth) -> None:
    fns = function_ids(stack)
    roles = [flat(stack.template["Resources"][lid]["Properties"]["Role"]) for lid in fns.values()]
    assert len(set(roles)) == len(roles)
    for role in roles:
        lid = role.strip("<>").removesuffix(".Arn")
        assert not stack.template["Resources"][lid]["Properties"].get("ManagedPolicyArns")


def _statements(s: Synth, function: str) -> list[dict[str, Any]]:
    fn = s.template["Resources"][function_ids(s)[function]]
    role = flat(fn["Properties"]["Role"]).strip("<>").removesuffix(".Arn")
    out: list[dict[str, Any]] = []
    for pol in s.resources("AWS::IAM::Policy").values():
        if {"Ref": role} in pol["Properties"]["Roles"]:
            out += pol["Properties"]["PolicyDocument"]["Statement"]
    return out


def _actions(s: Synth, function: str) -> set[str]:
    acts: set[str] = set()
    for st in _statements(s, function):
        a = st["Action"]
        acts |= {a} if isinstance(a, str) else set(a)
    return acts


# Wildcards allowed in a function's resources, each documented (infra/stack.py, functions.py).
ALLOWED_WILDCARDS = (
    re.compile(r"^<\w+\.Arn>/\*$"),  # objects of the stack's bucket
    re.compile(r"^arn:<AWS::Partition>:es:<AWS::Region>:<AWS::AccountId>:domain/[a-z0-9-]+/\*$"),
    re.compile(
        r"^arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:<select:.*>:\*$"
    ),
    re.compile(r"^arn:<AWS::Partition>:apigateway:<AWS::Region>::/apikeys/\*$"),
    re.compile(r"^arn:<AWS::Partition>:apigateway:<AWS::Region>::/usageplans/\*/keys$"),
)


def test_function_roles_have_no_wildcard_resource_but_documented_ones(stack: Synth) -> None:
    for p in plans(stack):
        for st in _statements(stack, p.name):
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            for r in map(flat, resources):
                if "*" not in r:
                    continue
                if r == "*" and set(_as_list(st["Action"])) <= {
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                }:
                    continue  # X-Ray has no resource-level permissions (tracing on)
                assert any(w.match(r) for w in ALLOWED_WILDCARDS), f"{p.name}: {r}"


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def test_permissions_follow_each_groups_ports(default: Synth, full: Synth) -> None:
    # system: records only
    assert _actions(default, "system") == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:Query",
    }
    # transcription (transcriber only): no table, bucket or search; the endpoint when on
    assert not any(
        a.startswith(("dynamodb:", "s3:", "es:")) for a in _actions(full, "transcription")
    )
    assert "sagemaker:InvokeEndpoint" in _actions(full, "transcription")
    assert not any(a.startswith("sagemaker:") for a in _actions(default, "transcription"))
    # chat streams from the endpoint; nobody starts executions but the workflow groups
    assert "sagemaker:InvokeEndpointWithResponseStream" in _actions(full, "chat")
    for p in plans(full):
        starts = "states:StartExecution" in _actions(full, p.name)
        assert starts == ("workflow" in p.ports), p.name
        searches = "es:ESHttpPost" in _actions(full, p.name)
        assert searches == ("search_index" in p.ports), p.name
        writes = "s3:PutObject" in _actions(full, p.name)
        assert writes == ("blobs" in p.ports), p.name
    # the authorizer reads keys and nothing else
    assert _actions(default, "authorizer") - {"logs:CreateLogStream", "logs:PutLogEvents"} == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:Query",
    }


def test_environment_names_are_settings_the_code_reads(stack: Synth) -> None:
    settings = {f"PASTURE_{name.upper()}" for name in Settings.model_fields}
    for lid in function_ids(stack).values():
        env = stack.template["Resources"][lid]["Properties"]["Environment"]["Variables"]
        assert env["PASTURE_BACKEND"] == "aws"
        unknown = {k for k in env if k.startswith("PASTURE_")} - settings
        assert not unknown, unknown


def test_environment_points_at_the_stacks_resources(default: Synth, full: Synth) -> None:
    fns = function_ids(default)
    env = default.template["Resources"][fns["datasets"]]["Properties"]["Environment"]["Variables"]
    (table_id,) = default.resources("AWS::DynamoDB::Table")
    (sm_id,) = default.resources("AWS::StepFunctions::StateMachine")
    assert env["PASTURE_TABLE"] == {"Ref": table_id}
    assert env["PASTURE_STATE_MACHINE_ARN"] == {"Ref": sm_id}
    assert env["PASTURE_EMBED_MODEL_DIR"] == plan.MODEL_DIR_IN_LAMBDA
    assert flat(env["PASTURE_OPENSEARCH_ENDPOINT"]).startswith("https://<")
    speech = default.template["Resources"][fns["transcription"]]["Properties"]
    assert speech["Environment"]["Variables"]["PASTURE_TRANSCRIBER"] == "none"
    fns_full = function_ids(full)
    chat = full.template["Resources"][fns_full["chat"]]["Properties"]["Environment"]["Variables"]
    assert "PASTURE_SAGEMAKER_ENDPOINT" in chat
    speech_full = full.template["Resources"][fns_full["transcription"]]["Properties"]
    assert speech_full["Environment"]["Variables"]["PASTURE_TRANSCRIBER"] == "sagemaker"


def test_model_layer_only_where_an_embedder_or_tokenizer_runs(default: Synth) -> None:
    layer_ids = {
        r["Properties"]["Description"].split()[1]: lid
        for lid, r in default.resources("AWS::Lambda::LayerVersion").items()
    }
    fns = function_ids(default)
    for p in plans(default):
        attached = default.template["Resources"][fns[p.name]]["Properties"]["Layers"]
        has_models = {"Ref": layer_ids["models"]} in attached
        assert has_models == bool(p.ports & {"embedder", "tokenizer"}), p.name


# --------------------------------------------------------------------------- data and encryption


def test_table_on_demand_with_pitr_ttl_and_encryption(stack: Synth) -> None:
    (table,) = stack.resources("AWS::DynamoDB::Table").values()
    p = table["Properties"]
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert p["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert p["SSESpecification"]["SSEEnabled"] is True
    assert [k["AttributeName"] for k in p["KeySchema"]] == ["pk", "sk"]


def test_buckets_private_encrypted_tls_only_with_upload_lifecycle(stack: Synth) -> None:
    buckets = stack.resources("AWS::S3::Bucket")
    assert len(buckets) == 2
    for b in buckets.values():
        p = b["Properties"]
        assert p["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert (
            p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
                "ServerSideEncryptionByDefault"
            ]["SSEAlgorithm"]
            == "AES256"
        )
        rules = p["LifecycleConfiguration"]["Rules"]
        assert any(r.get("AbortIncompleteMultipartUpload") for r in rules)
    for pol in stack.resources("AWS::S3::BucketPolicy").values():
        denies = [
            s
            for s in pol["Properties"]["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny"
            and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        ]
        assert denies


def test_search_domain_encrypted_https_and_iam_only(stack: Synth) -> None:
    (domain,) = stack.resources("AWS::OpenSearchService::Domain").values()
    p = domain["Properties"]
    assert p["EngineVersion"] == "OpenSearch_2.19"
    assert p["EncryptionAtRestOptions"] == {"Enabled": True}
    assert p["NodeToNodeEncryptionOptions"] == {"Enabled": True}
    assert p["DomainEndpointOptions"]["EnforceHTTPS"] is True
    (statement,) = p["AccessPolicies"]["Statement"]
    assert flat(statement["Principal"]["AWS"]).endswith(":root")
    assert statement["Action"] == [
        "es:ESHttpGet",
        "es:ESHttpHead",
        "es:ESHttpPost",
        "es:ESHttpPut",
        "es:ESHttpDelete",
    ]
    assert flat(statement["Resource"]).endswith(f":domain/{p['DomainName']}/*")
    assert set(p["LogPublishingOptions"]) == {
        "SEARCH_SLOW_LOGS",
        "INDEX_SLOW_LOGS",
        "ES_APPLICATION_LOGS",
    }


def test_search_domain_sized_by_context(default: Synth, full: Synth) -> None:
    d = next(iter(default.resources("AWS::OpenSearchService::Domain").values()))["Properties"]
    assert d["ClusterConfig"]["InstanceType"] == "t3.small.search"
    assert d["ClusterConfig"]["InstanceCount"] == 1
    assert d["ClusterConfig"]["ZoneAwarenessEnabled"] is False
    f = next(iter(full.resources("AWS::OpenSearchService::Domain").values()))["Properties"]
    assert f["ClusterConfig"]["InstanceCount"] == 3
    assert f["ClusterConfig"]["ZoneAwarenessEnabled"] is True


def test_removal_policies_follow_the_config(default: Synth, full: Synth) -> None:
    for kind in ("AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::OpenSearchService::Domain"):
        for r in default.resources(kind).values():
            assert r["DeletionPolicy"] == "Retain", kind
        for r in full.resources(kind).values():
            assert r["DeletionPolicy"] == "Delete", kind
    (table,) = default.resources("AWS::DynamoDB::Table").values()
    assert table["Properties"]["DeletionProtectionEnabled"] is True
    # Logs never outlive the stack; log groups have a retention.
    for lg in default.resources("AWS::Logs::LogGroup").values():
        assert lg["DeletionPolicy"] == "Delete"
        assert lg["Properties"]["RetentionInDays"] == 30


def test_state_machine_is_the_generated_definition_with_logging(default: Synth) -> None:
    from pasture.adapters.aws.state_machine import definition

    (sm,) = default.resources("AWS::StepFunctions::StateMachine").values()
    p = sm["Properties"]
    body = json.loads(flat(p["DefinitionString"]))
    assert body == definition("${IngestFunctionArn}", max_concurrency=4)
    ingest = function_ids(default)["ingest"]
    assert p["DefinitionSubstitutions"]["IngestFunctionArn"] == {"Fn::GetAtt": [ingest, "Arn"]}
    assert p["LoggingConfiguration"]["Level"] == "ALL"
    assert p["TracingConfiguration"]["Enabled"] is False  # follows `tracing` (off by default)


# --------------------------------------------------------------------------- inference


def test_gpu_off_means_no_sagemaker_resources(default: Synth) -> None:
    assert not default.resources("AWS::SageMaker::Endpoint")
    assert default.template["Outputs"]["ChatModel"]["Value"] == "none"


def test_gpu_endpoint_when_on(full: Synth) -> None:
    (cfg,) = full.resources("AWS::SageMaker::EndpointConfig").values()
    (variant,) = cfg["Properties"]["ProductionVariants"]
    assert variant["InstanceType"] == "ml.g5.xlarge"
    # No KMS key: SageMaker refuses one for instance types with NVMe instance storage.
    assert "KmsKeyId" not in cfg["Properties"]
    (model,) = full.resources("AWS::SageMaker::Model").values()
    assert model["Properties"]["PrimaryContainer"]["ModelDataUrl"] == FULL["modelDataUrl"]
    (endpoint,) = full.resources("AWS::SageMaker::Endpoint").values()
    assert endpoint["Properties"]["EndpointName"] == "pasture-inference"


def test_gpu_image_context_is_only_what_the_dockerfile_copies(full: Synth) -> None:
    assets = json.loads((full.outdir / "Pasture.assets.json").read_text())
    (image,) = assets["dockerImages"].values()
    context = full.outdir / image["source"]["directory"]
    top = sorted(p.name for p in context.iterdir())
    assert top == ["infra", "shared"]
    assert sorted(p.name for p in (context / "infra").iterdir()) == ["inference"]
    assert (context / "infra/inference/Dockerfile").is_file()
    assert not list(context.rglob("__pycache__"))


def test_external_chat_url_instead_of_the_endpoint(synth: Any) -> None:
    s = synth(chatUrl="https://llm.example.com/v1", chatModelName="llama3")
    env = s.template["Resources"][function_ids(s)["chat"]]["Properties"]["Environment"]["Variables"]
    assert env["PASTURE_CHAT_URL"] == "https://llm.example.com/v1"
    assert env["PASTURE_CHAT_MODEL_NAME"] == "llama3"
    assert s.template["Outputs"]["ChatModel"]["Value"] == "url"
    assert not s.resources("AWS::SageMaker::Endpoint")


# --------------------------------------------------------------------------- observability


def test_alarms_on_every_functions_errors_and_throttles(stack: Synth) -> None:
    alarms = stack.resources("AWS::CloudWatch::Alarm").values()
    by_metric: dict[str, set[str]] = {}
    for a in alarms:
        p = a["Properties"]
        for d in p.get("Dimensions", []):
            if d["Name"] == "FunctionName":
                by_metric.setdefault(p["MetricName"], set()).add(flat(d["Value"]))
        assert p["AlarmActions"], "every alarm notifies the topic"
    fns = {f"<{lid}>" for lid in function_ids(stack).values()}
    assert by_metric["Errors"] == fns
    assert by_metric["Throttles"] == fns
    assert stack.resources("AWS::CloudWatch::Dashboard")


# --------------------------------------------------------------------------- cdk-nag


def test_cdk_nag_has_no_unsuppressed_finding(stack: Synth) -> None:
    open_findings = unsuppressed(stack.outdir, stack.stack.stack_name)
    assert not open_findings, "\n".join(
        f"{r['Rule ID']} {r['Resource ID']}: {r['Rule Info']}" for r in open_findings
    )


def test_every_suppression_has_a_reason(stack: Synth) -> None:
    import csv

    path = stack.outdir / f"AwsSolutions--{stack.stack.stack_name}-NagReport.csv"
    rows = list(csv.DictReader(path.open(newline="")))
    suppressed = [r for r in rows if r["Compliance"] == "Suppressed"]
    assert suppressed  # the report is real: there are documented exceptions
    for r in suppressed:
        assert len(r["Exception Reason"]) >= 40, r


def test_cdk_nag_catches_an_unsuppressed_finding(
    synth: Any, fake_layers: Any, tmp_path: Any
) -> None:
    """The check can fail: a bucket added without access logs or TLS enforcement is reported."""
    from aws_cdk import aws_s3 as s3
    from infra.stack import build_app

    app, stack = build_app({"layersDir": str(fake_layers)}, outdir=str(tmp_path))
    s3.Bucket(stack, "Careless")
    app.synth()
    rules = {r["Rule ID"] for r in unsuppressed(tmp_path, stack.stack_name)}
    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= rules


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"gpu": "true"}, "modelDataUrl"),
        ({"gpu": "true", "modelDataUrl": "https://x/model.tar.gz"}, "s3://"),
        ({"consumers": "ok,not ok"}, "consumer name"),
        ({"consumers": "a,a"}, "twice"),
        ({"removal": "sometimes"}, "removal"),
        ({"embedder": "sagemaker"}, "gpu=true"),
        ({"logRetentionDays": "31"}, "logRetentionDays"),
        ({"gpu": "maybe"}, "gpu"),
        ({"searchInstanceCount": "many"}, "searchInstanceCount"),
    ],
)
def test_bad_config_fails_fast_naming_the_key(context: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(context, config_file=None)


def test_config_file_and_context_precedence(tmp_path: Any) -> None:
    f = tmp_path / "config.json"
    f.write_text(json.dumps({"consumers": ["a", "b"], "gpu": False, "stageName": "v1"}))
    c = load({"stageName": "prod2"}, config_file=f)
    assert c.consumers == ("a", "b")
    assert c.stage_name == "prod2"  # context wins
    f.write_text(json.dumps({"consumer": ["a"]}))
    with pytest.raises(ConfigError, match="unknown keys"):
        load({}, config_file=f)


def test_unknown_memory_override_is_refused(synth: Any) -> None:
    with pytest.raises(Exception, match="unknown functions"):
        synth(memory='{"nope": 1024}')


def test_search_domain_is_created_after_its_log_policy(default: Synth) -> None:
    (domain,) = default.resources("AWS::OpenSearchService::Domain").values()
    (policy_id,) = default.resources("AWS::Logs::ResourcePolicy")
    assert policy_id in domain.get("DependsOn", [])
    (policy,) = default.resources("AWS::Logs::ResourcePolicy").values()
    doc = json.loads(flat(policy["Properties"]["PolicyDocument"]))
    assert doc["Statement"][0]["Principal"] == {"Service": "es.amazonaws.com"}
