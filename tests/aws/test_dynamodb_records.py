"""DynamoDBRecords beyond the Records contract: the exact requests it sends, exact JSON round
trips, TTL, paging past DynamoDB's 1 MB pages, DynamoDB's own limits and error translation.
moto in process (every client here refuses Scan); no network, no real AWS."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.config import Config
from botocore.stub import ANY, Stubber

from pasture.adapters.aws.dynamodb_records import (
    MAX_ITEM_BYTES,
    DynamoDBRecords,
    create_table,
)
from pasture.domain.errors import Conflict, Invalid, Unavailable, Upstream
from pasture.ports import Record
from tests.helpers.aws import REGION, TABLE, dynamodb_client, mocked_aws

_KEY = {"pk": {"S": "p"}, "sk": {"S": "s"}}


@pytest.fixture
def ddb() -> Iterator[Any]:
    with dynamodb_client() as client:
        yield client


@pytest.fixture
def records(ddb: Any) -> DynamoDBRecords:
    return DynamoDBRecords(ddb, TABLE)


def _requests(client: Any, operation: str) -> list[dict[str, Any]]:
    """The parameters of every `operation` request the client sends from now on."""
    seen: list[dict[str, Any]] = []
    client.meta.events.register(
        f"provide-client-params.dynamodb.{operation}",
        lambda params, **_: seen.append(dict(params)),
    )
    return seen


# ---------------------------------------------------------------- the table


def test_create_table_declares_keys_on_demand_and_ttl(ddb: Any) -> None:
    table = ddb.describe_table(TableName=TABLE)["Table"]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = ddb.describe_time_to_live(TableName=TABLE)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_create_table_twice_is_a_conflict(ddb: Any) -> None:
    with pytest.raises(Conflict):
        create_table(ddb, TABLE)


def test_the_scan_guard_is_armed(ddb: Any) -> None:
    # Every client from the helpers fails a Scan, so a contract run proves none happens.
    with pytest.raises(AssertionError, match="Scan"):
        ddb.scan(TableName=TABLE)


# ---------------------------------------------------------------- values


def test_json_values_round_trip_exactly(records: DynamoDBRecords) -> None:
    # Given values a DynamoDB number or map would not give back as they were
    data = {
        "floats": [0.1, 1.0, -0.0, 1e-300, 1.7976931348623157e308, 5e-324, 2.5],
        "ints": [0, 1, -7, 2**70, 10**40],
        "none": None,
        "bools": [True, False],
        "empty": {"s": "", "l": [], "d": {}},
        "text": "naïve 日本語 \U0001f600",
        "nested": {"deep": [{"x": [1, [2, [3.5, None]]]}]},
    }
    expires = time.time() + 3600.123456
    # When it is stored and read back, by get and by query
    records.put(Record("p", "s", data, expires_at=expires), if_absent=False)
    got = records.get("p", "s")
    (queried,) = records.query("p", "", limit=None)
    # Then it is identical, types included (1.0 stays a float, 2**70 an int)
    for r in (got, queried):
        assert r is not None and r.data == data and r.expires_at == expires
        assert json.dumps(r.data, sort_keys=True) == json.dumps(data, sort_keys=True)
        assert isinstance(r.data["floats"][1], float) and isinstance(r.data["ints"][3], int)


def test_text_with_a_lone_surrogate_round_trips(records: DynamoDBRecords) -> None:
    records.put(Record("p", "s", {"t": "a\ud800b"}), if_absent=False)
    assert records.get("p", "s").data == {"t": "a\ud800b"}  # type: ignore[union-attr]


def test_items_are_stored_as_the_documented_layout(records: DynamoDBRecords, ddb: Any) -> None:
    records.put(Record("p", "s", {"a": 1.5}, expires_at=1900000000.5), if_absent=False)
    item = ddb.get_item(TableName=TABLE, Key=_KEY)["Item"]
    assert item == {
        "pk": {"S": "p"},
        "sk": {"S": "s"},
        "data": {"S": '{"a":1.5}'},
        "expires_at": {"N": "1900000000.5"},
    }


# ---------------------------------------------------------------- expiry


def test_an_expired_item_left_by_ttl_is_invisible_and_does_not_block(
    records: DynamoDBRecords, ddb: Any
) -> None:
    # Given an expired item that TTL has not removed yet (it is still in the table)
    records.put(Record("p", "s", {"v": 1}, expires_at=time.time() - 1), if_absent=False)
    assert "Item" in ddb.get_item(TableName=TABLE, Key=_KEY)
    # Then reads do not see it
    assert records.get("p", "s") is None
    assert records.query("p", "", limit=None) == []
    # And a conditional put takes its place
    records.put(Record("p", "s", {"v": 2}), if_absent=True)
    assert records.get("p", "s").data == {"v": 2}  # type: ignore[union-attr]


def test_an_item_expiring_later_still_blocks(records: DynamoDBRecords) -> None:
    records.put(Record("p", "s", {"v": 1}, expires_at=time.time() + 60), if_absent=False)
    with pytest.raises(Conflict):
        records.put(Record("p", "s", {"v": 2}), if_absent=True)


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_a_non_finite_expiry_is_invalid(records: DynamoDBRecords, bad: float) -> None:
    with pytest.raises(Invalid):
        records.put(Record("p", "s", {}, expires_at=bad), if_absent=False)


# ---------------------------------------------------------------- paging


def test_query_pages_past_1mb_and_honours_limit_after_dropping_expired(
    records: DynamoDBRecords, ddb: Any
) -> None:
    # Given ~4 MB in one partition: 40 items of 100 KB, every fourth one expired
    blob = "x" * 100_000
    now = time.time()
    for i in range(40):
        expires = now - 5 if i % 4 == 0 else None
        records.put(Record("p", f"k#{i:03d}", {"i": i, "b": blob}, expires), if_absent=False)
    live = [f"k#{i:03d}" for i in range(40) if i % 4]
    queries = _requests(ddb, "Query")
    # When 25 live items are asked for
    got = records.query("p", "k#", limit=25)
    # Then the first 25 live ones come back in order, over several 1 MB pages
    assert [r.sk for r in got] == live[:25]
    assert len(queries) > 1
    assert all(
        q["KeyConditionExpression"] == "pk = :pk AND begins_with(sk, :prefix)" for q in queries
    )
    # And without a limit, every live item
    assert [r.sk for r in records.query("p", "k#", limit=None)] == live


def test_query_limit_zero_sends_nothing(records: DynamoDBRecords, ddb: Any) -> None:
    queries = _requests(ddb, "Query")
    assert records.query("p", "", limit=0) == []
    assert queries == []
    with pytest.raises(ValueError):
        records.query("p", "", limit=-1)


# ---------------------------------------------------------------- DynamoDB's limits


def test_empty_keys_cannot_be_stored_and_are_never_found(records: DynamoDBRecords) -> None:
    for pk, sk in [("", "s"), ("p", "")]:
        with pytest.raises(Invalid):
            records.put(Record(pk, sk, {}), if_absent=False)
        assert records.get(pk, sk) is None
        assert records.delete(pk, sk) is False
    assert records.query("", "", limit=None) == []


def test_oversized_keys_and_items_are_invalid(records: DynamoDBRecords) -> None:
    with pytest.raises(Invalid):
        records.put(Record("p", "s" * 1025, {}), if_absent=False)
    with pytest.raises(Invalid):
        records.put(Record("p" * 2049, "s", {}), if_absent=False)
    with pytest.raises(Invalid):
        records.put(Record("p", "s", {"b": "x" * MAX_ITEM_BYTES}), if_absent=False)
    assert records.get("p", "s") is None
    assert records.query("p", "s" * 1025, limit=None) == []


def test_an_item_just_under_400kb_is_accepted(records: DynamoDBRecords) -> None:
    # The adapter's size estimate errs on the safe side of DynamoDB's own check
    data = {"b": "x" * (MAX_ITEM_BYTES - 100)}
    records.put(Record("p", "s", data), if_absent=False)
    assert records.get("p", "s").data == data  # type: ignore[union-attr]


# ---------------------------------------------------------------- exact requests (Stubber)


@pytest.fixture
def stubbed() -> Iterator[tuple[DynamoDBRecords, Stubber]]:
    import boto3

    with mocked_aws():  # only for the isolated dummy credentials: the Stubber answers
        client = boto3.client(
            "dynamodb", region_name=REGION, config=Config(retries={"max_attempts": 1})
        )
        with Stubber(client) as stubber:
            yield DynamoDBRecords(client, TABLE), stubber
            stubber.assert_no_pending_responses()


def test_get_is_a_consistent_get_item(stubbed: tuple[DynamoDBRecords, Stubber]) -> None:
    records, stubber = stubbed
    stubber.add_response(
        "get_item",
        {"Item": {**_KEY, "data": {"S": '{"v":1}'}}},
        {"TableName": TABLE, "Key": _KEY, "ConsistentRead": True},
    )
    assert records.get("p", "s") == Record("p", "s", {"v": 1}, None)


def test_put_if_absent_is_a_conditional_put_item(stubbed: tuple[DynamoDBRecords, Stubber]) -> None:
    records, stubber = stubbed
    item = {**_KEY, "data": {"S": '{"v":1}'}, "expires_at": {"N": "1900000000.0"}}
    stubber.add_response(
        "put_item",
        {},
        {
            "TableName": TABLE,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(pk) OR expires_at <= :now",
            "ExpressionAttributeValues": {":now": {"N": ANY}},
        },
    )
    stubber.add_client_error("put_item", "ConditionalCheckFailedException", http_status_code=400)
    records.put(Record("p", "s", {"v": 1}, expires_at=1900000000), if_absent=True)
    with pytest.raises(Conflict):
        records.put(Record("p", "s", {"v": 1}, expires_at=1900000000), if_absent=True)


def test_put_without_condition_is_a_plain_put_item(
    stubbed: tuple[DynamoDBRecords, Stubber],
) -> None:
    records, stubber = stubbed
    stubber.add_response(
        "put_item", {}, {"TableName": TABLE, "Item": {**_KEY, "data": {"S": "{}"}}}
    )
    records.put(Record("p", "s", {}), if_absent=False)


def test_query_requests_and_paging(stubbed: tuple[DynamoDBRecords, Stubber]) -> None:
    # Given a partition answered in two pages of which the first holds one live item
    records, stubber = stubbed

    def item(sk: str) -> dict[str, Any]:
        return {"pk": {"S": "p"}, "sk": {"S": sk}, "data": {"S": "{}"}}

    base = {
        "TableName": TABLE,
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
        "FilterExpression": "attribute_not_exists(expires_at) OR expires_at > :now",
        "ExpressionAttributeValues": {
            ":pk": {"S": "p"},
            ":prefix": {"S": "a#"},
            ":now": {"N": ANY},
        },
        "ConsistentRead": True,
        "ScanIndexForward": True,
    }
    last = {"pk": {"S": "p"}, "sk": {"S": "a#2"}}
    stubber.add_response(
        "query", {"Items": [item("a#1")], "LastEvaluatedKey": last}, {**base, "Limit": 2}
    )
    stubber.add_response(
        "query",
        {"Items": [item("a#3")], "LastEvaluatedKey": {"pk": {"S": "p"}, "sk": {"S": "a#3"}}},
        {**base, "Limit": 1, "ExclusiveStartKey": last},
    )
    # When two items are asked for
    got = records.query("p", "a#", limit=2)
    # Then the second request asked for the one still missing, after the first page, and the
    # adapter stopped once it had two
    assert [r.sk for r in got] == ["a#1", "a#3"]


def test_query_without_prefix_has_no_begins_with(
    stubbed: tuple[DynamoDBRecords, Stubber],
) -> None:
    records, stubber = stubbed
    stubber.add_response(
        "query",
        {"Items": []},
        {
            "TableName": TABLE,
            "KeyConditionExpression": "pk = :pk",
            "FilterExpression": "attribute_not_exists(expires_at) OR expires_at > :now",
            "ExpressionAttributeValues": {":pk": {"S": "p"}, ":now": {"N": ANY}},
            "ConsistentRead": True,
            "ScanIndexForward": True,
        },
    )
    assert records.query("p", "", limit=None) == []


def test_delete_returns_whether_an_item_was_there(
    stubbed: tuple[DynamoDBRecords, Stubber],
) -> None:
    records, stubber = stubbed
    expected = {"TableName": TABLE, "Key": _KEY, "ReturnValues": "ALL_OLD"}
    stubber.add_response("delete_item", {"Attributes": {**_KEY, "data": {"S": "{}"}}}, expected)
    stubber.add_response("delete_item", {}, expected)
    assert records.delete("p", "s") is True
    assert records.delete("p", "s") is False


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("ProvisionedThroughputExceededException", 400, Unavailable),
        ("ThrottlingException", 400, Unavailable),
        ("RequestLimitExceeded", 400, Unavailable),
        ("ResourceNotFoundException", 400, Upstream),
        ("AccessDeniedException", 400, Upstream),
        ("InternalServerError", 500, Upstream),
    ],
)
def test_service_errors_are_translated(
    stubbed: tuple[DynamoDBRecords, Stubber], code: str, status: int, error: type[Exception]
) -> None:
    records, stubber = stubbed
    for operation in ("get_item", "put_item", "put_item", "query", "delete_item"):
        stubber.add_client_error(operation, code, http_status_code=status)
    for call in (
        lambda: records.get("p", "s"),
        lambda: records.put(Record("p", "s", {}), if_absent=False),
        lambda: records.put(Record("p", "s", {}), if_absent=True),
        lambda: records.query("p", "", limit=None),
        lambda: records.delete("p", "s"),
    ):
        with pytest.raises(error) as caught:
            call()
        assert TABLE not in str(caught.value)  # messages are safe to show a client
