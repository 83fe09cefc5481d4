"""SageMakerEmbedder: all-MiniLM-L6-v2 computed by Pasture's GPU container.

Interchangeable with the local OnnxEmbedder (an index built by one is queried by the other):
the container's router runs the very same computation, `OnnxEmbedder` itself, on the same
ONNX graph built by `pasture.adapters.local.minilm_onnx` from the same packaged weights, the
same tokenizer settings and batching, only with onnxruntime's CUDA provider in front of the
CPU one (tests/aws/test_inference_router.py holds the two to 1e-5). Vectors come back as
little-endian float32 bytes (base64), so nothing is rounded on the way.

Texts go in requests of at most `batch_size` texts and `max_request_bytes` of JSON (a single
text bigger than that goes alone; InvokeEndpoint refuses bodies over 6 MB). Blocking, like
the port: services call it from worker threads.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from pasture.adapters.aws.sagemaker_runtime import (
    CONTENT_JSON,
    MAX_PAYLOAD_BYTES,
    TASK_EMBED,
    ModelFailure,
    SageMakerEndpoint,
)
from pasture.domain.errors import Unavailable, Upstream
from pasture.domain.search import Vector
from pasture.ports import Embedder

WHAT = "the SageMaker embedding model"


class SageMakerEmbedder(Embedder):
    name = "all-MiniLM-L6-v2"
    dimension = 384

    def __init__(
        self,
        client: Any,
        endpoint: str,
        *,
        batch_size: int = 64,
        max_request_bytes: int = MAX_PAYLOAD_BYTES // 2,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.batch_size = batch_size
        self.max_request_bytes = max_request_bytes
        self._endpoint = SageMakerEndpoint(client, endpoint)

    def embed(self, texts: Sequence[str]) -> Vector:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        done = 0
        for batch in self._batches(texts):
            out[done : done + len(batch)] = self._embed_batch(batch)
            done += len(batch)
        return out

    def _batches(self, texts: Sequence[str]) -> Iterator[list[str]]:
        batch: list[str] = []
        size = 0
        for text in texts:
            # JSON-escaped size: what the request body will really hold.
            n = len(json.dumps(text).encode()) + 2
            if batch and (len(batch) >= self.batch_size or size + n > self.max_request_bytes):
                yield batch
                batch, size = [], 0
            batch.append(text)
            size += n
        if batch:
            yield batch

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        body = json.dumps({"task": TASK_EMBED, "texts": texts}).encode()
        try:
            raw = self._endpoint.invoke(body, CONTENT_JSON)
        except ModelFailure as e:
            if e.status == 503:
                raise Unavailable(f"{WHAT} is unavailable: {e.message}") from e
            raise Upstream(f"{WHAT} answered HTTP {e.status}: {e.message}") from e
        try:
            data = json.loads(raw)
            shape = tuple(data["shape"])
            if data.get("dtype") != "float32" or shape != (len(texts), self.dimension):
                raise ValueError(f"unexpected {data.get('dtype')} {shape}")
            vectors = np.frombuffer(base64.b64decode(data["data"], validate=True), dtype="<f4")
            vectors = vectors.reshape(shape).astype(np.float32)
        except (ValueError, KeyError, TypeError) as e:
            raise Upstream(f"{WHAT} answered something that is not {len(texts)} vectors") from e
        if not np.all(np.isfinite(vectors)):
            raise Upstream(f"{WHAT} answered vectors that are not finite")
        return vectors
