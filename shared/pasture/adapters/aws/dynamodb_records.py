"""Records in one DynamoDB table: the access patterns the port was designed around.

Item layout (low-level client, typed attribute values):

    pk          S   partition key (HASH)
    sk          S   sort key (RANGE)
    data        S   the record's attributes as compact JSON text
    expires_at  N   epoch seconds, only on items that expire; the table's TTL attribute

Why `data` is one JSON string and not a DynamoDB map: the port promises that any JSON value
round-trips exactly, and a typed map cannot. DynamoDB refuses Python floats (boto3 wants
Decimal) and gives every number back as Decimal, so 1.0 and 1 come back the same and each
float would need a lossy guess to restore; it refuses NaN and infinities and numbers beyond 38
digits; and attribute names count towards the item size in every nested map. The JSON text is
exactly what SqliteRecords stores (json.dumps / json.loads), so both adapters hand back the
same values. The cost: `data` cannot be filtered or projected server-side, which the port never
does (it reads whole items by key or key prefix).

Limits the port does not have, checked here before any request: DynamoDB refuses empty strings
in key attributes, partition keys over 2048 bytes, sort keys over 1024 bytes and items over
400 KB. `put` raises Invalid for those; `get`/`delete`/`query` answer "nothing there", which is
true since no such item can exist.

Expiry: DynamoDB TTL deletes expired items lazily (typically within days), so every read filters
them too (a FilterExpression on queries, a check on GetItem), a conditional put treats an expired
item as absent, and `query` keeps paging until it has `limit` live items. Reads are strongly
consistent, so a write is visible to the next read, as with SQLite. No Scan anywhere.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pasture.adapters.aws.errors import error_code, translate
from pasture.domain.errors import Conflict, Invalid
from pasture.ports import Record, Records

TTL_ATTRIBUTE = "expires_at"
# DynamoDB's limit is 400 KB (409,600 bytes, attribute names included); stay at 400,000 to
# leave a margin for how it counts (moto refuses above 405,000).
MAX_ITEM_BYTES = 400_000
_MAX_PK_BYTES = 2048
_MAX_SK_BYTES = 1024
# An item's size counts attribute names and values; a number takes at most 21 bytes.
_OVERHEAD = len("pk") + len("sk") + len("data") + len(TTL_ATTRIBUTE) + 21

# A live item: no expiry, or one still in the future (expired means expires_at <= now, the same
# boundary as SqliteRecords and InMemoryRecords).
_LIVE = "attribute_not_exists(expires_at) OR expires_at > :now"
_ABSENT_OR_EXPIRED = "attribute_not_exists(pk) OR expires_at <= :now"


def _utf8_len(text: str) -> int | None:
    """Bytes of `text` in UTF-8; None when it cannot be encoded (lone surrogates)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def _key_ok(pk: str, sk: str) -> bool:
    pk_len, sk_len = _utf8_len(pk), _utf8_len(sk)
    return bool(pk_len and sk_len and pk_len <= _MAX_PK_BYTES and sk_len <= _MAX_SK_BYTES)


def _number(value: float) -> str:
    if not math.isfinite(value):
        raise Invalid(f"expires_at must be a finite number, not {value!r}")
    return repr(float(value))


def _encode_data(record: Record) -> str:
    """Compact JSON; non-ASCII kept as UTF-8 (half the bytes of \\u escapes, which count
    against the 400 KB) unless the text holds lone surrogates, which only escapes can carry."""
    data = dict(record.data)
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    if _utf8_len(text) is None:
        text = json.dumps(data, separators=(",", ":"))
    return text


class DynamoDBRecords(Records):
    """`client` is a boto3 DynamoDB client (typed Any: boto3 ships no type hints)."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def _call(self, operation: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(TableName=self._table, **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, "DynamoDB", operation) from exc

    @staticmethod
    def _record(item: dict[str, Any]) -> Record:
        expires = item.get(TTL_ATTRIBUTE)
        return Record(
            item["pk"]["S"],
            item["sk"]["S"],
            json.loads(item["data"]["S"]),
            None if expires is None else float(expires["N"]),
        )

    def get(self, pk: str, sk: str) -> Record | None:
        if not _key_ok(pk, sk):
            return None
        got = self._call(
            "GetItem",
            self._client.get_item,
            Key={"pk": {"S": pk}, "sk": {"S": sk}},
            ConsistentRead=True,
        )
        item = got.get("Item")
        if item is None:
            return None
        record = self._record(item)
        if record.expires_at is not None and record.expires_at <= time.time():
            return None  # expired, not yet removed by TTL
        return record

    def put(self, record: Record, *, if_absent: bool) -> None:
        if not _key_ok(record.pk, record.sk):
            raise Invalid(
                "record keys must be non-empty UTF-8, at most 2048 (partition) and 1024 (sort)"
                " bytes"
            )
        data = _encode_data(record)
        item: dict[str, Any] = {
            "pk": {"S": record.pk},
            "sk": {"S": record.sk},
            "data": {"S": data},
        }
        if record.expires_at is not None:
            item[TTL_ATTRIBUTE] = {"N": _number(record.expires_at)}
        size = _OVERHEAD + len(record.pk.encode()) + len(record.sk.encode()) + len(data.encode())
        if size > MAX_ITEM_BYTES:
            raise Invalid(f"record {record.sk!r} is too large to store ({size} bytes)")
        if not if_absent:
            self._call("PutItem", self._client.put_item, Item=item)
            return
        try:
            self._client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression=_ABSENT_OR_EXPIRED,
                ExpressionAttributeValues={":now": {"N": _number(time.time())}},
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise Conflict(f"record {record.pk}/{record.sk} already exists") from None
            raise translate(exc, "DynamoDB", "PutItem") from exc
        except BotoCoreError as exc:
            raise translate(exc, "DynamoDB", "PutItem") from exc

    def query(self, pk: str, sk_prefix: str, *, limit: int | None) -> list[Record]:
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        if limit == 0 or not _key_ok(pk, sk_prefix or "x"):
            return []  # no item can have such keys
        values: dict[str, Any] = {":pk": {"S": pk}, ":now": {"N": _number(time.time())}}
        condition = "pk = :pk"
        if sk_prefix:
            condition += " AND begins_with(sk, :prefix)"
            values[":prefix"] = {"S": sk_prefix}
        request: dict[str, Any] = {
            "KeyConditionExpression": condition,
            "FilterExpression": _LIVE,
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
            "ScanIndexForward": True,
        }
        records: list[Record] = []
        # Limit caps the items a page *evaluates* (before the filter), and a page stops at
        # 1 MB anyway, so keep paging until enough live items or the end of the partition.
        while True:
            if limit is not None:
                request["Limit"] = limit - len(records)
            page = self._call("Query", self._client.query, **request)
            records.extend(self._record(item) for item in page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if last is None or (limit is not None and len(records) >= limit):
                break
            request["ExclusiveStartKey"] = last
        return records if limit is None else records[:limit]

    def delete(self, pk: str, sk: str) -> bool:
        if not _key_ok(pk, sk):
            return False
        gone = self._call(
            "DeleteItem",
            self._client.delete_item,
            Key={"pk": {"S": pk}, "sk": {"S": sk}},
            ReturnValues="ALL_OLD",
        )
        return "Attributes" in gone


def create_table(client: Any, table_name: str) -> None:
    """Create the Records table as the adapter expects it: (pk HASH, sk RANGE) strings,
    on-demand capacity, TTL on `expires_at`. Waits until the table is active. For tests,
    local tooling and the docs; the CDK stack declares the same table."""
    try:
        client.create_table(
            TableName=table_name,
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        client.get_waiter("table_exists").wait(TableName=table_name)
        client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )
    except ClientError as exc:
        if error_code(exc) == "ResourceInUseException":
            raise Conflict(f"table {table_name!r} already exists") from None
        raise translate(exc, "DynamoDB", "CreateTable") from exc
    except BotoCoreError as exc:
        raise translate(exc, "DynamoDB", "CreateTable") from exc
