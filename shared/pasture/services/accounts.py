"""Self-service accounts, as RAGFlow's tooling expects them: register, log in, mint API keys.

Every user is a tenant of its own (`u-<32 hex>`); the API keys a user mints map to that tenant
through the Authenticator's lookup (`tenant_for_key`). Nothing secret is stored in clear:

- passwords: opaque strings to us (RAGFlow's client sends them RSA-encrypted; we neither can nor
  should decrypt them), kept as salted scrypt hashes and compared with `hmac.compare_digest`;
- login session tokens and API keys: kept as sha256 digests, which is also how they are found.

Record layout: services/keys.py (the global USER / APIKEY / SESSION lookups and the tenant's
`T#<t>#APIKEY` listing). Uniqueness of an email is a conditional put, never read-then-write.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pasture.domain.errors import Conflict, Invalid, NotFound, Unauthorized
from pasture.ports import ApiKeyGateway, Record, Records
from pasture.services import keys
from pasture.services.consumer_keys import NoApiKeyGateway

# RAGFlow's own email check (api/apps/user_app.py), plus the RFC's length bound.
_EMAIL = re.compile(r"^[\w\._-]+@([\w_-]+\.)+[\w-]{2,5}$")
MAX_EMAIL = 254
MAX_NICKNAME = 100
MAX_PASSWORD = 4096  # an RSA-2048 ciphertext in base64 is 344 characters
MAX_KEYS_PER_USER = 100
KEY_PREFIX = "ragflow-"
_MASK_CHARS = len(KEY_PREFIX) + 8  # what a listing shows of a key: "ragflow-1a2b3c4d..."

BAD_LOGIN = "Email and password do not match!"
NO_SESSION = (
    "Authentication error: no session token. Log in with POST /v1/user/login and send the"
    " `Authorization` header it returns."
)
BAD_SESSION = "Authentication error: the session token is invalid or has expired; log in again."


@dataclass(frozen=True)
class User:
    id: str  # 32 hex; RAGFlow's `tenant_id` of the user's keys
    tenant: str  # `u-<id>`: the tenant the user's API keys map to
    email: str
    nickname: str
    created_at: float


@dataclass(frozen=True)
class ApiKey:
    token: str  # the whole key right after creation; masked ("ragflow-1a2b3c4d...") in lists
    user_id: str
    created_at: float


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def mask(token: str) -> str:
    return token[:_MASK_CHARS] + "..."


class PasswordHasher:
    """scrypt with a random 16-byte salt per user; the cost is stored with each hash."""

    def __init__(self, n: int = 2**14, r: int = 8, p: int = 1) -> None:
        self.n, self.r, self.p = n, r, p

    @staticmethod
    def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        return hashlib.scrypt(
            password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * r * n + 2**20
        )

    def hash(self, password: str) -> dict[str, Any]:
        salt = secrets.token_bytes(16)
        digest = self._derive(password, salt, self.n, self.r, self.p)
        return {
            "alg": "scrypt",
            "n": self.n,
            "r": self.r,
            "p": self.p,
            "salt": salt.hex(),
            "hash": digest.hex(),
        }

    def verify(self, password: str, stored: dict[str, Any]) -> bool:
        if stored.get("alg") != "scrypt":
            return False
        n, r, p = int(stored["n"]), int(stored["r"]), int(stored["p"])
        digest = self._derive(password, bytes.fromhex(stored["salt"]), n, r, p)
        return hmac.compare_digest(digest, bytes.fromhex(stored["hash"]))

    def waste(self, password: str) -> None:
        """The work of one verification, for unknown emails (no timing tells which exist)."""
        self._derive(password, secrets.token_bytes(16), self.n, self.r, self.p)


class AccountService:
    def __init__(
        self,
        records: Records,
        *,
        session_ttl: int,
        clock: Callable[[], float] = time.time,
        hasher: PasswordHasher | None = None,
        api_keys: ApiKeyGateway | None = None,
    ) -> None:
        self._records = records
        # On AWS every key the authorizer accepts must also be an API Gateway key.
        self._api_keys = api_keys if api_keys is not None else NoApiKeyGateway()
        self._ttl = session_ttl
        self._clock = clock
        self._hasher = hasher or PasswordHasher()

    # ------------------------------------------------------------------ users and sessions

    def register(self, email: str, nickname: str, password: str) -> tuple[User, str]:
        """A new user and tenant; returns it with a fresh session token (RAGFlow logs the new
        user in). A taken email is a Conflict."""
        email = _check_email(email)
        nickname = nickname.strip()
        if not nickname:
            raise Invalid("`nickname` must not be empty")
        if len(nickname) > MAX_NICKNAME:
            raise Invalid(f"`nickname` is longer than {MAX_NICKNAME} characters")
        _check_password(password)
        uid = uuid.uuid4().hex
        user = User(uid, f"u-{uid}", email, nickname, self._clock())
        item = {
            "id": user.id,
            "tenant": user.tenant,
            "email": user.email,
            "nickname": user.nickname,
            "created_at": user.created_at,
            "password_hash": self._hasher.hash(password),
        }
        try:
            self._records.put(Record(keys.USERS, email.lower(), item), if_absent=True)
        except Conflict:
            raise Conflict(f"Email: {email} has already registered!") from None
        return user, self._new_session(user)

    def login(self, email: str, password: str) -> tuple[User, str]:
        """A fresh session token. Unknown email and wrong password fail alike, in like time."""
        rec = self._records.get(keys.USERS, email.strip().lower()) if email else None
        if rec is None:
            self._hasher.waste(password)
            raise Unauthorized(BAD_LOGIN)
        if not self._hasher.verify(password, dict(rec.data["password_hash"])):
            raise Unauthorized(BAD_LOGIN)
        user = _user(rec.data)
        return user, self._new_session(user)

    def authenticate(self, session_token: str | None) -> User:
        """The user of a live session token; Unauthorized otherwise."""
        if not session_token:
            raise Unauthorized(NO_SESSION)
        rec = self._records.get(keys.SESSIONS, _sha256(session_token))
        if rec is None or rec.expires_at is None or rec.expires_at <= self._clock():
            raise Unauthorized(BAD_SESSION)
        return _user(rec.data)

    def logout(self, session_token: str | None) -> None:
        self.authenticate(session_token)
        assert session_token is not None
        self._records.delete(keys.SESSIONS, _sha256(session_token))

    def _new_session(self, user: User) -> str:
        token = secrets.token_hex(32)
        data = {
            "id": user.id,
            "tenant": user.tenant,
            "email": user.email,
            "nickname": user.nickname,
            "created_at": user.created_at,
        }
        expires = self._clock() + self._ttl
        self._records.put(Record(keys.SESSIONS, _sha256(token), data, expires), if_absent=True)
        return token

    # ------------------------------------------------------------------ API keys

    def new_token(self, user: User) -> ApiKey:
        """A new API key for the user's tenant. The whole key is only ever returned here."""
        if len(self._records.query(keys.account_keys(user.tenant), "", limit=None)) >= (
            MAX_KEYS_PER_USER
        ):
            raise Invalid(
                f"You already have {MAX_KEYS_PER_USER} API keys; delete one before creating more."
            )
        token = KEY_PREFIX + secrets.token_hex(24)
        digest, now = _sha256(token), self._clock()
        # Listing item first: a key that works is always one its owner can see and revoke.
        listed = {"masked": mask(token), "user_id": user.id, "created_at": now}
        self._records.put(Record(keys.account_keys(user.tenant), digest, listed), if_absent=True)
        lookup = {"tenant": user.tenant, "user_id": user.id, "created_at": now}
        self._records.put(Record(keys.API_KEYS, digest, lookup), if_absent=True)
        try:
            self._api_keys.register(user.tenant, _gateway_id(digest), token)
        except Exception:
            # Nothing half-made: a key the gateway refuses is not listed either.
            self._records.delete(keys.API_KEYS, digest)
            self._records.delete(keys.account_keys(user.tenant), digest)
            raise
        return ApiKey(token, user.id, now)

    def tokens(self, user: User) -> list[ApiKey]:
        """The user's keys, masked, oldest first."""
        items = self._records.query(keys.account_keys(user.tenant), "", limit=None)
        out = [ApiKey(r.data["masked"], user.id, float(r.data["created_at"])) for r in items]
        return sorted(out, key=lambda k: k.created_at)

    def revoke(self, user: User, token: str) -> None:
        """Revoke one of the user's keys, named by the whole key or by its masked form as
        `tokens` lists it. Another user's key is NotFound, like an unknown one."""
        pk = keys.account_keys(user.tenant)
        digest = _sha256(token)
        if self._records.get(pk, digest) is None:
            items = self._records.query(pk, "", limit=None)
            matches = [r.sk for r in items if r.data.get("masked") == token]
            if len(matches) != 1:
                raise NotFound("API key not found (give the whole key, or its form in token_list)")
            digest = matches[0]
        self._api_keys.revoke(user.tenant, _gateway_id(digest))  # stops working first
        self._records.delete(keys.API_KEYS, digest)
        self._records.delete(pk, digest)

    def tenant_for_key(self, digest_hex: str) -> str | None:
        """The Authenticator's lookup: sha256 hex of a presented key -> its tenant."""
        rec = self._records.get(keys.API_KEYS, digest_hex)
        return None if rec is None else str(rec.data["tenant"])


def _gateway_id(digest: str) -> str:
    """How a RAGFlow key is named at the gateway (with its tenant): part of its digest."""
    return digest[:16]


def _user(data: Any) -> User:
    return User(
        str(data["id"]),
        str(data["tenant"]),
        str(data["email"]),
        str(data["nickname"]),
        float(data["created_at"]),
    )


def _check_email(email: str) -> str:
    email = email.strip()
    if len(email) > MAX_EMAIL or not _EMAIL.match(email):
        raise Invalid(f"Invalid email address: {email}!")
    return email


def _check_password(password: str) -> None:
    if not password:
        raise Invalid("`password` must not be empty")
    if len(password) > MAX_PASSWORD:
        raise Invalid(f"`password` is longer than {MAX_PASSWORD} characters")
