"""Alarms on errors and throttles, and one dashboard. Alarms notify an SNS topic (an e-mail
subscription when `alarmEmail` is set)."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_opensearchservice as opensearch
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import StackConfig
from infra.constructs.functions import PastureFunction
from infra.nag import suppress

FIVE_MINUTES = Duration.minutes(5)


class Observability(Construct):
    def __init__(
        self,
        scope: Construct,
        cid: str,
        *,
        config: StackConfig,
        functions: Mapping[str, PastureFunction],
        rest_api: apigw.RestApi,
        state_machine: sfn.StateMachine,
        domain: opensearch.Domain,
    ) -> None:
        super().__init__(scope, cid)
        stack = Stack.of(self)
        self.topic = sns.Topic(
            self,
            "Alarms",
            display_name=f"{stack.stack_name} alarms",
            enforce_ssl=True,
        )
        suppress(
            self.topic,
            "AwsSolutions-SNS2",
            "CloudWatch alarms cannot publish to a topic under the AWS-managed SNS key, and a"
            " customer key costs $1/month idle; alarm messages carry no user data.",
        )
        if config.alarm_email:
            self.topic.add_subscription(subs.EmailSubscription(config.alarm_email))
        action = cw_actions.SnsAction(self.topic)
        self.alarms: list[cw.Alarm] = []

        def alarm(
            name: str,
            metric: cw.IMetric,
            threshold: float,
            what: str,
            comparison: cw.ComparisonOperator = cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        ) -> None:
            a = cw.Alarm(
                self,
                name,
                metric=metric,
                threshold=threshold,
                evaluation_periods=1,
                comparison_operator=comparison,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                alarm_description=what,
            )
            a.add_alarm_action(action)
            self.alarms.append(a)

        for name, fn in functions.items():
            f = fn.function
            alarm(
                f"{name.title()}Errors",
                f.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
                1,
                f"The {name} function failed (an unhandled error or a timeout).",
            )
            alarm(
                f"{name.title()}Throttles",
                f.metric_throttles(period=FIVE_MINUTES, statistic="Sum"),
                1,
                f"The {name} function was throttled (account or reserved concurrency).",
            )
        alarm(
            "Api5xx",
            rest_api.metric_server_error(period=FIVE_MINUTES, statistic="Sum"),
            5,
            "API Gateway answered 5xx at least 5 times in 5 minutes.",
        )
        alarm(
            "Api429",
            cw.Metric(
                namespace="AWS/ApiGateway",
                metric_name="4XXError",
                dimensions_map={"ApiName": rest_api.rest_api_name},
                period=FIVE_MINUTES,
                statistic="Sum",
            ),
            100,
            "Many 4xx answers (bad keys, throttling) in 5 minutes.",
        )
        alarm(
            "IngestFailed",
            state_machine.metric_failed(period=FIVE_MINUTES, statistic="Sum"),
            1,
            "An ingestion run failed as a whole (its documents may stay RUNNING).",
        )
        alarm(
            "SearchRed",
            domain.metric_cluster_status_red(period=Duration.minutes(1), statistic="Maximum"),
            1,
            "The search domain's cluster status is red (a primary shard is unassigned).",
        )
        alarm(
            "SearchWritesBlocked",
            domain.metric_cluster_index_writes_blocked(period=FIVE_MINUTES, statistic="Maximum"),
            1,
            "The search domain blocks writes (disk or memory pressure).",
        )
        alarm(
            "SearchStorageLow",
            domain.metric_free_storage_space(period=FIVE_MINUTES, statistic="Minimum"),
            # MB; a quarter of the volume.
            config.search_volume_gb * 1024 / 4,
            "The search domain has less than a quarter of its volume free.",
            cw.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD,
        )

        self.dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"{stack.stack_name}")
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="API requests and errors",
                left=[rest_api.metric_count(period=FIVE_MINUTES)],
                right=[
                    rest_api.metric_client_error(period=FIVE_MINUTES),
                    rest_api.metric_server_error(period=FIVE_MINUTES),
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="API latency (p50, p99)",
                left=[
                    rest_api.metric_latency(period=FIVE_MINUTES, statistic="p50"),
                    rest_api.metric_latency(period=FIVE_MINUTES, statistic="p99"),
                ],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Function invocations",  # duration: each function's own metrics
                left=[
                    fn.function.metric_invocations(period=FIVE_MINUTES, label=n)
                    for n, fn in functions.items()
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="Function errors and throttles",
                left=[
                    fn.function.metric_errors(period=FIVE_MINUTES, label=n)
                    for n, fn in functions.items()
                ],
                right=[
                    fn.function.metric_throttles(period=FIVE_MINUTES, label=n)
                    for n, fn in functions.items()
                ],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cw.GraphWidget(
                title="Ingestion runs",
                left=[
                    state_machine.metric_started(period=FIVE_MINUTES),
                    state_machine.metric_succeeded(period=FIVE_MINUTES),
                    state_machine.metric_failed(period=FIVE_MINUTES),
                ],
                width=12,
            ),
            cw.GraphWidget(
                title="Search domain",
                left=[
                    domain.metric_search_latency(period=FIVE_MINUTES),
                    domain.metric_indexing_latency(period=FIVE_MINUTES),
                ],
                right=[
                    domain.metric_free_storage_space(period=FIVE_MINUTES),
                    domain.metric_jvm_memory_pressure(period=FIVE_MINUTES),
                ],
                width=12,
            ),
            cw.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms), width=24),
        )
