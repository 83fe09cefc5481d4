"""S3 for uploads (BlobStore) and the one DynamoDB table (Records)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import StackConfig
from infra.nag import suppress
from pasture.adapters.aws.dynamodb_records import TTL_ATTRIBUTE

# The state machine's intermediate data (chunk texts, vectors between steps). `complete_run`
# deletes a run's work; this catches runs that never completed.
WORK_PREFIX = "work/"


class Storage(Construct):
    def __init__(self, scope: Construct, cid: str, *, config: StackConfig) -> None:
        super().__init__(scope, cid)
        retain = config.removal == "retain"
        removal = RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY

        # Server access logs of the data bucket. Logs are not user data: they go with the stack
        # unless retained, and expire.
        def private_bucket(cid: str, **props: object) -> s3.Bucket:
            # Both buckets: no public access, SSE-S3 (encrypted at rest with no per-key monthly
            # charge; PASTURE_KMS_KEY_ID switches the adapter to SSE-KMS), TLS only.
            return s3.Bucket(
                self,
                cid,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                encryption=s3.BucketEncryption.S3_MANAGED,
                enforce_ssl=True,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                removal_policy=removal,
                auto_delete_objects=not retain,
                **props,
            )

        self.access_logs = private_bucket(
            "AccessLogs",
            lifecycle_rules=[
                s3.LifecycleRule(
                    expiration=Duration.days(config.log_retention_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
        )
        suppress(
            self.access_logs,
            "AwsSolutions-S1",
            "This is the access-log bucket itself; logging it into itself would loop.",
        )

        self.bucket = private_bucket(
            "Data",
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="data/",
            lifecycle_rules=[
                # Uploads stream in parts; a client that goes away leaves parts that cost.
                s3.LifecycleRule(
                    id="abort-incomplete-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="expire-workflow-scratch",
                    prefix=WORK_PREFIX,
                    expiration=Duration.days(7),
                ),
            ],
        )

        # Key schema and TTL attribute as `dynamodb_records.create_table` makes them.
        self.table = dynamodb.Table(
            self,
            "Records",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=TTL_ATTRIBUTE,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            deletion_protection=retain,
            removal_policy=removal,
        )
