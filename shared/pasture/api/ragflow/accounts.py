"""RAGFlow accounts: how its tooling (ragflow-sdk's own tests) gets an API key.

    POST /v1/user/register {email, nickname, password}
    POST /v1/user/login {email, password}     -> session token in the `Authorization` header
    POST /v1/system/new_token  (Authorization: <session token>, raw or Bearer) -> data.token
    GET  /v1/system/token_list, DELETE /v1/system/token/{token}, GET /v1/user/logout

Behind `PASTURE_RAGFLOW_ACCOUNTS` (on by default only with the local backend); when off, every
route answers code 108. `token_list` shows keys masked ("ragflow-1a2b3c4d..."): the whole key
is only returned once, by `new_token`, since only its digest is kept. DELETE accepts the whole
key or that masked form.
"""

from __future__ import annotations

from email.utils import formatdate
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from pasture.api.deps import ContainerDep, presented_key
from pasture.api.ragflow.envelope import ok, read_json
from pasture.services.accounts import AccountService, ApiKey, User

router = APIRouter(tags=["ragflow"])

DISABLED = (
    "User registration is disabled on this server (set PASTURE_RAGFLOW_ACCOUNTS=true to allow"
    " it, or use an API key from PASTURE_API_KEYS)"
)


def get_accounts(c: ContainerDep) -> AccountService:
    if not c.settings.accounts_enabled:
        raise HTTPException(status_code=403, detail=DISABLED)  # -> code 108 (PERMISSION_ERROR)
    return c.accounts


Accounts = Annotated[AccountService, Depends(get_accounts)]


def session_user(accounts: Accounts, authorization: Annotated[str | None, Header()] = None) -> User:
    return accounts.authenticate(presented_key(authorization, None))


SessionUser = Annotated[User, Depends(session_user)]


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        # -> code 101 (ARGUMENT_ERROR), RAGFlow's answer to a missing argument.
        raise HTTPException(status_code=422, detail=f"required argument is missing: {name}")
    if not isinstance(value, str):
        raise HTTPException(status_code=422, detail=f"`{name}` must be a string")
    return value


def _times(ts: float) -> dict[str, Any]:
    ms, date = int(ts * 1000), formatdate(ts, usegmt=True)
    return {"create_time": ms, "create_date": date, "update_time": ms, "update_date": date}


def _user_json(user: User, session_token: str) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email,
        "nickname": user.nickname,
        "access_token": session_token,
        "avatar": None,
        "language": "English",
        "login_channel": "password",
        "status": "1",
        "is_active": "1",
        "is_authenticated": "1",
        "is_anonymous": "0",
        "is_superuser": False,
        **_times(user.created_at),
    }


def _key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "token": key.token,
        "tenant_id": key.user_id,
        **_times(key.created_at),
        "dialog_id": None,
        "source": None,
        "beta": None,
    }


def _signed_in(user: User, token: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"code": 0, "data": _user_json(user, token), "message": message},
        headers={"Authorization": token, "Access-Control-Expose-Headers": "Authorization"},
    )


@router.post("/v1/user/register")
async def register(request: Request, accounts: Accounts) -> JSONResponse:
    body = await read_json(request)
    email, nickname, password = (_text(body, f) for f in ("email", "nickname", "password"))
    # scrypt is deliberately slow: off the event loop.
    user, token = await run_in_threadpool(accounts.register, email, nickname, password)
    return _signed_in(user, token, f"{user.nickname}, welcome aboard!")


@router.post("/v1/user/login")
async def login(request: Request, accounts: Accounts) -> JSONResponse:
    body = await read_json(request)
    email, password = _text(body, "email"), _text(body, "password")
    user, token = await run_in_threadpool(accounts.login, email, password)
    return _signed_in(user, token, "Welcome back!")


@router.get("/v1/user/logout")
def logout(accounts: Accounts, authorization: Annotated[str | None, Header()] = None) -> Any:
    accounts.logout(presented_key(authorization, None))
    return ok(True)


@router.post("/v1/system/new_token")
def new_token(accounts: Accounts, user: SessionUser) -> Any:
    return ok(_key_json(accounts.new_token(user)))


@router.get("/v1/system/token_list")
def token_list(accounts: Accounts, user: SessionUser) -> Any:
    return ok([_key_json(k) for k in accounts.tokens(user)])


@router.delete("/v1/system/token/{token}")
def remove_token(token: str, accounts: Accounts, user: SessionUser) -> Any:
    accounts.revoke(user, token)
    return ok(True)
