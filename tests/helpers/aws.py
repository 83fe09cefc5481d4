"""moto-backed AWS adapters for the contract and adapter tests: in process, never the network.

Each context manager starts moto's `mock_aws`, points boto3 at dummy credentials and a fixed
region (and away from any profile, config file, endpoint override or instance metadata on the
machine), creates the bucket or table, and forgets everything on exit. Imports of boto3/moto
happen inside, so the local-only test runs never need them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from unittest import mock

if TYPE_CHECKING:
    from pasture.adapters.aws.dynamodb_records import DynamoDBRecords
    from pasture.adapters.aws.s3_blob_store import S3BlobStore

REGION = "us-east-1"
BUCKET = "pasture-test-blobs"
TABLE = "pasture-test-records"


def _isolated_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_")  # nothing of the machine's own AWS setup
    }
    missing = os.path.join(os.sep, "nonexistent", "pasture-aws-config")
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_CONFIG_FILE=missing,
        AWS_SHARED_CREDENTIALS_FILE=missing,
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


@contextmanager
def mocked_aws() -> Iterator[None]:
    from moto import mock_aws

    with mock.patch.dict(os.environ, _isolated_env(), clear=True), mock_aws():
        yield


def refuse_scans(client: Any) -> None:
    """Make any Scan through this DynamoDB client fail the test (the port allows none)."""

    def refuse(**_: Any) -> None:
        raise AssertionError("DynamoDB Scan called: the Records port never scans")

    client.meta.events.register("before-call.dynamodb.Scan", refuse)


@contextmanager
def s3_client() -> Iterator[Any]:
    """An S3 client on moto with the test bucket created."""
    import boto3

    with mocked_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client


@contextmanager
def dynamodb_client() -> Iterator[Any]:
    """A DynamoDB client on moto with the Records table created (scans refused)."""
    import boto3

    from pasture.adapters.aws.dynamodb_records import create_table

    with mocked_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        refuse_scans(client)
        create_table(client, TABLE)
        yield client


@contextmanager
def s3_blob_store(**options: Any) -> Iterator[S3BlobStore]:
    from pasture.adapters.aws.s3_blob_store import S3BlobStore

    with s3_client() as client:
        yield S3BlobStore(client, BUCKET, **options)


@contextmanager
def dynamodb_records() -> Iterator[DynamoDBRecords]:
    from pasture.adapters.aws.dynamodb_records import DynamoDBRecords

    with dynamodb_client() as client:
        yield DynamoDBRecords(client, TABLE)
