"""bench/cost.py's arithmetic, on small hand-written templates (no synthesis)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pasture_bench_cost", ROOT / "bench" / "cost.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


cost = _load()
PRICES = cost.price_values(cost.PRICES)


def _fn(service: str, memory: int) -> dict[str, Any]:
    return {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "MemorySize": memory,
            "Architectures": ["arm64"],
            "Environment": {"Variables": {"POWERTOOLS_SERVICE_NAME": service}},
        },
    }


def _alarm(period: int = 300) -> dict[str, Any]:
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": {"Period": period}}


def template(*, alarms: int = 2, gpu: str | None = None) -> dict[str, Any]:
    resources: dict[str, Any] = {
        "Chat": _fn("chat", 1769),
        "Authorizer": _fn("authorizer", 512),
        "Domain": {
            "Type": "AWS::OpenSearchService::Domain",
            "Properties": {
                "ClusterConfig": {"InstanceType": "t3.small.search", "InstanceCount": 1},
                "EBSOptions": {"EBSEnabled": True, "VolumeSize": 10, "VolumeType": "gp3"},
            },
        },
        "Authz": {
            "Type": "AWS::ApiGateway::Authorizer",
            "Properties": {"AuthorizerResultTtlInSeconds": 0, "Type": "REQUEST"},
        },
        "Stage": {
            "Type": "AWS::ApiGateway::Stage",
            "Properties": {"MethodSettings": [{"MetricsEnabled": True}]},
        },
        "Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 30}},
        "Dashboard": {
            "Type": "AWS::CloudWatch::Dashboard",
            "Properties": {
                # As CDK writes it: JSON pieces joined around tokens inside strings.
                "DashboardBody": {
                    "Fn::Join": [
                        "",
                        [
                            '{"widgets":[{"properties":{"metrics":[["AWS/Lambda","Errors",'
                            '"FunctionName","',
                            {"Ref": "Chat"},
                            '"],["AWS/Lambda","Throttles","FunctionName","',
                            {"Ref": "Chat"},
                            '"]]}},{"type":"alarm","properties":{"alarms":["x"]}}]}',
                        ],
                    ]
                }
            },
        },
    }
    for i in range(alarms):
        resources[f"Alarm{i}"] = _alarm()
    if gpu:
        resources["Config"] = {
            "Type": "AWS::SageMaker::EndpointConfig",
            "Properties": {
                "ProductionVariants": [{"InstanceType": gpu, "InitialInstanceCount": 1}]
            },
        }
        resources["Endpoint"] = {
            "Type": "AWS::SageMaker::Endpoint",
            "Properties": {"EndpointConfigName": {"Fn::GetAtt": ["Config", "EndpointConfigName"]}},
        }
    return {"Resources": resources}


# The GPU-only extras outside the endpoint itself, set to zero where a test needs the
# endpoint alone.
NO_EXTRAS = cost.Assumptions(ecr_image_gb=0.0, model_artifact_gb=0.0)


@pytest.mark.parametrize("gpu_type", ["ml.g5.xlarge", "ml.g4dn.xlarge"])
def test_gpu_on_adds_exactly_the_instance_hours(gpu_type: str) -> None:
    off = cost.inventory(template())
    on = cost.inventory(template(gpu=gpu_type))
    idle_off = cost.total(cost.idle_costs(off, PRICES, NO_EXTRAS))
    idle_on = cost.total(cost.idle_costs(on, PRICES, NO_EXTRAS))
    assert idle_on - idle_off == pytest.approx(PRICES[f"sagemaker.hour.{gpu_type}"] * 730)
    # With the image and the model artifact counted, they are the only other difference.
    a = cost.Assumptions()
    extra = a.ecr_image_gb * PRICES["ecr.gb_month"] + a.model_artifact_gb * PRICES["s3.gb_month"]
    assert cost.total(cost.idle_costs(on, PRICES, a)) - cost.total(
        cost.idle_costs(off, PRICES, a)
    ) == pytest.approx(PRICES[f"sagemaker.hour.{gpu_type}"] * 730 + extra)


def test_alarms_are_counted_from_the_template_and_priced_per_alarm() -> None:
    t = template(alarms=7)
    t["Resources"]["Fast"] = _alarm(period=10)  # high resolution
    inv = cost.inventory(t)
    assert (inv.alarms, inv.alarms_high_res) == (7, 1)
    line = next(x for x in cost.idle_costs(inv, PRICES, NO_EXTRAS) if x.resource.endswith("alarms"))
    assert line.usd == pytest.approx(
        7 * PRICES["cw.alarm_month"] + PRICES["cw.alarm_high_res_month"]
    )


def test_inventory_reads_the_priced_settings() -> None:
    inv = cost.inventory(template(gpu="ml.g5.xlarge"))
    assert inv.function("chat").memory_mb == 1769
    assert inv.function("authorizer").memory_mb == 512
    assert inv.dashboard_metrics == (2,)  # the alarm widget references no metric
    assert inv.search[0].instance_type == "t3.small.search"
    assert inv.endpoints[0].instance_type == "ml.g5.xlarge"
    assert inv.authorizer_cache_ttl == 0 and inv.detailed_api_metrics
    assert cost.dashboard_metric_count(json.dumps({"widgets": []})) == 0


def test_idle_opensearch_follows_the_domain_settings() -> None:
    t = template()
    t["Resources"]["Domain"]["Properties"]["ClusterConfig"] = {
        "InstanceType": "t3.medium.search",
        "InstanceCount": 2,
    }
    t["Resources"]["Domain"]["Properties"]["EBSOptions"]["VolumeSize"] = 20
    lines = [
        x
        for x in cost.idle_costs(cost.inventory(t), PRICES, NO_EXTRAS)
        if x.resource == "OpenSearch domain"
    ]
    assert sum(x.usd for x in lines) == pytest.approx(
        2 * PRICES["opensearch.hour.t3.medium.search"] * 730
        + 2 * 20 * PRICES["opensearch.gp3_gb_month"]
    )


@pytest.mark.parametrize("gpu", [None, "ml.g5.xlarge"])
def test_per_chat_cost_grows_linearly(gpu: str | None) -> None:
    inv = cost.inventory(template(gpu=gpu))
    a = cost.Assumptions()
    one = cost.total(cost.per_chat_costs(inv, PRICES, a, 1000))
    assert one > 0
    for n in (2000, 5000, 10000):
        assert cost.total(cost.per_chat_costs(inv, PRICES, a, n)) == pytest.approx(one * n / 1000)


def test_per_chat_lambda_duration_uses_the_template_memory() -> None:
    t = template()
    t["Resources"]["Chat"]["Properties"]["MemorySize"] = 3538  # twice 1769
    a = cost.Assumptions()

    def chat_line(tpl: dict[str, Any]) -> float:
        lines = cost.per_chat_costs(cost.inventory(tpl), PRICES, a, 1000)
        return next(x.usd for x in lines if x.resource == "Lambda duration: chat")

    assert chat_line(t) == pytest.approx(2 * chat_line(template()))
    expected = 1000 * a.chat_duration_s * 1769 / 1024 * PRICES["lambda.arm64.gb_s"]
    assert chat_line(template()) == pytest.approx(expected)


def test_gpu_time_is_amortized_not_marginal() -> None:
    inv = cost.inventory(template(gpu="ml.g5.xlarge"))
    a = cost.Assumptions()
    am = cost.gpu_amortization(inv, PRICES, a)
    month = PRICES["sagemaker.hour.ml.g5.xlarge"] * 730
    assert am.endpoint_month_usd == pytest.approx(month)
    assert am.share_per_1000[10_000] == pytest.approx(month / 10)
    # No per-chat line charges GPU time: only data processed depends on the endpoint.
    per_on = cost.per_chat_costs(inv, PRICES, a, 1000)
    per_off = cost.per_chat_costs(cost.inventory(template()), PRICES, a, 1000)
    sm = next(x.usd for x in per_on if x.resource == "SageMaker data processed")
    assert cost.total(per_on) - cost.total(per_off) == pytest.approx(sm)
    assert cost.gpu_amortization(cost.inventory(template()), PRICES, a) is None


def test_every_price_names_its_source_and_date() -> None:
    for key, p in cost.PRICES.items():
        assert p.usd > 0 and p.source and p.as_of, key
