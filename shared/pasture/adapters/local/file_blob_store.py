"""Blobs as files under a root directory, written atomically (temp file + rename)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from pasture.domain.errors import Invalid, NotFound
from pasture.ports import BlobStore

_COPY_BUFFER = 1024 * 1024


class FileBlobStore(BlobStore):
    def __init__(self, root: Path) -> None:
        self._root = root.resolve()
        self._root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise Invalid(f"invalid blob key {key!r}")
        return self._root.joinpath(*parts)

    def put(self, key: str, stream: BinaryIO) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(stream, out, _COPY_BUFFER)
                out.flush()
                os.fsync(out.fileno())
                size = out.tell()
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(f"blob {key!r} not found") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        self._prune(path.parent)
        return True

    def _prune(self, directory: Path) -> None:
        """Remove directories left empty, up to (not including) the root."""
        while directory != self._root and self._root in directory.parents:
            try:
                directory.rmdir()
            except OSError:  # not empty, or already gone
                return
            directory = directory.parent

    def delete_prefix(self, prefix: str) -> int:
        # Keys under a prefix live under the prefix's directory; match the rest by name.
        head, _, tail = prefix.rpartition("/")
        base = self._path(head) if head else self._root
        if not base.is_dir():
            return 0
        count = 0
        for entry in list(base.iterdir()):
            if not entry.name.startswith(tail) or entry.name.startswith(".tmp-"):
                continue
            if entry.is_dir():
                count += sum(1 for p in entry.rglob("*") if p.is_file())
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
                count += 1
        self._prune(base)
        return count
