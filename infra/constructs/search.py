"""The OpenSearch domain with k-NN (SearchIndex): faiss HNSW + BM25, OpenSearch 2.15 or later.

Public endpoint, IAM only: the domain's resource policy delegates to IAM in this account, and
only the roles of functions whose group uses the `search_index` port may sign requests to it.
A VPC would add NAT gateways or interface endpoints for every Lambda (tens of dollars a month
while idle) for no gain in who can reach the data: every request is SigV4-signed.
"""

from __future__ import annotations

import re

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_opensearchservice as opensearch
from constructs import Construct

from infra.config import StackConfig
from infra.constructs.functions import log_group
from infra.nag import suppress

# What the adapter sends (opensearch_search_index.py): reads, bulk writes, index creation,
# _delete_by_query, HEAD for existence.
HTTP_ACTIONS = ["es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost", "es:ESHttpPut", "es:ESHttpDelete"]


class Search(Construct):
    def __init__(self, scope: Construct, cid: str, *, config: StackConfig) -> None:
        super().__init__(scope, cid)
        stack = Stack.of(self)
        removal = RemovalPolicy.RETAIN if config.removal == "retain" else RemovalPolicy.DESTROY
        multi_node = config.search_instance_count > 1

        # The domain's logs go to log groups whose resource policy is declared here (the L2's
        # own policy comes from a custom resource Lambda; this needs none).
        self.slow_search_logs = log_group(self, "SlowSearchLogs", config)
        self.slow_index_logs = log_group(self, "SlowIndexLogs", config)
        self.app_logs = log_group(self, "AppLogs", config)
        groups = [self.slow_search_logs, self.slow_index_logs, self.app_logs]
        logs_policy = logs.CfnResourcePolicy(
            self,
            "LogsPolicy",
            policy_name=f"{stack.stack_name}-opensearch-logs",
            policy_document=stack.to_json_string(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "es.amazonaws.com"},
                            "Action": ["logs:PutLogEvents", "logs:CreateLogStream"],
                            "Resource": [g.log_group_arn for g in groups],
                            "Condition": {"StringEquals": {"aws:SourceAccount": stack.account}},
                        }
                    ],
                }
            ),
        )

        # A fixed name, so the access policy can name the domain without referring to itself.
        name = re.sub(r"[^a-z0-9-]", "-", f"{stack.stack_name.lower()}-search")[:28]
        self.domain = opensearch.Domain(
            self,
            "Domain",
            domain_name=name,
            version=opensearch.EngineVersion.open_search(config.search_engine_version),
            capacity=opensearch.CapacityConfig(
                data_nodes=config.search_instance_count,
                data_node_instance_type=config.search_instance_type,
                multi_az_with_standby_enabled=False,
            ),
            ebs=opensearch.EbsOptions(
                volume_size=config.search_volume_gb, volume_type=ec2.EbsDeviceVolumeType.GP3
            ),
            zone_awareness=opensearch.ZoneAwarenessConfig(
                enabled=multi_node, availability_zone_count=2 if multi_node else None
            ),
            encryption_at_rest=opensearch.EncryptionAtRestOptions(enabled=True),
            node_to_node_encryption=True,
            enforce_https=True,
            tls_security_policy=opensearch.TLSSecurityPolicy.TLS_1_2,
            logging=opensearch.LoggingOptions(
                slow_search_log_enabled=True,
                slow_search_log_group=self.slow_search_logs,
                slow_index_log_enabled=True,
                slow_index_log_group=self.slow_index_logs,
                app_log_enabled=True,
                app_log_group=self.app_logs,
            ),
            suppress_logs_resource_policy=True,
            removal_policy=removal,
        )
        # OpenSearch checks at creation that it may write to its log groups.
        self.domain.node.add_dependency(logs_policy)
        # Delegate to IAM in this account (no circular reference to the function roles, and no
        # custom resource): a principal needs an identity policy naming this domain as well.
        cfn = self.domain.node.default_child
        assert isinstance(cfn, opensearch.CfnDomain)
        cfn.add_property_override(
            "AccessPolicies",
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:{stack.partition}:iam::{stack.account}:root"},
                        "Action": HTTP_ACTIONS,
                        "Resource": f"arn:{stack.partition}:es:{stack.region}:{stack.account}:domain/{name}/*",
                    }
                ],
            },
        )
        self.endpoint = f"https://{self.domain.domain_endpoint}"
        suppress(
            self.domain,
            "AwsSolutions-OS5",
            "The access policy is set above by a raw override, which cdk-nag does not see: it"
            " allows only SigV4-signed requests of IAM principals of this account that also"
            " hold an identity policy for this domain (tests/infra asserts the policy).",
        )

        suppress(
            self.domain,
            "AwsSolutions-OS1",
            "No VPC on purpose: Lambdas in a VPC need NAT or interface endpoints (over the"
            " idle-cost budget). Every request is SigV4-signed; the access policy delegates to"
            " IAM, and only the search functions' roles are granted.",
        )
        suppress(
            self.domain,
            "AwsSolutions-OS3",
            "Access is by IAM identity (SigV4), not by source IP: Lambda has no fixed addresses.",
        )
        if not multi_node:
            suppress(
                self.domain,
                "AwsSolutions-OS4",
                "The default is a single-node trial domain (searchInstanceCount=1); dedicated"
                " masters triple its cost. Size it up with searchInstanceCount.",
            )
            suppress(
                self.domain,
                "AwsSolutions-OS7",
                "Zone awareness needs two or more nodes; the trial default has one.",
            )
        else:
            suppress(
                self.domain,
                "AwsSolutions-OS4",
                "Dedicated master nodes are not configured by this stack; for production"
                " clusters of 3+ data nodes add them in infra/constructs/search.py.",
            )

    def grant(self, role: iam.IRole) -> None:
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=HTTP_ACTIONS, resources=[f"{self.domain.domain_arn}/*"])
        )
