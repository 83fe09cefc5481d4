"""The REQUEST authorizer (functions/authorizer) driven with API Gateway's authorizer events
under moto: static keys from the settings, consumer keys stored hashed in DynamoDB, RAGFlow
account keys; the policy, context and usage key it answers; its refusals. Then the whole
path: the authorizer's answer becomes the proxy event's context and a handler serves it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pasture.api.authorizer import authorize, authorizer_handler, stage_arn
from pasture.api.lambda_app import lambda_handler
from tests.helpers.apigw import (
    ACCOUNT,
    API_ID,
    REGION,
    STAGE,
    LambdaContext,
    Reply,
    authorizer_event,
    rest_event,
)
from tests.helpers.aws import TABLE
from tests.helpers.lambda_env import AwsStack, aws_stack, load_function, restored_logging

STAGE_ARN = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE}/*"


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, api_keys: dict[str, str]
) -> Iterator[AwsStack]:
    # RAGFlow accounts on, so keys minted by /v1/system/new_token are accepted too.
    with (
        restored_logging(),
        aws_stack(
            tmp_path_factory.mktemp("auth"), model_cache, api_keys, ragflow_accounts=True
        ) as s,
    ):
        yield s


@pytest.fixture(scope="module")
def handler(stack: AwsStack) -> Any:
    return authorizer_handler(container=stack.container)


def run(handler: Any, event: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = handler(event, LambdaContext(function_name="pasture-authorizer"))
    json.dumps(answer)  # what the Lambda runtime does with it
    return answer


def refused(handler: Any, event: dict[str, Any]) -> None:
    with pytest.raises(Exception) as info:
        handler(event, LambdaContext())
    # Exactly this message is API Gateway's 401; anything else would be a 500.
    assert str(info.value) == "Unauthorized"
    assert type(info.value) is Exception


def assert_allows(answer: dict[str, Any], tenant: str, key: str) -> None:
    assert answer["principalId"] == tenant
    assert answer["context"] == {"tenant": tenant}
    assert answer["usageIdentifierKey"] == key
    assert answer["policyDocument"] == {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": STAGE_ARN}],
    }


# ------------------------------------------------------------------ allow


def test_x_api_key_allows_the_whole_stage(handler: Any, api_keys: dict[str, str]) -> None:
    """The policy is cached per identity source: it must cover every method the key may call
    next, so it names the stage, not the method ARN it was asked about."""
    answer = run(handler, authorizer_event({"X-Api-Key": api_keys["alice"]}, method="DELETE"))
    assert_allows(answer, "alice", api_keys["alice"])


def test_bearer_allows(handler: Any, api_keys: dict[str, str]) -> None:
    answer = run(handler, authorizer_event({"Authorization": f"Bearer {api_keys['bob']}"}))
    assert_allows(answer, "bob", api_keys["bob"])


@pytest.mark.parametrize(
    "headers",
    [
        {"x-api-key": "{alice}"},
        {"X-API-KEY": "{alice}"},
        {"authorization": "Bearer {alice}"},
        {"AUTHORIZATION": "bearer {alice}"},
        {"Authorization": "BEARER   {alice}  "},
        {"Authorization": "{alice}"},  # RAGFlow's tooling sends the bare key
        {"X-Api-Key": "{alice}", "Authorization": "Bearer not-a-key"},  # X-Api-Key first
    ],
)
def test_header_names_and_scheme_in_any_case(
    handler: Any, api_keys: dict[str, str], headers: dict[str, str]
) -> None:
    h = {k: v.format(alice=api_keys["alice"]) for k, v in headers.items()}
    assert_allows(run(handler, authorizer_event(h)), "alice", api_keys["alice"])


def test_consumer_key_stored_hashed_in_dynamodb(handler: Any, stack: AwsStack) -> None:
    """`pasture keys create` keys live in the table as sha256 digests; the authorizer finds
    them there, and a revoked one stops working at once."""
    made = stack.container.consumer_keys.create("carol")
    assert made.secret is not None
    digest = hashlib.sha256(made.secret.encode()).hexdigest()
    items = stack.dynamodb.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "CONSUMERKEY"}},
    )["Items"]
    stored = json.dumps(items)
    assert made.secret not in stored and digest in stored
    assert_allows(run(handler, authorizer_event({"X-Api-Key": made.secret})), "carol", made.secret)
    stack.container.consumer_keys.revoke("carol")
    refused(handler, authorizer_event({"X-Api-Key": made.secret}))


def test_ragflow_account_key_then_serves_its_owner(stack: AwsStack, handler: Any) -> None:
    """RAGFlow's flow on AWS: register and log in through the accounts function (open: no
    authorizer), mint a key with new_token, and that key passes the authorizer."""
    accounts = lambda_handler("accounts", container=stack.container)

    def post(path: str, body: dict[str, Any] | None = None, **headers: str) -> Reply:
        ev = rest_event("POST", path, json_body=body or {}, headers=headers)
        return Reply.of(accounts(ev, LambdaContext()))

    creds = {"email": "dora@example.com", "password": "correct horse battery"}
    reg = post("/v1/user/register", {**creds, "nickname": "dora"})
    assert reg.json()["code"] == 0, reg.text
    login = post("/v1/user/login", creds)
    session = login.headers["authorization"]
    token = post("/v1/system/new_token", Authorization=session).json()["data"]["token"]
    answer = run(handler, authorizer_event({"Authorization": f"Bearer {token}"}))
    assert answer["usageIdentifierKey"] == token
    tenant = answer["context"]["tenant"]
    # The context the authorizer returned is what the datasets function serves.
    datasets = lambda_handler("datasets", container=stack.container)
    ev = rest_event(
        "POST", "/api/v1/datasets", json_body={"name": "doras_kb"}, authorizer=answer["context"]
    )
    assert Reply.of(datasets(ev, LambdaContext())).json()["code"] == 0
    ev = rest_event("GET", "/api/v1/datasets", tenant=tenant, query={"name": "doras_kb"})
    assert [d["name"] for d in Reply.of(datasets(ev, LambdaContext())).json()["data"]] == [
        "doras_kb"
    ]


# ------------------------------------------------------------------ refuse


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Api-Key": ""},
        {"Authorization": "Bearer "},
        {"X-Api-Key": "unknown-key-0123456789"},
        {"Authorization": "Bearer unknown-key-0123456789"},
        {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    ],
)
def test_missing_or_unknown_key_is_401(handler: Any, headers: dict[str, str]) -> None:
    refused(handler, authorizer_event(headers))


def test_another_tenants_key_with_a_wrong_case_is_refused(
    handler: Any, api_keys: dict[str, str]
) -> None:
    refused(handler, authorizer_event({"X-Api-Key": api_keys["alice"].upper()}))


def test_a_key_sent_twice_with_different_values_is_refused(
    handler: Any, api_keys: dict[str, str]
) -> None:
    """Which copy would API Gateway's `headers` keep? Neither is guessed at."""
    ev = authorizer_event(
        {"X-Api-Key": api_keys["alice"]},
        multi_value_headers={"X-Api-Key": [api_keys["bob"], api_keys["alice"]]},
    )
    refused(handler, ev)
    # The same key twice is no ambiguity.
    ev = authorizer_event(
        {"X-Api-Key": api_keys["alice"]},
        multi_value_headers={"x-api-key": [api_keys["alice"], api_keys["alice"]]},
    )
    assert run(handler, ev)["context"] == {"tenant": "alice"}


def test_store_failure_is_not_a_401(stack: AwsStack, api_keys: dict[str, str]) -> None:
    """A key that is not a static one is looked up in DynamoDB; if that fails, the authorizer
    fails (API Gateway's 500), rather than telling a valid key holder their key is wrong."""

    def boom(**_: Any) -> None:
        raise RuntimeError("table unreachable")

    h = authorizer_handler(container=stack.container)
    stack.dynamodb.meta.events.register("before-call.dynamodb.GetItem", boom)
    try:
        with pytest.raises(Exception) as info:
            h(authorizer_event({"X-Api-Key": "pst-some-consumer-key"}), LambdaContext())
        assert str(info.value) != "Unauthorized"
        # Static keys never reach the store.
        assert run(h, authorizer_event({"X-Api-Key": api_keys["bob"]}))["principalId"] == "bob"
    finally:
        stack.dynamodb.meta.events.unregister("before-call.dynamodb.GetItem", boom)


def test_authorize_is_pure_of_lambda(stack: AwsStack, api_keys: dict[str, str]) -> None:
    ev = authorizer_event({"X-Api-Key": api_keys["alice"]})
    assert authorize(ev, stack.container.authenticator)["context"] == {"tenant": "alice"}


def test_stage_arn() -> None:
    arn = "arn:aws:execute-api:eu-west-1:111122223333:abc123/v1/POST/api/v1/datasets"
    assert stage_arn(arn) == "arn:aws:execute-api:eu-west-1:111122223333:abc123/v1/*"
    with pytest.raises(ValueError):
        stage_arn("arn:aws:execute-api:eu-west-1:111122223333:abc123")


def test_the_function_module(stack: AwsStack, api_keys: dict[str, str]) -> None:
    """functions/authorizer/handler.py from the environment alone (keys from PASTURE_API_KEYS,
    consumer keys from the table named by PASTURE_TABLE)."""
    made = stack.container.consumer_keys.create("erin")
    assert made.secret is not None
    handler = load_function("authorizer", stack.env()).handler
    assert_allows(
        run(handler, authorizer_event({"X-Api-Key": api_keys["alice"]})), "alice", api_keys["alice"]
    )
    assert run(handler, authorizer_event({"X-Api-Key": made.secret}))["principalId"] == "erin"
    refused(handler, authorizer_event({"X-Api-Key": "nope"}))
