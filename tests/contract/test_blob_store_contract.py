"""Contract of the BlobStore port. Add adapters to STORES (S3 runs on moto, in process)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pytest

from pasture.adapters.local.file_blob_store import FileBlobStore
from pasture.domain.errors import Invalid, NotFound
from pasture.ports import BlobStore
from tests.helpers.aws import s3_blob_store

# Each factory gives a context manager: the store lives until the test ends.
STORES: dict[str, Callable[[Path], AbstractContextManager[BlobStore]]] = {
    "file": lambda d: nullcontext(FileBlobStore(d / "blobs")),
    "s3": lambda d: s3_blob_store(prefix="pasture"),
}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    with STORES[request.param](tmp_path) as store:
        yield store


def test_put_open_round_trip(store: BlobStore) -> None:
    assert store.put("a/b/c.bin", io.BytesIO(b"hello")) == 5
    with store.open("a/b/c.bin") as fh:
        assert fh.read() == b"hello"
    assert store.exists("a/b/c.bin")


def test_put_streams_large_objects(store: BlobStore) -> None:
    data = os.urandom(5 * 1024 * 1024 + 17)
    assert store.put("big", io.BytesIO(data)) == len(data)
    with store.open("big") as fh:
        assert fh.read() == data


def test_put_replaces(store: BlobStore) -> None:
    store.put("k", io.BytesIO(b"one"))
    store.put("k", io.BytesIO(b"two!"))
    with store.open("k") as fh:
        assert fh.read() == b"two!"


def test_open_missing_is_not_found(store: BlobStore) -> None:
    with pytest.raises(NotFound):
        store.open("nope/nothing")
    assert not store.exists("nope/nothing")


def test_delete(store: BlobStore) -> None:
    store.put("x/y", io.BytesIO(b"1"))
    assert store.delete("x/y") is True
    assert store.delete("x/y") is False
    assert not store.exists("x/y")


def test_delete_prefix_only_touches_the_prefix(store: BlobStore) -> None:
    for key in ["ds/1/a", "ds/1/b", "ds/12/c", "ds/2/d"]:
        store.put(key, io.BytesIO(b"x"))
    assert store.delete_prefix("ds/1/") == 2
    assert not store.exists("ds/1/a") and store.exists("ds/12/c") and store.exists("ds/2/d")


def test_a_failed_write_leaves_the_old_object(store: BlobStore) -> None:
    store.put("k", io.BytesIO(b"old"))

    class Broken(io.RawIOBase):
        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            raise OSError("client went away")

        def readable(self) -> bool:
            return True

    with pytest.raises(OSError):
        store.put("k", Broken())  # type: ignore[arg-type]
    with store.open("k") as fh:
        assert fh.read() == b"old"


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", ".."])
def test_unsafe_keys_are_refused(store: BlobStore, key: str) -> None:
    with pytest.raises(Invalid):
        store.put(key, io.BytesIO(b"x"))


def test_file_store_leaves_no_empty_directories(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    store.put("ds/1/a", io.BytesIO(b"x"))
    store.put("ds/2/b", io.BytesIO(b"x"))
    store.delete_prefix("ds/1/")
    assert not (tmp_path / "blobs" / "ds" / "1").exists()
    store.delete("ds/2/b")
    assert not (tmp_path / "blobs" / "ds").exists() and (tmp_path / "blobs").is_dir()
