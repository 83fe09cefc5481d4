"""Blobs in one S3 bucket, under an optional key prefix, encrypted at rest.

- `put` streams: it holds at most one part (PART_SIZE) of the object in memory. An object that
  fits in one part is one PutObject; a larger one is a multipart upload, completed only once
  every part is in, so readers see the old object or the new one (S3 replaces atomically), and
  aborted when the stream or a request fails (the old object stays). A bucket lifecycle rule
  `AbortIncompleteMultipartUpload` should clean up uploads a killed process could not abort.
- Every write asks for server-side encryption: SSE-KMS with `kms_key_id` (and an S3 Bucket Key,
  which cuts KMS calls), SSE-S3 (AES256) without one.
- `presigned_url` (S3 only, not on the port) signs a time-limited GET of one object, so a client
  can download a document straight from S3 without the bytes passing through a Lambda.

Keys are checked exactly like FileBlobStore checks them (Invalid), so a key that works on one
works on the other. botocore errors are translated at this boundary (adapters/aws/errors.py).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from pasture.adapters.aws.errors import error_code, translate
from pasture.domain.errors import Invalid, NotFound, Upstream
from pasture.ports import BlobStore

# Part size of multipart uploads, and the largest object sent as one PutObject. S3 wants parts of
# at least 5 MiB (but the last) and at most 10,000 of them: 8 MiB parts allow ~78 GiB objects.
PART_SIZE = 8 * 1024 * 1024
MAX_PARTS = 10_000
# DeleteObjects takes at most 1000 keys; ListObjectsV2 pages hold at most 1000.
DELETE_BATCH = 1000
# SigV4 presigned URLs live at most 7 days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
_MAX_KEY_BYTES = 1024
_READ_BUFFER = 1024 * 1024
_NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404"})
# Checksums botocore computes for an uploaded part; CompleteMultipartUpload must repeat them.
_PART_CHECKSUMS = (
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumCRC64NVME",
    "ChecksumSHA1",
    "ChecksumSHA256",
)


def _check_key(key: str) -> None:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise Invalid(f"invalid blob key {key!r}")


def _read_part(stream: BinaryIO, size: int) -> bytearray:
    """Up to `size` bytes: fewer only at the end of the stream (reads may come back short)."""
    buf = bytearray()
    while len(buf) < size:
        chunk = stream.read(size - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


class _BodyReader(io.RawIOBase):
    """A botocore StreamingBody as a raw binary file; read errors become Pasture errors."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        try:
            data = self._body.read(len(view))
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, "S3", "GetObject") from exc
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _presign_with_sigv4(signature_version: str, **_: Any) -> str | None:
    # Unless the client's config names a signature version, botocore presigns S3 URLs with
    # SigV2 in the regions that still accept it (us-east-1 among them). S3 refuses SigV2 for
    # SSE-KMS objects, and SigV2 is deprecated: always presign with SigV4.
    return "s3v4-query" if signature_version in ("v4-query", "s3v4-query") else None


class S3BlobStore(BlobStore):
    """`client` is a boto3 S3 client (typed Any: boto3 ships no type hints). The store adds one
    event handler to it, so that its presigned GetObject URLs are SigV4 (see above)."""

    def __init__(
        self, client: Any, bucket: str, *, prefix: str = "", kms_key_id: str | None = None
    ) -> None:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        if prefix:
            _check_key(prefix[:-1])
        self._client = client
        client.meta.events.register_first(
            "choose-signer.s3.GetObject", _presign_with_sigv4, unique_id="pasture-presign-sigv4"
        )
        self._bucket = bucket
        self._prefix = prefix
        self._sse: dict[str, Any] = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id, "BucketKeyEnabled": True}
            if kms_key_id
            else {"ServerSideEncryption": "AES256"}
        )

    # ------------------------------------------------------------------ helpers

    def _name(self, key: str) -> str:
        _check_key(key)
        name = self._prefix + key
        try:
            too_long = len(name.encode("utf-8")) > _MAX_KEY_BYTES
        except UnicodeEncodeError:
            raise Invalid(f"invalid blob key {key!r}") from None
        if too_long:
            raise Invalid(f"blob key {key!r} is longer than S3 allows")
        return name

    def _call(self, operation: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(Bucket=self._bucket, **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, "S3", operation) from exc

    # ------------------------------------------------------------------ port

    def put(self, key: str, stream: BinaryIO) -> int:
        name = self._name(key)
        first = _read_part(stream, PART_SIZE)
        if len(first) < PART_SIZE:
            self._call("PutObject", self._client.put_object, Key=name, Body=first, **self._sse)
            return len(first)
        return self._put_multipart(name, first, stream)

    def _put_multipart(self, name: str, first: bytearray, stream: BinaryIO) -> int:
        upload = self._call(
            "CreateMultipartUpload", self._client.create_multipart_upload, Key=name, **self._sse
        )
        upload_id = upload["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            size = 0
            part = first
            while part:
                number = len(parts) + 1
                if number > MAX_PARTS:
                    raise Invalid(f"blob is larger than {MAX_PARTS * PART_SIZE} bytes")
                sent = self._call(
                    "UploadPart",
                    self._client.upload_part,
                    Key=name,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=part,
                )
                done = {"PartNumber": number, "ETag": sent["ETag"]}
                done.update({k: sent[k] for k in _PART_CHECKSUMS if k in sent})
                parts.append(done)
                size += len(part)
                part = _read_part(stream, PART_SIZE)
            self._call(
                "CompleteMultipartUpload",
                self._client.complete_multipart_upload,
                Key=name,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            # If the abort fails too, the lifecycle rule reaps the upload; the original error
            # is the one to report.
            with contextlib.suppress(BotoCoreError, ClientError):
                self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=name, UploadId=upload_id
                )
            raise
        return size

    def open(self, key: str) -> BinaryIO:
        name = self._name(key)
        try:
            got = self._client.get_object(Bucket=self._bucket, Key=name)
        except ClientError as exc:
            if error_code(exc) in _NOT_FOUND:
                raise NotFound(f"blob {key!r} not found") from None
            raise translate(exc, "S3", "GetObject") from exc
        except BotoCoreError as exc:
            raise translate(exc, "S3", "GetObject") from exc
        return io.BufferedReader(_BodyReader(got["Body"]), _READ_BUFFER)

    def exists(self, key: str) -> bool:
        name = self._name(key)
        try:
            self._client.head_object(Bucket=self._bucket, Key=name)
        except ClientError as exc:
            if error_code(exc) in _NOT_FOUND:
                return False
            raise translate(exc, "S3", "HeadObject") from exc
        except BotoCoreError as exc:
            raise translate(exc, "S3", "HeadObject") from exc
        return True

    def delete(self, key: str) -> bool:
        # DeleteObject succeeds whether or not the key exists and does not say which, so ask
        # first. Two concurrent deletes of one key may both answer True.
        if not self.exists(key):
            return False
        self._call("DeleteObject", self._client.delete_object, Key=self._name(key))
        return True

    def delete_prefix(self, prefix: str) -> int:
        # Like FileBlobStore: every complete segment must be a valid key segment; the last,
        # partial one matches key names that start with it ("ds/1" matches "ds/12/x").
        head, _, _ = prefix.rpartition("/")
        if prefix.startswith("/"):
            raise Invalid(f"invalid blob prefix {prefix!r}")
        if head:
            _check_key(head)
        full = self._prefix + prefix
        count = 0
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=full, PaginationConfig={"PageSize": DELETE_BATCH}
            )
            # Delete page by page: the continuation token is positional, so deleting the keys
            # already listed does not disturb the listing.
            for page in pages:
                names = [obj["Key"] for obj in page.get("Contents", [])]
                for i in range(0, len(names), DELETE_BATCH):
                    count += self._delete_batch(names[i : i + DELETE_BATCH])
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, "S3", "ListObjectsV2") from exc
        return count

    def _delete_batch(self, names: list[str]) -> int:
        answer = self._call(
            "DeleteObjects",
            self._client.delete_objects,
            Delete={"Objects": [{"Key": n} for n in names], "Quiet": True},
        )
        errors = answer.get("Errors", [])
        if errors:
            raise Upstream(
                f"S3 DeleteObjects failed for {len(errors)} objects ({errors[0].get('Code')})"
            )
        return len(names)

    # ------------------------------------------------------------------ S3 only

    def presigned_url(self, key: str, expires_seconds: int) -> str:
        """A URL that GETs this object without credentials for `expires_seconds` (1 s to 7
        days). It is signed locally: it does not check that the object exists (the URL then
        answers 404), and it stops working early if the signing credentials expire first
        (a Lambda role's session credentials last hours, not days)."""
        if not 1 <= expires_seconds <= MAX_PRESIGN_SECONDS:
            raise Invalid(f"expires_seconds must be between 1 and {MAX_PRESIGN_SECONDS}")
        name = self._name(key)
        try:
            url: str = self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self._bucket, "Key": name},
                ExpiresIn=expires_seconds,
            )
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, "S3", "presign GetObject") from exc
        return url
