"""Monthly cost of the CDK stack, from its synthesized template, resource by resource.

    .venv/bin/python bench/cost.py [-c key=value ...] [--chats 1000]
                                   [--template PATH [--template-gpu PATH]]
                                   [--price key=usd ...] [--json PATH]

Without `--template`, the stack is synthesized in process twice (no AWS account, no Docker,
no built layers needed: empty stand-in layer directories are used, the layers' contents do
not change the price): the configuration the `-c` values give with the GPU endpoint off, and
the same with `gpu=true` (`modelDataUrl` and `inferenceImage` get placeholders when not given,
so no image is built or staged). `--template` reads a synthesized template instead
(`cdk.out/Pasture.template.json`); `--template-gpu` a second one for the GPU column.

Everything priced is counted in the template: OpenSearch instance type, count and volume,
the SageMaker instance type and count, alarms, dashboards (and the metrics they reference),
customer-managed KMS keys, log groups, the memory of the chat and authorizer functions, the
authorizer's result cache, the stage's detailed metrics. Prices are us-east-1 on-demand, in
`PRICES` below, each with the page it comes from, the date it was read, and whether the figure
was read on a stored copy of that page (`fetched`) or is best knowledge. Free tiers are not
applied in the totals; the always-free allowances that would apply are listed after them.

Printed: the assumptions, two markdown tables (idle month; per 1,000 chat turns), the GPU
endpoint's amortization, the free-tier allowances, and the price table. The arithmetic is in
pure functions over the parsed template and a price dict (`inventory`, `idle_costs`,
`per_chat_costs`, `gpu_amortization`), tested by tests/unit/test_cost_model.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HOURS_PER_MONTH = 730.0  # AWS's pricing pages use 730 hours a month
IDLE_BUDGET = 30.0  # the handbook's aim: idle, default stack, GPU endpoint off

# --------------------------------------------------------------------------- prices


@dataclass(frozen=True)
class Price:
    usd: float
    unit: str
    source: str  # the page the figure comes from
    as_of: str  # when it was read
    fetched: bool  # True: read on a stored copy of a page on `as_of`; False: best knowledge


_TODAY = "2026-11-23"
_OS = "Amazon OpenSearch Service Pricing (aws.amazon.com/opensearch-service/pricing)"
_SM = "Amazon SageMaker AI Pricing, real-time inference (aws.amazon.com/sagemaker/pricing)"
_LAMBDA = "AWS Lambda Pricing (aws.amazon.com/lambda/pricing)"
_APIGW = "Amazon API Gateway Pricing (aws.amazon.com/api-gateway/pricing)"
_DDB = "Amazon DynamoDB Pricing, on-demand (aws.amazon.com/dynamodb/pricing/on-demand)"
_S3 = "Amazon S3 Pricing (aws.amazon.com/s3/pricing)"
_SFN = "AWS Step Functions Pricing (aws.amazon.com/step-functions/pricing)"
_CW = "Amazon CloudWatch Pricing (aws.amazon.com/cloudwatch/pricing)"
_KMS = "AWS KMS Pricing (aws.amazon.com/kms/pricing)"
_SNS = "Amazon SNS Pricing (aws.amazon.com/sns/pricing)"
_ECR = "Amazon ECR Pricing (aws.amazon.com/ecr/pricing)"
_XRAY = "AWS X-Ray Pricing (aws.amazon.com/xray/pricing)"


def _p(usd: float, unit: str, source: str, fetched: bool, seen: str = "") -> Price:
    return Price(usd, unit, source + (f"; seen in {seen}" if seen else ""), _TODAY, fetched)


# us-east-1, on demand. `fetched=True` only where the figure itself was read on a stored page
# on _TODAY (named after "seen in"); the rest is best knowledge of the AWS page named.
PRICES: dict[str, Price] = {
    # OpenSearch Service: instance hours per data node, gp3 storage per GB-month.
    "opensearch.hour.t3.small.search": _p(
        0.036, "USD/instance-hour", _OS, True, "public cost tables citing the page, 2025-2026"
    ),
    "opensearch.hour.t3.medium.search": _p(
        0.073, "USD/instance-hour", _OS, True, "public cost tables citing the page, 2025-2026"
    ),
    "opensearch.hour.m6g.large.search": _p(0.128, "USD/instance-hour", _OS, False),
    "opensearch.hour.m7g.large.search": _p(0.135, "USD/instance-hour", _OS, False),
    "opensearch.hour.r6g.large.search": _p(0.167, "USD/instance-hour", _OS, False),
    "opensearch.gp3_gb_month": _p(
        0.122, "USD/GB-month", _OS, True, "a public deployment cost table citing the page"
    ),
    "opensearch.gp2_gb_month": _p(0.135, "USD/GB-month", _OS, False),
    # SageMaker real-time inference: instance hours; data processed in and out.
    "sagemaker.hour.ml.g5.xlarge": _p(
        1.408,
        "USD/instance-hour",
        _SM,
        False,
        "zircon.tech 'The real cost of running AI models on SageMaker' (Oct 2025: 'about"
        " $1.41/hour'); wring.co's March 2026 guide lists $1.21, not confirmed",
    ),
    "sagemaker.hour.ml.g4dn.xlarge": _p(0.7364, "USD/instance-hour", _SM, False),
    "sagemaker.hour.ml.g5.2xlarge": _p(1.515, "USD/instance-hour", _SM, False),
    "sagemaker.data_gb": _p(0.016, "USD/GB processed (in + out)", _SM, False),
    # Lambda (arm64 first tier), requests.
    "lambda.arm64.gb_s": _p(
        0.0000133334, "USD/GB-second", _LAMBDA, True, "cloudchipr.com Lambda pricing guide"
    ),
    "lambda.x86_64.gb_s": _p(
        0.0000166667, "USD/GB-second", _LAMBDA, True, "cloudchipr.com Lambda pricing guide"
    ),
    "lambda.request": _p(0.20 / 1e6, "USD/request", _LAMBDA, True, "cloudchipr.com, kodekloud"),
    # API Gateway REST (first 333 million a month). A streamed answer is one request per
    # 10 MB (AWS Compute Blog, API Gateway response streaming, Nov 2025: pricing unchanged).
    "apigw.rest.request": _p(3.50 / 1e6, "USD/request", _APIGW, False),
    # DynamoDB on demand (after the Nov 2024 cut).
    "dynamodb.rru": _p(
        0.125 / 1e6, "USD/read request unit", _DDB, True, "airbyte.com DynamoDB pricing, 2025"
    ),
    "dynamodb.wru": _p(
        0.625 / 1e6, "USD/write request unit", _DDB, True, "airbyte.com DynamoDB pricing, 2025"
    ),
    "dynamodb.gb_month": _p(0.25, "USD/GB-month", _DDB, False),
    "dynamodb.pitr_gb_month": _p(0.20, "USD/GB-month", _DDB, False),
    # S3 Standard.
    "s3.gb_month": _p(0.023, "USD/GB-month", _S3, False),
    "s3.put": _p(0.005 / 1000, "USD/PUT, COPY, POST, LIST", _S3, False),
    "s3.get": _p(0.0004 / 1000, "USD/GET", _S3, False),
    # Step Functions standard workflows.
    "sfn.transition": _p(0.025 / 1000, "USD/state transition", _SFN, False),
    # CloudWatch.
    "cw.alarm_month": _p(0.10, "USD/standard-resolution alarm metric-month", _CW, False),
    "cw.alarm_high_res_month": _p(0.30, "USD/high-resolution alarm metric-month", _CW, False),
    "cw.dashboard_month": _p(
        3.00, "USD/dashboard-month", _CW, True, "factualminds.com CloudWatch pricing, 2026"
    ),
    "cw.metric_month": _p(
        0.30, "USD/custom metric-month (prorated hourly)", _CW, True, "signoz.io, Feb 2026"
    ),
    "cw.logs_ingest_gb": _p(0.50, "USD/GB ingested", _CW, True, "factualminds.com, 2026"),
    "cw.logs_store_gb_month": _p(0.03, "USD/GB-month stored", _CW, False),
    # KMS, SNS, ECR, X-Ray.
    "kms.key_month": _p(1.00, "USD/customer-managed key-month", _KMS, False),
    "kms.request": _p(0.03 / 10000, "USD/request", _KMS, False),
    "sns.publish": _p(0.50 / 1e6, "USD/publish", _SNS, False),
    "sns.email": _p(2.00 / 100000, "USD/e-mail notification", _SNS, False),
    "ecr.gb_month": _p(0.10, "USD/GB-month", _ECR, False),
    "xray.trace": _p(5.00 / 1e6, "USD/trace recorded", _XRAY, False),
}


def price_values(prices: dict[str, Price]) -> dict[str, float]:
    return {k: v.usd for k, v in prices.items()}


# --------------------------------------------------------------------------- assumptions


@dataclass(frozen=True)
class Assumptions:
    """What one chat turn does, and what the stack holds. Printed with every estimate."""

    # A chat turn: one LlamaFarm chat completion (streamed, RAG on, with a session) through
    # API Gateway to the chat function; the authorizer runs first on every request when its
    # result cache TTL is 0 (read from the template).
    api_requests_per_turn: int = 1
    chat_invocations_per_turn: int = 1
    authorizer_ms: float = 40.0  # one DynamoDB GetItem on a warm function
    chat_overhead_ms: float = 300.0  # query embedding in the Lambda, hybrid query, DynamoDB
    prompt_ms: float = 500.0  # prompt evaluation (sources + history) before the first token
    answer_tokens: int = 300
    tokens_per_second: float = 50.0  # the model's generation speed the Lambda waits on
    cold_start_fraction: float = 0.05  # share of invocations that start an environment
    cold_init_s: float = 1.5  # init phase, billed for on-demand functions (since Aug 2025)
    # DynamoDB per turn (reads are strongly consistent: 1 RRU per 4 KB; writes 1 WRU per KB):
    # authorizer key lookup 1, project config 2 (chat + retrieval), dataset list query 1,
    # session read 2 (load + re-read before the append), session write 1.
    small_reads_per_turn: int = 4
    session_reads_per_turn: int = 2
    session_writes_per_turn: int = 1
    session_kb: float = 4.0  # one session item: the stored history (up to 200 messages)
    # CloudWatch Logs: API access log line, START/END/REPORT of both functions, app lines.
    log_bytes_per_turn: int = 3000
    # Detailed (per-method) API metrics are billed by the metric-hour they are published in:
    # 5 per (resource, method) hit (Count, 4XXError, 5XXError, Latency, IntegrationLatency).
    detailed_metrics_per_method: int = 5
    chats_per_active_hour: float = 10.0  # 1,000 chats = 100 hours with traffic
    # SageMaker data processed per turn (request with sources; SSE frames of the answer).
    sagemaker_bytes_in: int = 8000
    sagemaker_bytes_out: int = 60000
    # GPU on: the image in ECR and the model.tar.gz in S3 (yours, outside the stack).
    ecr_image_gb: float = 4.0
    model_artifact_gb: float = 5.0
    # Data at rest while idle (an empty stack by default).
    s3_gb: float = 0.0
    dynamodb_gb: float = 0.0

    @property
    def generation_s(self) -> float:
        return self.prompt_ms / 1000 + self.answer_tokens / self.tokens_per_second

    @property
    def chat_duration_s(self) -> float:
        return self.chat_overhead_ms / 1000 + self.generation_s


# --------------------------------------------------------------------------- the template


@dataclass(frozen=True)
class FunctionInfo:
    logical_id: str
    name: str  # POWERTOOLS_SERVICE_NAME, else the logical id
    memory_mb: int
    architecture: str


@dataclass(frozen=True)
class SearchDomain:
    instance_type: str
    instance_count: int
    volume_gb: int
    volume_type: str
    master_type: str | None
    master_count: int


@dataclass(frozen=True)
class Endpoint:
    instance_type: str
    instance_count: int


@dataclass(frozen=True)
class Inventory:
    functions: tuple[FunctionInfo, ...]
    alarms: int  # standard resolution (period >= 60 s)
    alarms_high_res: int
    dashboard_metrics: tuple[int, ...]  # metrics referenced, per dashboard
    kms_keys: int
    search: tuple[SearchDomain, ...]
    endpoints: tuple[Endpoint, ...]
    log_groups: int
    log_retention_days: int  # the longest
    detailed_api_metrics: bool
    authorizer_cache_ttl: int | None
    api_methods: int
    tables: int
    pitr: bool
    buckets: int
    state_machines: int
    state_machine_tracing: bool
    topics: int

    def function(self, name: str) -> FunctionInfo:
        for f in self.functions:
            if f.name == name:
                return f
        raise KeyError(f"no function {name!r} in the template")

    @property
    def gpu(self) -> bool:
        return bool(self.endpoints)


def _resources(template: dict[str, Any], kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (lid, r.get("Properties", {}))
        for lid, r in template.get("Resources", {}).items()
        if r.get("Type") == kind
    ]


def dashboard_metric_count(body: Any) -> int:
    """Metrics a dashboard references. The body is JSON, or a Fn::Join of JSON pieces around
    tokens (which sit inside strings, so any stand-in string keeps it valid JSON)."""
    if isinstance(body, dict) and "Fn::Join" in body:
        sep, parts = body["Fn::Join"]
        text = sep.join(p if isinstance(p, str) else "TOKEN" for p in parts)
    else:
        text = body
    widgets = json.loads(text).get("widgets", [])
    return sum(len(w.get("properties", {}).get("metrics", [])) for w in widgets)


def inventory(template: dict[str, Any]) -> Inventory:
    fns = []
    for lid, p in _resources(template, "AWS::Lambda::Function"):
        env = (p.get("Environment") or {}).get("Variables") or {}
        name = env.get("POWERTOOLS_SERVICE_NAME") or lid
        arch = (p.get("Architectures") or ["x86_64"])[0]
        fns.append(FunctionInfo(lid, str(name), int(p.get("MemorySize", 128)), arch))
    search = []
    for _, p in _resources(template, "AWS::OpenSearchService::Domain"):
        cc, ebs = p.get("ClusterConfig", {}), p.get("EBSOptions", {})
        search.append(
            SearchDomain(
                cc.get("InstanceType", "r5.large.search"),
                int(cc.get("InstanceCount", 1)),
                int(ebs.get("VolumeSize", 10)) if ebs.get("EBSEnabled", True) else 0,
                ebs.get("VolumeType", "gp2"),
                cc.get("DedicatedMasterType") if cc.get("DedicatedMasterEnabled") else None,
                int(cc.get("DedicatedMasterCount", 0)) if cc.get("DedicatedMasterEnabled") else 0,
            )
        )
    configs = {lid: p for lid, p in _resources(template, "AWS::SageMaker::EndpointConfig")}
    endpoints = []
    for _, p in _resources(template, "AWS::SageMaker::Endpoint"):
        ref = p.get("EndpointConfigName")
        lid = (ref.get("Fn::GetAtt") or [None])[0] if isinstance(ref, dict) else None
        lid = lid or (ref.get("Ref") if isinstance(ref, dict) else None)
        cfg = configs.get(lid) if lid else None
        if cfg is None and len(configs) == 1:
            cfg = next(iter(configs.values()))
        for v in (cfg or {}).get("ProductionVariants", []):
            endpoints.append(Endpoint(v["InstanceType"], int(v.get("InitialInstanceCount", 1))))
    logs = _resources(template, "AWS::Logs::LogGroup")
    retention = max((int(p.get("RetentionInDays", 0)) for _, p in logs), default=0)
    stages = _resources(template, "AWS::ApiGateway::Stage")
    detailed = any(s.get("MetricsEnabled") for _, p in stages for s in p.get("MethodSettings", []))
    authorizers = _resources(template, "AWS::ApiGateway::Authorizer")
    ttl = (
        min(int(p.get("AuthorizerResultTtlInSeconds", 300)) for _, p in authorizers)
        if authorizers
        else None
    )
    tables = _resources(template, "AWS::DynamoDB::Table")
    pitr = any(
        (p.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled")
        for _, p in tables
    )
    machines = _resources(template, "AWS::StepFunctions::StateMachine")
    periods = [int(p.get("Period", 60)) for _, p in _resources(template, "AWS::CloudWatch::Alarm")]
    return Inventory(
        functions=tuple(fns),
        alarms=sum(1 for p in periods if p >= 60),
        alarms_high_res=sum(1 for p in periods if p < 60),
        dashboard_metrics=tuple(
            dashboard_metric_count(p.get("DashboardBody", "{}"))
            for _, p in _resources(template, "AWS::CloudWatch::Dashboard")
        ),
        kms_keys=len(_resources(template, "AWS::KMS::Key")),
        search=tuple(search),
        endpoints=tuple(endpoints),
        log_groups=len(logs),
        log_retention_days=retention,
        detailed_api_metrics=detailed,
        authorizer_cache_ttl=ttl,
        api_methods=len(_resources(template, "AWS::ApiGateway::Method")),
        tables=len(tables),
        pitr=bool(pitr),
        buckets=len(_resources(template, "AWS::S3::Bucket")),
        state_machines=len(machines),
        state_machine_tracing=any(
            (p.get("TracingConfiguration") or {}).get("Enabled") for _, p in machines
        ),
        topics=len(_resources(template, "AWS::SNS::Topic")),
    )


# --------------------------------------------------------------------------- arithmetic


@dataclass(frozen=True)
class Line:
    resource: str
    what: str
    usd: float
    note: str = ""


def _price(prices: dict[str, float], key: str) -> float:
    try:
        return prices[key]
    except KeyError:
        raise KeyError(
            f"no price for {key!r}: add it to PRICES or pass --price {key}=USD"
        ) from None


def idle_costs(inv: Inventory, prices: dict[str, float], a: Assumptions) -> list[Line]:
    """A month with nothing called: what is billed by the hour or by the month."""
    h = HOURS_PER_MONTH
    out: list[Line] = []
    for d in inv.search:
        rate = _price(prices, f"opensearch.hour.{d.instance_type}")
        out.append(
            Line(
                "OpenSearch domain",
                f"{d.instance_count} x {d.instance_type} x {h:.0f} h",
                d.instance_count * rate * h,
            )
        )
        if d.master_type:
            mrate = _price(prices, f"opensearch.hour.{d.master_type}")
            out.append(
                Line(
                    "OpenSearch domain",
                    f"{d.master_count} x {d.master_type} (dedicated masters) x {h:.0f} h",
                    d.master_count * mrate * h,
                )
            )
        gb = d.instance_count * d.volume_gb
        out.append(
            Line(
                "OpenSearch domain",
                f"{d.volume_type} storage, {d.instance_count} x {d.volume_gb} GB",
                gb * _price(prices, f"opensearch.{d.volume_type}_gb_month"),
            )
        )
    for e in inv.endpoints:
        rate = _price(prices, f"sagemaker.hour.{e.instance_type}")
        out.append(
            Line(
                "SageMaker endpoint",
                f"{e.instance_count} x {e.instance_type} x {h:.0f} h",
                e.instance_count * rate * h,
                "billed per instance-second while it exists, traffic or not",
            )
        )
    if inv.gpu:
        out.append(
            Line(
                "ECR image (inference container)",
                f"{a.ecr_image_gb:g} GB (assumed)",
                a.ecr_image_gb * _price(prices, "ecr.gb_month"),
                "built by the stack: kept in the CDK bootstrap repository after gpu=false",
            )
        )
        out.append(
            Line(
                "model.tar.gz in S3 (yours)",
                f"{a.model_artifact_gb:g} GB (assumed)",
                a.model_artifact_gb * _price(prices, "s3.gb_month"),
                "outside the stack",
            )
        )
    out.append(
        Line(
            "CloudWatch alarms",
            f"{inv.alarms} standard-resolution alarms"
            + (f" + {inv.alarms_high_res} high-resolution" if inv.alarms_high_res else ""),
            inv.alarms * _price(prices, "cw.alarm_month")
            + inv.alarms_high_res * _price(prices, "cw.alarm_high_res_month"),
        )
    )
    if inv.dashboard_metrics:
        out.append(
            Line(
                "CloudWatch dashboard",
                f"{len(inv.dashboard_metrics)} dashboard(s), "
                f"{'/'.join(str(n) for n in inv.dashboard_metrics)} metrics",
                len(inv.dashboard_metrics) * _price(prices, "cw.dashboard_month"),
            )
        )
    out.append(
        Line(
            "KMS customer-managed keys",
            f"{inv.kms_keys} key(s)",
            inv.kms_keys * _price(prices, "kms.key_month"),
            "the SageMaker volume key (gpu=true); the others use AWS-managed keys",
        )
    )
    out.append(
        Line(
            "S3 buckets",
            f"{inv.buckets} buckets, {a.s3_gb:g} GB stored",
            a.s3_gb * _price(prices, "s3.gb_month"),
        )
    )
    ddb_rate = _price(prices, "dynamodb.gb_month") + (
        _price(prices, "dynamodb.pitr_gb_month") if inv.pitr else 0.0
    )
    out.append(
        Line(
            "DynamoDB table",
            f"{inv.tables} on-demand table, {a.dynamodb_gb:g} GB"
            + (" (+ PITR)" if inv.pitr else ""),
            a.dynamodb_gb * ddb_rate,
        )
    )
    fn_names = sorted(f.name for f in inv.functions)
    out.append(Line("Lambda functions", f"{len(fn_names)} functions, per use", 0.0))
    out.append(Line("API Gateway REST API", f"{inv.api_methods} methods, per request", 0.0))
    out.append(Line("Step Functions", f"{inv.state_machines} standard state machine(s)", 0.0))
    out.append(
        Line(
            "CloudWatch Logs",
            f"{inv.log_groups} log groups, {inv.log_retention_days} days retention",
            0.0,
        )
    )
    out.append(Line("SNS topic", f"{inv.topics} topic(s)", 0.0))
    return out


def per_chat_costs(
    inv: Inventory, prices: dict[str, float], a: Assumptions, chats: int = 1000
) -> list[Line]:
    """What `chats` chat turns add to the month (marginal cost only)."""
    chat = inv.function("chat")
    auth = inv.function("authorizer")
    requests = chats * a.api_requests_per_turn
    # With result caching off (TTL 0) API Gateway calls the authorizer on every request;
    # with a cache, fewer: still counted on every request (an upper bound).
    auth_calls = requests
    chat_calls = chats * a.chat_invocations_per_turn
    gb_s = {f.name: f.memory_mb / 1024 for f in (chat, auth)}

    def lam(fn: FunctionInfo) -> float:
        return _price(prices, f"lambda.{fn.architecture}.gb_s")

    out = [
        Line(
            "API Gateway REST API",
            f"{requests:,} requests",
            requests * _price(prices, "apigw.rest.request"),
            "a streamed answer counts as one request per 10 MB",
        ),
        Line(
            "Lambda requests",
            f"{auth_calls:,} authorizer + {chat_calls:,} chat",
            (auth_calls + chat_calls) * _price(prices, "lambda.request"),
        ),
        Line(
            "Lambda duration: authorizer",
            f"{auth_calls:,} x {a.authorizer_ms:g} ms x {auth.memory_mb} MB",
            auth_calls * a.authorizer_ms / 1000 * gb_s["authorizer"] * lam(auth),
        ),
        Line(
            "Lambda duration: chat",
            f"{chat_calls:,} x {a.chat_duration_s:.1f} s x {chat.memory_mb} MB",
            chat_calls * a.chat_duration_s * gb_s["chat"] * lam(chat),
            "waits while the model streams the answer",
        ),
        Line(
            "Lambda init (cold starts)",
            f"{a.cold_start_fraction:.0%} of calls x {a.cold_init_s:g} s",
            a.cold_start_fraction
            * a.cold_init_s
            * (auth_calls * gb_s["authorizer"] * lam(auth) + chat_calls * gb_s["chat"] * lam(chat)),
        ),
    ]
    session_rru = math.ceil(a.session_kb / 4)
    session_wru = math.ceil(a.session_kb)
    rru = chats * (a.small_reads_per_turn + a.session_reads_per_turn * session_rru)
    wru = chats * a.session_writes_per_turn * session_wru
    out += [
        Line(
            "DynamoDB reads",
            f"{rru:,} RRU (strongly consistent)",
            rru * _price(prices, "dynamodb.rru"),
        ),
        Line(
            "DynamoDB writes",
            f"{wru:,} WRU (session item {a.session_kb:g} KB)",
            wru * _price(prices, "dynamodb.wru"),
        ),
        Line("OpenSearch queries", "hybrid query per turn", 0.0, "provisioned: no per-query price"),
    ]
    log_gb = chats * a.log_bytes_per_turn / 1e9
    months_kept = min(inv.log_retention_days or 30, 3650) / 30
    out += [
        Line(
            "CloudWatch Logs ingestion",
            f"{chats * a.log_bytes_per_turn / 1e6:.1f} MB",
            log_gb * _price(prices, "cw.logs_ingest_gb"),
        ),
        Line(
            "CloudWatch Logs storage",
            f"{inv.log_retention_days} days retention",
            log_gb * months_kept * _price(prices, "cw.logs_store_gb_month"),
            "upper bound: storage is billed compressed",
        ),
    ]
    if inv.detailed_api_metrics:
        hours = chats / a.chats_per_active_hour
        metric_hours = a.detailed_metrics_per_method * hours
        out.append(
            Line(
                "CloudWatch detailed API metrics",
                f"{a.detailed_metrics_per_method} metrics x {hours:,.0f} active hours",
                metric_hours * _price(prices, "cw.metric_month") / HOURS_PER_MONTH,
                "stage MetricsEnabled: per (resource, method), billed by the metric-hour",
            )
        )
    if inv.gpu:
        gb = chats * (a.sagemaker_bytes_in + a.sagemaker_bytes_out) / 1e9
        out.append(
            Line(
                "SageMaker data processed",
                f"{gb * 1000:.0f} MB in + out",
                gb * _price(prices, "sagemaker.data_gb"),
                "GPU time itself: in the idle month (see amortization)",
            )
        )
    else:
        out.append(
            Line(
                "Chat model (chatUrl server)",
                "external OpenAI-compatible server",
                0.0,
                "priced by whoever runs it; $0 here",
            )
        )
    return out


@dataclass(frozen=True)
class Amortization:
    endpoint_month_usd: float
    gpu_seconds_per_chat: float
    time_equivalent_per_1000: float  # the GPU-seconds a chat uses, at the hourly rate
    share_per_1000: dict[int, float]  # chats per month -> endpoint cost per 1,000 chats


def gpu_amortization(
    inv: Inventory,
    prices: dict[str, float],
    a: Assumptions,
    volumes: tuple[int, ...] = (1_000, 10_000, 100_000),
) -> Amortization | None:
    """The endpoint is billed by the hour whether or not it is called: a chat's GPU time is
    a share of a fixed cost, not a marginal one."""
    if not inv.gpu:
        return None
    hourly = sum(
        e.instance_count * _price(prices, f"sagemaker.hour.{e.instance_type}")
        for e in inv.endpoints
    )
    month = hourly * HOURS_PER_MONTH
    secs = a.generation_s
    return Amortization(
        month,
        secs,
        1000 * secs * hourly / 3600,
        {n: month * 1000 / n for n in volumes},
    )


def total(lines: list[Line]) -> float:
    return sum(x.usd for x in lines)


@dataclass(frozen=True)
class FreeTier:
    what: str
    saves: float


def free_tier(inv: Inventory, prices: dict[str, float]) -> list[FreeTier]:
    """Always-free allowances (per account and region, shared with everything else there),
    applied to this stack alone: an optimistic bound."""
    out = [
        FreeTier(
            "CloudWatch: 10 standard-resolution alarm metrics",
            min(inv.alarms, 10) * prices["cw.alarm_month"],
        ),
        FreeTier(
            "CloudWatch: 3 dashboards of up to 50 metrics each",
            sum(1 for n in inv.dashboard_metrics[:3] if n <= 50) * prices["cw.dashboard_month"],
        ),
    ]
    return out


# --------------------------------------------------------------------------- synthesis


def synth(context: dict[str, str]) -> dict[str, Any]:
    """The stack's template for `context`, synthesized in process (no cdk-nag, stand-in
    layers). Raises infra.config.ConfigError on a bad value."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20,22")
    for p in (str(REPO), str(REPO / "shared")):
        if p not in sys.path:
            sys.path.insert(0, p)
    from infra.plan import LAYERS
    from infra.stack import build_app

    with tempfile.TemporaryDirectory(prefix="pasture-cost-") as tmp:
        layers = Path(tmp) / "layers"
        for name in LAYERS:
            (layers / name / "python").mkdir(parents=True)
            (layers / name / "python" / "stand-in.txt").write_text("cost estimate\n")
        ctx = {"layersDir": str(layers), **context}
        app, stack = build_app(ctx, outdir=str(Path(tmp) / "out"), nag=False)
        assembly = app.synth()
        return assembly.get_stack_by_name(stack.stack_name).template


# --------------------------------------------------------------------------- output


def _usd(x: float) -> str:
    if x == 0:
        return "0.00"
    if abs(x) < 0.01:
        return f"{x:.4f}"
    return f"{x:,.2f}"


def table(title: str, columns: list[str], rows: list[tuple[str, str, list[float | None]]]) -> str:
    head = f"| {title} | what | " + " | ".join(columns) + " |"
    sep = "|---|---|" + "---:|" * len(columns)
    body = [
        f"| {r} | {w} | " + " | ".join("" if v is None else _usd(v) for v in vals) + " |"
        for r, w, vals in rows
    ]
    return "\n".join([head, sep, *body])


def _merge(columns: list[list[Line]]) -> list[tuple[str, str, list[float | None]]]:
    """One row per resource line (the n-th line of a resource in each column), in the order
    of the column with the most lines; descriptions that differ are joined with " / "; a
    total row last."""
    order = max(columns, key=len)
    keys: list[tuple[str, int]] = []
    descr: dict[tuple[str, int], list[str]] = {}
    cells: dict[tuple[str, int], list[float | None]] = {}
    for lines in [order, *columns]:
        seen: dict[str, int] = {}
        for line in lines:
            k = (line.resource, seen.get(line.resource, 0))
            seen[line.resource] = k[1] + 1
            if k not in cells:
                keys.append(k)
                descr[k] = []
                cells[k] = [None] * len(columns)
    for ci, lines in enumerate(columns):
        seen = {}
        for line in lines:
            k = (line.resource, seen.get(line.resource, 0))
            seen[line.resource] = k[1] + 1
            cells[k][ci] = line.usd
            if line.what not in descr[k]:
                descr[k].append(line.what)
    rows = [(k[0], " / ".join(descr[k]), cells[k]) for k in keys]
    totals: list[float | None] = [total(c) for c in columns]
    rows.append(("**total**", "", totals))
    return rows


def report(
    configs: list[tuple[str, Inventory]],
    prices: dict[str, Price],
    a: Assumptions,
    chats: int,
) -> str:
    pv = price_values(prices)
    out: list[str] = []
    labels = [label for label, _ in configs]
    idle = [idle_costs(inv, pv, a) for _, inv in configs]
    per = [per_chat_costs(inv, pv, a, chats) for _, inv in configs]
    out.append("## Summary, USD a month, free tiers not applied\n")
    out.append(f"| configuration | idle | per {chats:,} chat turns |\n|---|---:|---:|")
    for label, i, c in zip(labels, idle, per, strict=True):
        out.append(f"| {label} | {_usd(total(i))} | {_usd(total(c))} |")
    for (label, inv), i in zip(configs, idle, strict=True):
        if not inv.gpu:
            verdict = "within" if total(i) <= IDLE_BUDGET else "over"
            out.append(
                f"\nIdle, {label}: {_usd(total(i))} USD a month: {verdict} the {IDLE_BUDGET:.0f} USD"
                " aim (default stack, GPU endpoint off)."
            )
    out.append("\n## Assumptions (per chat turn unless said)\n")
    for k, v in asdict(a).items():
        out.append(f"- {k} = {v}")
    out.append(
        f"- derived: generation {a.generation_s:.1f} s, chat function duration"
        f" {a.chat_duration_s:.1f} s per turn"
    )
    for label, inv in configs:
        chat, auth = inv.function("chat"), inv.function("authorizer")
        out.append(
            f"- from the template ({label}): chat {chat.memory_mb} MB {chat.architecture},"
            f" authorizer {auth.memory_mb} MB {auth.architecture}, authorizer cache TTL"
            f" {inv.authorizer_cache_ttl} s, detailed API metrics {inv.detailed_api_metrics},"
            f" {inv.alarms} alarms, dashboards {list(inv.dashboard_metrics)} metrics,"
            f" {inv.kms_keys} KMS key(s), search "
            + ", ".join(
                f"{d.instance_count} x {d.instance_type} {d.volume_gb} GB" for d in inv.search
            )
            + (
                ", endpoint "
                + ", ".join(f"{e.instance_count} x {e.instance_type}" for e in inv.endpoints)
                if inv.endpoints
                else ", no endpoint"
            )
        )
    out.append("\n## Idle month (nothing called), USD, free tiers not applied\n")
    out.append(table("resource", labels, _merge(idle)))
    out.append(f"\n## Per {chats:,} chat turns, USD (marginal), free tiers not applied\n")
    out.append(table("resource", labels, _merge(per)))
    for label, inv in configs:
        am = gpu_amortization(inv, pv, a)
        if am is None:
            continue
        out.append(f"\n## GPU endpoint amortization ({label})\n")
        out.append(
            f"The endpoint costs {_usd(am.endpoint_month_usd)} USD a month whether it serves no"
            f" chat or many: a chat's GPU time is a share of that, not a marginal cost. A turn"
            f" keeps the GPU busy about {am.gpu_seconds_per_chat:.1f} s (prompt + answer), so"
            f" 1,000 turns are {am.gpu_seconds_per_chat * 1000 / 3600:.1f} GPU-hours, worth"
            f" {_usd(am.time_equivalent_per_1000)} USD at the hourly rate if nothing else ran"
            " (llama.cpp serves several requests at once, so less in practice). The endpoint's"
            " share per 1,000 chats at a given monthly volume:\n"
        )
        out.append("| chats per month | endpoint cost per 1,000 chats, USD |\n|---:|---:|")
        for n, share in am.share_per_1000.items():
            out.append(f"| {n:,} | {_usd(share)} |")
    out.append("\n## Free tiers\n")
    out.append(
        "Not applied above. Always-free allowances (per account and region, shared with"
        " everything else there) that this stack could use alone:\n"
    )
    for label, inv in configs:
        ft = free_tier(inv, pv)
        saved = sum(f.saves for f in ft)
        idle_total = total(idle_costs(inv, pv, a))
        out.append(
            f"- {label}: "
            + "; ".join(f"{f.what}: -{_usd(f.saves)}" for f in ft)
            + f". Idle month with them: {_usd(idle_total - saved)} USD."
        )
        big = [n for n in inv.dashboard_metrics if n > 50]
        if big:
            out.append(
                f"  The dashboard references {big[0]} metrics (> 50), so the dashboard"
                " allowance does not cover it."
            )
    out.append(
        "- Also always free: Lambda 1M requests and 400,000 GB-s a month; DynamoDB 25 GB;"
        " CloudWatch 10 custom metrics and 5 GB of logs; SNS 1M publishes and 1,000 e-mails;"
        " Step Functions 4,000 transitions; KMS 20,000 requests; X-Ray 100,000 traces."
        " Twelve-month offers (OpenSearch 750 h of t2/t3.small.search + 10 GB; API Gateway"
        " 1M REST calls; S3 5 GB) apply only to accounts on the legacy free tier; accounts"
        " opened since 15 July 2025 get credits instead (best knowledge)."
    )
    out.append("\n## Prices (us-east-1, on demand)\n")
    out.append(
        "| key | USD | unit | source | as of | figure seen in stored text that day |\n|---|---:|---|---|---|---|"
    )
    for k, p in prices.items():
        out.append(
            f"| {k} | {p.usd:.10g} | {p.unit} | {p.source} | {p.as_of} |"
            f" {'yes' if p.fetched else 'no: best knowledge'} |"
        )
    out.append(
        "\nNot counted: data transfer out to the internet, taxes, support plans, ingestion"
        " (Step Functions transitions, the ingest function, S3 requests, X-Ray traces of the"
        " state machine: per document, not per chat), and anything outside the stack but the"
        " GPU model artifact and image noted above."
    )
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-c", dest="context", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--template", type=Path, help="a synthesized template instead of synthesizing")
    ap.add_argument("--template-gpu", type=Path, help="a second template for the GPU column")
    ap.add_argument("--chats", type=int, default=1000, help="chat turns per month (default 1000)")
    ap.add_argument("--price", action="append", default=[], metavar="KEY=USD", help="override")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override an assumption, e.g. --set tokens_per_second=30",
    )
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = ap.parse_args()

    prices = dict(PRICES)
    for item in args.price:
        k, _, v = item.partition("=")
        old = prices.get(k)
        prices[k] = Price(float(v), old.unit if old else "USD", "--price override", "", False)
    a = Assumptions()
    for item in args.set:
        k, _, v = item.partition("=")
        cur = getattr(a, k)
        a = replace(a, **{k: type(cur)(v)})

    configs: list[tuple[str, Inventory]] = []
    if args.template:
        for path in [args.template, args.template_gpu]:
            if path is None:
                continue
            inv = inventory(json.loads(path.read_text()))
            configs.append((("GPU on" if inv.gpu else "GPU off") + f" ({path.name})", inv))
        how = "templates " + ", ".join(str(p) for p in [args.template, args.template_gpu] if p)
    else:
        context = dict(c.split("=", 1) for c in args.context)
        off = {**context, "gpu": "false"}
        on = {**context, "gpu": "true"}
        on.setdefault("modelDataUrl", "s3://example-bucket/pasture/model.tar.gz")
        on.setdefault("inferenceImage", "123456789012.dkr.ecr.us-east-1.amazonaws.com/pasture:1")
        configs.append(("GPU off", inventory(synth(off))))
        gpu_type = on.get("gpuInstanceType", "ml.g5.xlarge")
        configs.append((f"GPU on ({gpu_type})", inventory(synth(on))))
        how = "synthesized in process" + (f" with {context}" if context else " (defaults)")
    text = report(configs, prices, a, args.chats)
    print(f"# Pasture on AWS: monthly cost estimate (us-east-1), {how}\n")
    print(text)
    if args.json:
        pv = price_values(prices)
        data = {
            label: {
                "idle": [asdict(x) for x in idle_costs(inv, pv, a)],
                "per_chats": [asdict(x) for x in per_chat_costs(inv, pv, a, args.chats)],
                "chats": args.chats,
            }
            for label, inv in configs
        }
        args.json.write_text(json.dumps(data, indent=1))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (KeyError, ValueError) as exc:  # an unknown price or instance type; a bad -c value
        sys.exit(f"bench/cost.py: {exc.args[0] if exc.args else exc}")
