"""functions/keys/handler.py, the `Custom::PastureConsumerKey` custom resource, driven with the
events CloudFormation sends through the CDK Provider framework (Create, Update with the same
or another consumer, Delete, and Delete of a physical id it never answered, as after a failed
Create), on moto's DynamoDB and API Gateway. The function builds its container from the
environment alone, as in Lambda. No answer ever holds a secret: CloudFormation keeps `Data`
in plain text.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest

from pasture.config import get_settings
from pasture.domain.errors import Invalid, Unavailable
from tests.helpers.apigw import ACCOUNT, LambdaContext
from tests.helpers.aws import REGION, TABLE, dynamodb_client
from tests.helpers.lambda_env import load_function

STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/pasture/{uuid.uuid4()}"
SERVICE_TOKEN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:pasture-ConsumerKeysProviderframew"


def cfn_event(
    kind: str,
    consumer: str,
    *,
    physical_id: str | None = None,
    old_consumer: str | None = None,
) -> dict[str, Any]:
    """What the Provider framework hands its onEvent function: CloudFormation's request
    (its ResponseURL is the framework's business, not the handler's)."""
    event: dict[str, Any] = {
        "RequestType": kind,
        "ServiceToken": SERVICE_TOKEN,
        "ResponseURL": "...",
        "StackId": STACK_ID,
        "RequestId": str(uuid.uuid4()),
        "LogicalResourceId": "ConsumerKeysKeyMobileAppA1B2C3D4",
        "ResourceType": "Custom::PastureConsumerKey",
        "ResourceProperties": {"ServiceToken": SERVICE_TOKEN, "Consumer": consumer},
    }
    if physical_id is not None:
        event["PhysicalResourceId"] = physical_id
    if kind == "Update":
        event["OldResourceProperties"] = {
            "ServiceToken": SERVICE_TOKEN,
            "Consumer": old_consumer or consumer,
        }
    return event


@dataclass
class Resource:
    module: Any
    apigw: Any
    ddb: Any
    plan: str

    def send(self, event: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self.module.handler(event, LambdaContext("pasture-keys"))
        json.loads(json.dumps(answer))  # what the framework does with it
        return answer

    def api_keys(self) -> list[dict[str, Any]]:
        return list(self.apigw.get_api_keys(includeValues=True)["items"])

    def secrets(self) -> list[str]:
        return [k["value"] for k in self.api_keys()]

    def plan_keys(self) -> set[str]:
        return {k["id"] for k in self.apigw.get_usage_plan_keys(usagePlanId=self.plan)["items"]}

    def listed(self) -> list[str]:
        items = self.ddb.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "CONSUMER"}},
        )["Items"]
        return [i["sk"]["S"] for i in items]


def _resource(tmp_path: Path, **env: str) -> Iterator[Resource]:
    with dynamodb_client() as ddb:
        apigw = boto3.client("apigateway", region_name=REGION)
        plan = apigw.create_usage_plan(name="pasture-prod")["id"]
        environment = {
            "PASTURE_BACKEND": "aws",
            "PASTURE_TABLE": TABLE,
            "PASTURE_USAGE_PLAN_ID": plan,
            "PASTURE_DATA_DIR": str(tmp_path),
            **env,
        }
        module = load_function("keys", environment)
        with mock.patch.dict(os.environ, environment):
            get_settings.cache_clear()
            try:
                yield Resource(module, apigw, ddb, plan)
            finally:
                get_settings.cache_clear()


@pytest.fixture
def resource(tmp_path: Path) -> Iterator[Resource]:
    yield from _resource(tmp_path)


def assert_no_secret(r: Resource, answer: dict[str, Any]) -> None:
    text = json.dumps(answer)
    assert not any(s in text for s in r.secrets())
    assert "pst-" not in text


# ------------------------------------------------------------------ Create


def test_create_makes_a_key_and_answers_its_ids_but_not_the_secret(resource: Resource) -> None:
    r = resource
    # When CloudFormation creates the resource
    answer = r.send(cfn_event("Create", "mobile-app"))
    # Then one key exists, in the table and as an API key in the stack's usage plan
    (gw,) = r.api_keys()
    key_id = gw["name"].rpartition("-")[2]
    assert answer == {
        "PhysicalResourceId": f"mobile-app#{key_id}",
        "Data": {"KeyId": key_id, "ApiKeyId": gw["id"], "Consumer": "mobile-app"},
    }
    assert r.plan_keys() == {gw["id"]}
    assert r.listed() == [f"mobile-app#{key_id}"]
    assert gw["value"].startswith("pst-") and gw["enabled"]
    assert_no_secret(r, answer)
    # The container is built once, on the first event, and kept.
    service = r.module._keys
    assert service is not None
    r.send(cfn_event("Create", "zapier"))
    assert r.module._keys is service


def test_create_with_a_bad_consumer_fails_and_makes_nothing(resource: Resource) -> None:
    with pytest.raises(Invalid):
        resource.send(cfn_event("Create", "has space"))
    assert resource.api_keys() == [] and resource.listed() == []


def test_create_without_a_usage_plan_fails_clearly_and_leaves_nothing(tmp_path: Path) -> None:
    for r in _resource(tmp_path, PASTURE_USAGE_PLAN_ID=""):
        with pytest.raises(Unavailable, match="PASTURE_USAGE_PLAN_ID"):
            r.send(cfn_event("Create", "mobile-app"))
        assert r.api_keys() == [] and r.listed() == []


# ------------------------------------------------------------------ Update


def test_update_with_the_same_consumer_keeps_the_key(resource: Resource) -> None:
    r = resource
    created = r.send(cfn_event("Create", "mobile-app"))
    physical = created["PhysicalResourceId"]
    answer = r.send(cfn_event("Update", "mobile-app", physical_id=physical))
    assert answer == created
    assert len(r.api_keys()) == 1 and len(r.listed()) == 1
    assert_no_secret(r, answer)


def test_update_to_another_consumer_makes_a_new_key_then_the_old_is_deleted(
    resource: Resource,
) -> None:
    r = resource
    old = r.send(cfn_event("Create", "mobile-app"))
    new = r.send(
        cfn_event(
            "Update", "zapier", physical_id=old["PhysicalResourceId"], old_consumer="mobile-app"
        )
    )
    assert new["PhysicalResourceId"].startswith("zapier#")
    assert (
        new["Data"]["Consumer"] == "zapier" and new["Data"]["ApiKeyId"] != old["Data"]["ApiKeyId"]
    )
    assert_no_secret(r, new)
    assert len(r.api_keys()) == 2  # both, until CloudFormation deletes the old one
    # CloudFormation's clean-up: Delete with the old physical id and the old properties.
    gone = r.send(cfn_event("Delete", "mobile-app", physical_id=old["PhysicalResourceId"]))
    assert gone == {"PhysicalResourceId": old["PhysicalResourceId"]}
    assert [k["id"] for k in r.api_keys()] == [new["Data"]["ApiKeyId"]]
    assert r.listed() == [new["PhysicalResourceId"]]
    assert r.plan_keys() >= {new["Data"]["ApiKeyId"]}


def test_update_of_a_key_revoked_meanwhile_makes_a_new_one(resource: Resource) -> None:
    """Someone ran `pasture keys revoke mobile-app`: the resource makes the consumer a key
    again (a new physical id; CloudFormation's Delete of the old one then finds nothing)."""
    r = resource
    old = r.send(cfn_event("Create", "mobile-app"))
    r.module._keys.revoke("mobile-app")
    new = r.send(cfn_event("Update", "mobile-app", physical_id=old["PhysicalResourceId"]))
    assert new["PhysicalResourceId"] != old["PhysicalResourceId"]
    assert r.listed() == [new["PhysicalResourceId"]]
    r.send(cfn_event("Delete", "mobile-app", physical_id=old["PhysicalResourceId"]))
    assert [k["id"] for k in r.api_keys()] == [new["Data"]["ApiKeyId"]]


# ------------------------------------------------------------------ Delete


def test_delete_revokes_the_key_and_twice_is_fine(resource: Resource) -> None:
    r = resource
    made = r.send(cfn_event("Create", "mobile-app"))
    physical = made["PhysicalResourceId"]
    assert r.send(cfn_event("Delete", "mobile-app", physical_id=physical)) == {
        "PhysicalResourceId": physical
    }
    assert r.api_keys() == [] and r.listed() == []
    assert r.send(cfn_event("Delete", "mobile-app", physical_id=physical)) == {
        "PhysicalResourceId": physical
    }


@pytest.mark.parametrize(
    "physical_id",
    [
        str(uuid.uuid4()),  # a failed Create: the framework's id, the request id
        "mobile-app#deadbeef",  # our shape, but never made
        "has space#deadbeef",
        "mobile-app#not-hex!",
        "",
    ],
)
def test_delete_of_an_id_never_made_succeeds(resource: Resource, physical_id: str) -> None:
    r = resource
    kept = r.send(cfn_event("Create", "mobile-app"))
    answer = r.send(cfn_event("Delete", "mobile-app", physical_id=physical_id))
    assert answer == {"PhysicalResourceId": physical_id}
    # The consumer's real key is untouched.
    assert [k["id"] for k in r.api_keys()] == [kept["Data"]["ApiKeyId"]]
    assert r.listed() == [kept["PhysicalResourceId"]]


def test_an_unknown_request_type_fails(resource: Resource) -> None:
    with pytest.raises(ValueError):
        resource.send(cfn_event("Rename", "mobile-app"))
