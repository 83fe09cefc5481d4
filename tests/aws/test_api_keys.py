"""Consumer keys on the aws backend are API Gateway API keys too (ApiGatewayApiKeys), against
moto's API Gateway and DynamoDB in process: the key made, its value, its usage plan; revoking
(twice); all or nothing when the usage plan is wrong or unset; the whole path from
ConsumerKeyService to the authorizer's answer; and `pasture keys` on PASTURE_BACKEND=aws.

moto accepts a usage plan key for a usage plan that does not exist; AWS answers
NotFoundException. `aws_like_plan_check` puts AWS's answer back for these tests.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.stub import Stubber

from pasture.adapters.aws.apigateway_keys import ApiGatewayApiKeys, api_key_name
from pasture.adapters.aws.dynamodb_records import DynamoDBRecords
from pasture.api.authorizer import authorizer_handler
from pasture.bootstrap import AwsClients, build_container
from pasture.cli import main
from pasture.domain.errors import NotFound, Unavailable, Upstream
from pasture.services import keys
from pasture.services.consumer_keys import ConsumerKeyService
from tests.helpers.apigw import LambdaContext, authorizer_event
from tests.helpers.aws import REGION, TABLE, dynamodb_client
from tests.helpers.lambda_env import aws_settings, fake_chat_factory, restored_logging


@contextmanager
def apigateway_and_table() -> Iterator[tuple[Any, Any, str]]:
    """moto's API Gateway with the stack's usage plan, and the Records table (moto's DynamoDB,
    scans refused): (apigateway client, dynamodb client, usage plan id)."""
    with dynamodb_client() as ddb:
        apigw = boto3.client("apigateway", region_name=REGION)
        aws_like_plan_check(apigw)
        plan = apigw.create_usage_plan(name="pasture-prod", throttle={"rateLimit": 10})["id"]
        yield apigw, ddb, plan


def aws_like_plan_check(apigw: Any) -> None:
    """CreateUsagePlanKey for a plan that does not exist fails as AWS fails it."""

    class NotFoundAnswer:
        status_code = 404

    def check(params: dict[str, Any], **_: Any) -> Any:
        plan = params["url_path"].split("/")[2]  # /usageplans/<id>/keys
        if plan in {p["id"] for p in apigw.get_usage_plans()["items"]}:
            return None  # on to moto
        error = {"Code": "NotFoundException", "Message": "Invalid Usage Plan ID specified"}
        return NotFoundAnswer(), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 404}}

    apigw.meta.events.register("before-call.api-gateway.CreateUsagePlanKey", check)


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any, str]]:
    with apigateway_and_table() as made:
        yield made


def named(apigw: Any, name: str) -> list[dict[str, Any]]:
    items = apigw.get_api_keys(nameQuery=name, includeValues=True)["items"]
    return [k for k in items if k["name"] == name]


def all_keys(apigw: Any) -> list[dict[str, Any]]:
    return list(apigw.get_api_keys(includeValues=True)["items"])


def plan_key_ids(apigw: Any, plan: str) -> set[str]:
    return {k["id"] for k in apigw.get_usage_plan_keys(usagePlanId=plan)["items"]}


def stored(ddb: Any) -> list[dict[str, Any]]:
    """Every consumer-key item in the table (both lookups)."""
    out: list[dict[str, Any]] = []
    for pk in (keys.CONSUMER_KEYS, keys.CONSUMERS):
        out += ddb.query(
            TableName=TABLE,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
        )["Items"]
    return out


# ------------------------------------------------------------------ the adapter


def test_register_makes_an_enabled_key_with_the_value_in_the_plan(
    aws: tuple[Any, Any, str],
) -> None:
    # Given the stack's usage plan
    apigw, _, plan = aws
    gateway = ApiGatewayApiKeys(apigw, plan)
    secret = "pst-" + "s" * 43
    # When a key is registered
    api_key_id = gateway.register("mobile-app", "0123abcd", secret)
    # Then it is an API key of that value, enabled, named and described for Pasture ...
    key = apigw.get_api_key(apiKey=api_key_id, includeValue=True)
    assert key["name"] == "pasture-mobile-app-0123abcd" == api_key_name("mobile-app", "0123abcd")
    assert key["value"] == secret
    assert key["enabled"] is True
    assert "managed by Pasture" in key["description"]
    # ... in the usage plan, as an API_KEY
    plan_keys = apigw.get_usage_plan_keys(usagePlanId=plan)["items"]
    assert [(k["id"], k["type"]) for k in plan_keys] == [(api_key_id, "API_KEY")]
    assert gateway.find("mobile-app", "0123abcd") == api_key_id


def test_revoke_deletes_the_key_and_twice_is_fine(aws: tuple[Any, Any, str]) -> None:
    apigw, _, plan = aws
    gateway = ApiGatewayApiKeys(apigw, plan)
    gateway.register("zapier", "0000beef", "pst-" + "z" * 43)
    # A consumer whose name extends the first key's name: nameQuery matches by prefix.
    other = gateway.register("zapier-0000beef", "11112222", "pst-" + "o" * 43)
    gateway.revoke("zapier", "0000beef")
    assert named(apigw, "pasture-zapier-0000beef") == []
    assert gateway.find("zapier", "0000beef") is None
    gateway.revoke("zapier", "0000beef")  # nothing there: fine
    gateway.revoke("never-made", "deadbeef")
    assert [k["id"] for k in all_keys(apigw)] == [other]


def test_register_in_a_wrong_plan_leaves_no_api_key(aws: tuple[Any, Any, str]) -> None:
    apigw, _, _ = aws
    gateway = ApiGatewayApiKeys(apigw, "nosuchplan")
    with pytest.raises(Unavailable) as info:
        gateway.register("mobile-app", "0123abcd", "pst-" + "s" * 43)
    assert "PASTURE_USAGE_PLAN_ID" in info.value.message
    assert "pst-" not in info.value.message
    assert all_keys(apigw) == []


def test_register_without_a_plan_makes_nothing(aws: tuple[Any, Any, str]) -> None:
    apigw, _, _ = aws
    with pytest.raises(Unavailable, match="PASTURE_USAGE_PLAN_ID"):
        ApiGatewayApiKeys(apigw, None).register("mobile-app", "0123abcd", "pst-" + "s" * 43)
    assert all_keys(apigw) == []


def test_find_and_revoke_page_through_the_listing() -> None:
    """GetApiKeys is paged (`position`); every page is read, values never asked for."""
    client = boto3.client(
        "apigateway",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    name = "pasture-web-00aa11bb"
    page1 = {"items": [{"id": "k1", "name": name + "-x"}], "position": "p2"}
    page2 = {"items": [{"id": "k2", "name": name}, {"id": "k3", "name": name}]}
    with Stubber(client) as stub:
        stub.add_response("get_api_keys", page1, {"nameQuery": name, "includeValues": False})
        stub.add_response(
            "get_api_keys", page2, {"nameQuery": name, "includeValues": False, "position": "p2"}
        )
        stub.add_response("delete_api_key", {}, {"apiKey": "k2"})
        stub.add_client_error("delete_api_key", "NotFoundException", http_status_code=404)
        ApiGatewayApiKeys(client, "plan").revoke("web", "00aa11bb")
        stub.assert_no_pending_responses()


def test_errors_are_translated() -> None:
    client = boto3.client(
        "apigateway",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    gateway = ApiGatewayApiKeys(client, "plan")
    with Stubber(client) as stub:
        stub.add_client_error("create_api_key", "TooManyRequestsException", http_status_code=429)
        with pytest.raises(Unavailable):
            gateway.register("web", "00aa11bb", "pst-" + "w" * 43)
        stub.add_response("create_api_key", {"id": "k1"})
        stub.add_client_error("create_usage_plan_key", "BadRequestException")
        stub.add_response("delete_api_key", {}, {"apiKey": "k1"})  # the rollback
        with pytest.raises(Upstream, match="CreateUsagePlanKey"):
            gateway.register("web", "00aa11bb", "pst-" + "w" * 43)
        stub.add_client_error("get_api_keys", "AccessDeniedException", http_status_code=403)
        with pytest.raises(Upstream, match="GetApiKeys"):
            gateway.revoke("web", "00aa11bb")
        stub.assert_no_pending_responses()


# ------------------------------------------------------------------ with ConsumerKeyService


def test_a_failing_gateway_leaves_no_records_and_no_api_key(aws: tuple[Any, Any, str]) -> None:
    # Given the service on the table, with a usage plan id that does not exist
    apigw, ddb, _ = aws
    svc = ConsumerKeyService(DynamoDBRecords(ddb, TABLE), ApiGatewayApiKeys(apigw, "nosuchplan"))
    # When a key is made
    with pytest.raises(Unavailable):
        svc.create("mobile-app")
    # Then nothing of it remains, on either side
    assert all_keys(apigw) == []
    assert stored(ddb) == []
    assert svc.listed() == []


def test_service_create_list_revoke_on_both_sides(aws: tuple[Any, Any, str]) -> None:
    apigw, ddb, plan = aws
    svc = ConsumerKeyService(DynamoDBRecords(ddb, TABLE), ApiGatewayApiKeys(apigw, plan))
    made = svc.create("mobile-app")
    assert made.secret and made.api_key_id
    (gw,) = named(apigw, f"pasture-mobile-app-{made.key_id}")
    assert gw["id"] == made.api_key_id and gw["value"] == made.secret
    assert plan_key_ids(apigw, plan) == {made.api_key_id}
    # The table still holds only the digest.
    assert made.secret not in json.dumps(stored(ddb))
    assert hashlib.sha256(made.secret.encode()).hexdigest() in json.dumps(stored(ddb))
    got = svc.get("mobile-app", made.key_id)
    assert got is not None and got.api_key_id == made.api_key_id and got.secret is None
    # Revoked: gone from both; revoking that id again still clears the gateway, then NotFound.
    assert svc.revoke("mobile-app", made.key_id) == 1
    assert all_keys(apigw) == [] and stored(ddb) == []
    with pytest.raises(NotFound):
        svc.revoke("mobile-app", made.key_id)


def test_revoke_clears_an_api_key_left_without_records(aws: tuple[Any, Any, str]) -> None:
    """A registration whose clean-up failed leaves an API key named for the key id (outside
    the plan, and with no table entries); revoking that key id removes it."""
    apigw, ddb, plan = aws
    apigw.create_api_key(name="pasture-web-00aa11bb", enabled=True, value="pst-" + "l" * 43)
    svc = ConsumerKeyService(DynamoDBRecords(ddb, TABLE), ApiGatewayApiKeys(apigw, plan))
    with pytest.raises(NotFound):
        svc.revoke("web", "00aa11bb")
    assert all_keys(apigw) == []


# ------------------------------------------------------------------ to the authorizer


def test_a_key_made_on_aws_is_what_api_gateway_and_the_authorizer_accept(
    aws: tuple[Any, Any, str], tmp_path: Path
) -> None:
    """The container on the aws backend (moto DynamoDB + moto API Gateway): a key made through
    its ConsumerKeyService passes the authorizer, and the authorizer's usageIdentifierKey is
    an API key in the usage plan (what key source AUTHORIZER checks next)."""
    apigw, ddb, plan = aws
    settings = aws_settings(tmp_path, tmp_path / "models", {}, usage_plan_id=plan)
    clients = AwsClients(settings, dynamodb=ddb, apigateway=apigw)
    container = build_container(settings, chat_factory=fake_chat_factory({}), aws=clients)
    with restored_logging():
        authorizer = authorizer_handler(container=container)
        made = container.consumer_keys.create("mobile-app")
        assert made.secret is not None
        answer = authorizer(authorizer_event({"X-Api-Key": made.secret}), LambdaContext())
        assert answer["principalId"] == "mobile-app"
        usage_key = answer["usageIdentifierKey"]
        in_plan = [k for k in all_keys(apigw) if k["id"] in plan_key_ids(apigw, plan)]
        assert [(k["value"], k["enabled"]) for k in in_plan] == [(usage_key, True)]
        # Revoked: the authorizer refuses it and API Gateway no longer has it.
        container.consumer_keys.revoke("mobile-app")
        with pytest.raises(Exception, match=r"^Unauthorized$"):
            authorizer(authorizer_event({"X-Api-Key": made.secret}), LambdaContext())
        assert all_keys(apigw) == []


def test_without_a_usage_plan_id_create_fails_clearly_and_list_works(
    aws: tuple[Any, Any, str], tmp_path: Path
) -> None:
    apigw, ddb, _ = aws
    settings = aws_settings(tmp_path, tmp_path / "models", {})
    assert settings.usage_plan_id is None
    clients = AwsClients(settings, dynamodb=ddb, apigateway=apigw)
    container = build_container(settings, chat_factory=fake_chat_factory({}), aws=clients)
    with pytest.raises(Unavailable, match="PASTURE_USAGE_PLAN_ID"):
        container.consumer_keys.create("mobile-app")
    assert container.consumer_keys.listed() == []
    assert stored(ddb) == [] and all_keys(apigw) == []


# ------------------------------------------------------------------ `pasture keys` on aws


@contextmanager
def aws_env(tmp_path: Path, **extra: str) -> Iterator[None]:
    env = {
        "PASTURE_BACKEND": "aws",
        "PASTURE_TABLE": TABLE,
        "PASTURE_AWS_REGION": REGION,
        "PASTURE_DATA_DIR": str(tmp_path),
        **extra,
    }
    with mock.patch.dict(os.environ, env):
        yield


def test_cli_keys_on_the_aws_backend(
    aws: tuple[Any, Any, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pasture keys create|list|revoke` with PASTURE_BACKEND=aws, in process: the clients
    are the CLI's own (boto3 under moto), the table and plan those the stack outputs."""
    apigw, ddb, plan = aws
    with aws_env(tmp_path, PASTURE_USAGE_PLAN_ID=plan):
        assert main(["keys", "create", "zapier"]) == 0
        out, err = capsys.readouterr()
        secret = out.strip()
        (gw,) = all_keys(apigw)
        assert gw["value"] == secret and gw["id"] in plan_key_ids(apigw, plan)
        assert gw["id"] in err and plan in err
        assert main(["keys", "list"]) == 0
        key_id = gw["name"].rpartition("-")[2]
        assert capsys.readouterr().out.split("\t")[:2] == ["zapier", key_id]
        assert main(["keys", "revoke", "zapier", key_id]) == 0
        assert all_keys(apigw) == [] and stored(ddb) == []
    # No usage plan id: create says what is missing and leaves nothing; list still works.
    with aws_env(tmp_path):
        assert main(["keys", "create", "zapier"]) == 1
        assert "PASTURE_USAGE_PLAN_ID" in capsys.readouterr().err
        assert main(["keys", "list"]) == 0
        assert capsys.readouterr().out == ""
    assert all_keys(apigw) == [] and stored(ddb) == []


# ------------------------------------------------------------------ the plan by name


def test_the_plan_is_found_by_its_name(aws: tuple[Any, Any, str]) -> None:
    # Given the stack's functions know the plan's name only (its id would be a cycle)
    apigw, _, plan = aws
    apigw.create_usage_plan(name="another-plan")
    gateway = ApiGatewayApiKeys(apigw, None, plan_name="pasture-prod")
    # When a key is registered
    api_key_id = gateway.register("mobile-app", "0a1b2c3d", "pst-found-by-the-plan-name")
    # Then it is in that plan
    assert api_key_id in plan_key_ids(apigw, plan)


@pytest.mark.parametrize("copies", [0, 2])
def test_no_or_two_plans_of_that_name_refuse_and_leave_no_key(
    aws: tuple[Any, Any, str], copies: int
) -> None:
    apigw, _, _ = aws
    for _ in range(copies):
        apigw.create_usage_plan(name="twin")
    gateway = ApiGatewayApiKeys(apigw, None, plan_name="twin")
    with pytest.raises(Unavailable, match="usage plan named"):
        gateway.register("mobile-app", "0a1b2c3d", "pst-refused-for-want-of-a-plan")
    assert all_keys(apigw) == []
