"""Consumer keys (`pasture keys`): made once, stored only as digests, found by digest,
revoked one by one or all; the Authenticator's open mode counts them; the LlamaChat secrets
file in the data dir is read."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pasture.config import Settings
from pasture.domain.errors import Invalid, NotFound, Unauthorized
from pasture.services import keys
from pasture.services.consumer_keys import ConsumerKeyService
from pasture.services.tenancy import Authenticator
from tests.helpers.fakes import InMemoryRecords


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def test_create_find_list_revoke() -> None:
    records = InMemoryRecords()
    svc = ConsumerKeyService(records)
    assert not svc.any()
    a1 = svc.create("mobile-app")
    a2 = svc.create("mobile-app")
    z = svc.create("zapier")
    assert a1.secret and a1.secret != a2.secret and a1.secret.startswith("pst-")
    assert svc.any()
    assert svc.tenant_for_key(digest(a1.secret)) == "mobile-app"
    assert svc.tenant_for_key(digest(z.secret or "")) == "zapier"
    assert svc.tenant_for_key(digest("pst-unknown")) is None
    # Nothing stored holds a secret in clear.
    stored = json.dumps(
        [
            r.data
            for pk in (keys.CONSUMERS, keys.CONSUMER_KEYS)
            for r in records.query(pk, "", limit=None)
        ]
    )
    assert a1.secret not in stored and z.secret not in stored
    listed = svc.listed()
    assert [(k.consumer, k.secret) for k in listed].count(("mobile-app", None)) == 2
    assert [k.consumer for k in svc.listed("zapier")] == ["zapier"]

    assert svc.revoke("mobile-app", a1.key_id) == 1
    assert svc.tenant_for_key(digest(a1.secret)) is None
    assert svc.tenant_for_key(digest(a2.secret or "")) == "mobile-app"
    assert svc.revoke("mobile-app") == 1
    with pytest.raises(NotFound):
        svc.revoke("mobile-app")
    with pytest.raises(NotFound):
        svc.revoke("zapier", "00000000")
    assert [k.consumer for k in svc.listed()] == ["zapier"]


@pytest.mark.parametrize("name", ["", "has space", "-dash-first", "a" * 65, "x#y"])
def test_bad_names(name: str) -> None:
    with pytest.raises(Invalid):
        ConsumerKeyService(InMemoryRecords()).create(name)


def test_authenticator_with_stored_keys_is_not_open() -> None:
    svc = ConsumerKeyService(InMemoryRecords())
    key = svc.create("web")
    auth = Authenticator({}, open_tenant="local", lookup=svc.tenant_for_key, stored_keys=svc.any())
    assert not auth.open_mode
    assert auth.tenant_for(key.secret) == "web"
    with pytest.raises(Unauthorized):
        auth.tenant_for(None)
    with pytest.raises(Unauthorized):
        auth.tenant_for("pst-wrong")
    # Decided at startup: revoking every key does not open a running server.
    svc.revoke("web")
    assert not auth.open_mode
    with pytest.raises(Unauthorized):
        auth.tenant_for(key.secret)
    assert Authenticator({}, open_tenant="local", stored_keys=False).open_mode


def test_llamachat_secrets_file_in_the_data_dir(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).open_mode
    (tmp_path / "appsettings.secrets.json").write_text(
        json.dumps(
            {
                "Consumer": {"ApiKeys": {"mobile-app": "abc123", "zapier": "def456"}},
                "Logging": {"LogLevel": "Debug"},
            }
        )
    )
    s = Settings(data_dir=tmp_path)
    assert s.consumer_keys() == {"mobile-app": "abc123", "zapier": "def456"}
    assert not s.open_mode
    # An explicit file wins over the data dir's.
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"solo": "s3cret-value"}))
    assert Settings(data_dir=tmp_path, api_keys_file=other).consumer_keys() == {
        "solo": "s3cret-value"
    }
