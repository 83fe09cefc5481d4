"""Settings parsing and the authenticator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from pasture.config import Settings, parse_api_keys
from pasture.domain.errors import Unauthorized
from pasture.services.tenancy import Authenticator


def test_key_formats() -> None:
    assert parse_api_keys("a:1, b:2") == {"a": "1", "b": "2"}
    assert parse_api_keys('{"a": "1"}') == {"a": "1"}
    assert parse_api_keys('{"Consumer": {"ApiKeys": {"web": "s3"}}}') == {"web": "s3"}
    assert parse_api_keys("") == {}
    with pytest.raises(ValueError):
        parse_api_keys("no-colon")
    with pytest.raises(ValueError):
        parse_api_keys('{"a": 1}')


def test_keys_file_in_llamachat_shape(tmp_path: Path) -> None:
    f = tmp_path / "appsettings.secrets.json"
    f.write_text(json.dumps({"Consumer": {"ApiKeys": {"mobile": "m-secret"}}}))
    s = Settings(data_dir=tmp_path, api_keys="web:w-secret", api_keys_file=f)
    assert s.consumer_keys() == {"web": "w-secret", "mobile": "m-secret"}
    assert not s.open_mode


def test_settings_fail_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, default_chunk_size=50, default_chunk_overlap=60)
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, api_keys="broken")
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(data_dir=tmp_path, backend="aws", api_keys="prod:changeme")
    monkeypatch.setenv("PASTURE_PORT", "70000")
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path)


def test_data_dir_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PASTURE_DATA_DIR", str(tmp_path / "d"))
    assert Settings().data_dir == tmp_path / "d"
    monkeypatch.delenv("PASTURE_DATA_DIR")
    assert Settings().data_dir == Path.home() / ".pasture"


def test_authenticator() -> None:
    auth = Authenticator({"alice": "a-key", "bob": "b-key"}, open_tenant="local")
    assert auth.tenant_for("a-key") == "alice" and auth.tenant_for("b-key") == "bob"
    for bad in (None, "", "a-key ", "nope"):
        with pytest.raises(Unauthorized):
            auth.tenant_for(bad)
    assert Authenticator({}, open_tenant="local").tenant_for(None) == "local"


def test_authenticator_keeps_no_plaintext() -> None:
    auth = Authenticator({"alice": "very-secret-value"}, open_tenant="local")
    assert "very-secret-value" not in repr(vars(auth))
