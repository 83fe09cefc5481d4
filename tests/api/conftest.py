"""One app per test module (the model loads once); tests use unique names to stay apart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pasture.api.app import create_app
from pasture.config import Settings
from tests.helpers.llamafarm import LF


def keyed_settings(
    data_dir: Path, model_cache: Path, keys: dict[str, str], **kw: object
) -> Settings:
    return Settings(
        data_dir=data_dir,
        model_cache_dir=model_cache,
        api_keys=",".join(f"{k}:{v}" for k, v in keys.items()),
        # Chat models load on first use here: most API modules never chat.
        chat_preload=False,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, api_keys: dict[str, str]
) -> Iterator[TestClient]:
    s = keyed_settings(tmp_path_factory.mktemp("data"), model_cache, api_keys)
    with TestClient(create_app(settings=s), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def alice(client: TestClient, api_keys: dict[str, str]) -> LF:
    return LF(client, {"Authorization": f"Bearer {api_keys['alice']}"})


@pytest.fixture
def bob(client: TestClient, api_keys: dict[str, str]) -> LF:
    return LF(client, {"X-Api-Key": api_keys["bob"]})
