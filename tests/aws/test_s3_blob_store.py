"""S3BlobStore beyond the BlobStore contract: encryption, multipart streaming, presigned URLs,
large prefix deletes and error translation. moto in process; no network, no real AWS."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from pasture.adapters.aws.s3_blob_store import PART_SIZE, S3BlobStore
from pasture.domain.errors import Invalid, NotFound, Unavailable, Upstream
from tests.helpers.aws import BUCKET, REGION, mocked_aws, s3_client

# Position-dependent content with a period (251, prime) that no part size divides, so a
# dropped, repeated or reordered part changes the digest.
_PERIOD = bytes(i * 7 % 251 for i in range(251))


@pytest.fixture
def s3() -> Iterator[Any]:
    with s3_client() as client:
        yield client


def _calls(client: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every S3 operation the client sends from now on, with its parameters."""
    seen: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        seen.append((model.name, dict(params)))

    client.meta.events.register("before-parameter-build.s3", record)
    return seen


class _GeneratedStream:
    """`size` deterministic bytes made on demand: fails a read with no size (which would pull
    the whole object into memory) and remembers the largest read; optionally breaks after
    `fail_after` bytes like a client that went away."""

    def __init__(self, size: int, fail_after: int | None = None) -> None:
        self.size = size
        self.pos = 0
        self.largest_read = 0
        self.fail_after = fail_after

    def read(self, n: int | None = -1) -> bytes:
        assert n is not None and n >= 0, "read() without a size reads the whole stream"
        self.largest_read = max(self.largest_read, n)
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise OSError("client went away")
        n = min(n, self.size - self.pos)
        start = self.pos % len(_PERIOD)
        out = (_PERIOD * ((start + n) // len(_PERIOD) + 1))[start : start + n]
        self.pos += n
        return out


def _digest_of_generated(size: int) -> str:
    return hashlib.sha256(_read_all(_GeneratedStream(size))).hexdigest()


def _read_all(stream: Any, chunk: int = 1024 * 1024) -> bytes:
    out = bytearray()
    while piece := stream.read(chunk):
        out += piece
    return bytes(out)


def test_every_write_asks_for_sse_s3_by_default(s3: Any) -> None:
    # Given a store without a KMS key
    store = S3BlobStore(s3, BUCKET)
    calls = _calls(s3)
    # When a small and a multipart object are written
    store.put("small", io.BytesIO(b"x"))
    store.put("large", _GeneratedStream(PART_SIZE + 1))  # type: ignore[arg-type]
    # Then every creating request asked for AES256, and S3 reports both encrypted
    writes = [p for op, p in calls if op in ("PutObject", "CreateMultipartUpload")]
    assert len(writes) == 2
    assert all(p["ServerSideEncryption"] == "AES256" for p in writes)
    for key in ("small", "large"):
        assert s3.head_object(Bucket=BUCKET, Key=key)["ServerSideEncryption"] == "AES256"


def test_with_a_kms_key_every_write_uses_sse_kms(s3: Any) -> None:
    # Given a store with a customer-managed KMS key
    import boto3

    key_id = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["KeyId"]
    store = S3BlobStore(s3, BUCKET, kms_key_id=key_id)
    calls = _calls(s3)
    # When a small and a multipart object are written
    store.put("small", io.BytesIO(b"x"))
    store.put("large", _GeneratedStream(PART_SIZE + 1))  # type: ignore[arg-type]
    # Then both requests named the key, and S3 reports aws:kms with it
    writes = [p for op, p in calls if op in ("PutObject", "CreateMultipartUpload")]
    assert [(p["ServerSideEncryption"], p["SSEKMSKeyId"]) for p in writes] == [
        ("aws:kms", key_id)
    ] * 2
    for key in ("small", "large"):
        head = s3.head_object(Bucket=BUCKET, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert key_id in head["SSEKMSKeyId"]


def test_a_large_stream_goes_up_in_parts_without_being_read_whole(s3: Any) -> None:
    # Given a store and a 17 MiB stream that refuses unbounded reads
    store = S3BlobStore(s3, BUCKET, prefix="p")
    size = 2 * PART_SIZE + 12345
    stream = _GeneratedStream(size)
    calls = _calls(s3)
    # When it is stored
    assert store.put("big/object", stream) == size  # type: ignore[arg-type]
    # Then it went up as a 3-part upload, read one part at a time at most
    ops = [op for op, _ in calls]
    assert ops == [
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPart",
        "UploadPart",
        "CompleteMultipartUpload",
    ]
    assert stream.largest_read <= PART_SIZE
    head = s3.head_object(Bucket=BUCKET, Key="p/big/object")
    assert head["ContentLength"] == size and head["ETag"].strip('"').endswith("-3")
    # And it reads back byte for byte, in chunks
    with store.open("big/object") as fh:
        assert hashlib.sha256(_read_all(fh)).hexdigest() == _digest_of_generated(size)


def test_a_stream_failing_mid_upload_aborts_it_and_keeps_the_old_object(s3: Any) -> None:
    # Given an object, and a new version whose stream breaks after the first part
    store = S3BlobStore(s3, BUCKET)
    store.put("k", io.BytesIO(b"old"))
    stream = _GeneratedStream(3 * PART_SIZE, fail_after=PART_SIZE + 1)
    # When it replaces the object
    with pytest.raises(OSError, match="went away"):
        store.put("k", stream)  # type: ignore[arg-type]
    # Then the old object is intact and no multipart upload is left behind
    with store.open("k") as fh:
        assert fh.read() == b"old"
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_an_object_of_exactly_one_part_round_trips(s3: Any) -> None:
    store = S3BlobStore(s3, BUCKET)
    assert store.put("edge", _GeneratedStream(PART_SIZE)) == PART_SIZE  # type: ignore[arg-type]
    with store.open("edge") as fh:
        assert hashlib.sha256(_read_all(fh)).hexdigest() == _digest_of_generated(PART_SIZE)


def test_the_prefix_scopes_every_operation(s3: Any) -> None:
    # Given two stores on one bucket with different prefixes
    a = S3BlobStore(s3, BUCKET, prefix="tenant-a/")
    b = S3BlobStore(s3, BUCKET, prefix="tenant-b")
    a.put("doc", io.BytesIO(b"a"))
    b.put("doc", io.BytesIO(b"b"))
    # When one deletes everything it has
    assert a.delete_prefix("") == 1
    # Then the other's object is untouched, and keys carry the prefix in the bucket
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == ["tenant-b/doc"]
    assert not a.exists("doc") and b.exists("doc")


def test_presigned_url_shape(s3: Any) -> None:
    # Given a stored object
    store = S3BlobStore(s3, BUCKET, prefix="p")
    store.put("datasets/d1/f1", io.BytesIO(b"x"))
    # When a 5-minute download URL is signed
    url = urlsplit(store.presigned_url("datasets/d1/f1", 300))
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    # Then it is a SigV4 GET URL for exactly that object
    assert url.scheme == "https"
    assert BUCKET in url.netloc + url.path and url.path.endswith("/p/datasets/d1/f1")
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Expires"] == "300"
    assert query["X-Amz-Credential"].endswith(f"/{REGION}/s3/aws4_request")
    assert len(query["X-Amz-Signature"]) == 64
    assert "X-Amz-Security-Token" in query  # session credentials travel with the URL


@pytest.mark.parametrize("config", [None, Config(signature_version="s3v4")])
def test_presigned_urls_are_sigv4_whatever_the_client_config(config: Config | None) -> None:
    # botocore presigns with SigV2 in us-east-1 unless the config names a version; S3 refuses
    # SigV2 for SSE-KMS objects, so the store always presigns with SigV4.
    import boto3

    with mocked_aws():
        client = boto3.client("s3", region_name=REGION, config=config)
        url = S3BlobStore(client, BUCKET).presigned_url("k", 60)
        assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "AWSAccessKeyId" not in url
        # An ordinary request on the same client still works (only presigns are affected)
        client.create_bucket(Bucket=BUCKET)
        assert client.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


@pytest.mark.parametrize("seconds", [0, -1, 7 * 24 * 3600 + 1])
def test_presigned_url_refuses_out_of_range_lifetimes(s3: Any, seconds: int) -> None:
    with pytest.raises(Invalid):
        S3BlobStore(s3, BUCKET).presigned_url("k", seconds)


def test_presigned_url_refuses_unsafe_keys(s3: Any) -> None:
    with pytest.raises(Invalid):
        S3BlobStore(s3, BUCKET).presigned_url("a/../b", 60)


def test_delete_prefix_over_more_than_one_batch(s3: Any) -> None:
    # Given 1050 objects under a prefix and one beside it (written directly: quicker)
    store = S3BlobStore(s3, BUCKET)
    for i in range(1050):
        s3.put_object(Bucket=BUCKET, Key=f"ds/1/{i:05d}", Body=b"")
    s3.put_object(Bucket=BUCKET, Key="ds/10", Body=b"")
    calls = _calls(s3)
    # When the prefix is deleted
    assert store.delete_prefix("ds/1/") == 1050
    # Then it took two DeleteObjects batches (1000 + 50) and left the neighbour
    batches = [len(p["Delete"]["Objects"]) for op, p in calls if op == "DeleteObjects"]
    assert batches == [1000, 50]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == ["ds/10"]


def test_delete_prefix_refuses_unsafe_prefixes(s3: Any) -> None:
    store = S3BlobStore(s3, BUCKET)
    for prefix in ("/abs", "a/../", "a//b"):
        with pytest.raises(Invalid):
            store.delete_prefix(prefix)


def test_open_streams_in_chunks_and_closes(s3: Any) -> None:
    store = S3BlobStore(s3, BUCKET)
    store.put("k", io.BytesIO(b"0123456789"))
    fh = store.open("k")
    assert fh.read(4) == b"0123" and fh.read() == b"456789" and fh.read() == b""
    fh.close()
    assert fh.closed


# ---------------------------------------------------------------- error translation (stubbed)


@pytest.fixture
def stubbed() -> Iterator[tuple[S3BlobStore, Stubber]]:
    import boto3

    with mocked_aws():  # only for the isolated dummy credentials: the Stubber answers
        client = boto3.client("s3", region_name=REGION, config=Config(retries={"max_attempts": 1}))
        with Stubber(client) as stubber:
            yield S3BlobStore(client, BUCKET), stubber
            stubber.assert_no_pending_responses()


def test_missing_object_is_not_found(stubbed: tuple[S3BlobStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_client_error("get_object", "NoSuchKey", http_status_code=404)
    stubber.add_client_error("head_object", "404", http_status_code=404)
    with pytest.raises(NotFound):
        store.open("k")
    assert store.exists("k") is False


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("SlowDown", 503, Unavailable),
        ("ServiceUnavailable", 503, Unavailable),
        ("AccessDenied", 403, Upstream),
        ("NoSuchBucket", 404, Upstream),
        ("InternalError", 500, Upstream),
    ],
)
def test_service_errors_are_translated(
    stubbed: tuple[S3BlobStore, Stubber], code: str, status: int, error: type[Exception]
) -> None:
    store, stubber = stubbed
    stubber.add_client_error("head_object", code, http_status_code=status)
    with pytest.raises(error) as caught:
        store.exists("k")
    assert BUCKET not in str(caught.value)  # messages are safe to show a client


def test_connection_failures_are_unavailable(s3: Any) -> None:
    # Given a client whose requests cannot reach S3
    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://s3.example")

    s3.meta.events.register_first("before-call.s3", unreachable)
    store = S3BlobStore(s3, BUCKET)
    # Then every operation says the backend is unavailable
    with pytest.raises(Unavailable):
        store.exists("k")
    with pytest.raises(Unavailable):
        store.put("k", io.BytesIO(b"x"))
