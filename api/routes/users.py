"""Accounts and machine API keys (admins only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from api.deps import AccountsDep, AuditDep, require_roles
from api.schemas import ApiKeyCreate, ApiKeyPublic, UserCreate, UserPublic, UserUpdate, errors
from api.services.errors import NotFound
from api.services.scope import Principal

router = APIRouter(prefix="/api/v1/users", tags=["users"])
Admin = Annotated[Principal, Depends(require_roles("admin"))]
UserName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]
ERR = errors(400, 401, 403, 404, 409, 422, 503)


@router.get("", response_model=list[UserPublic], responses=ERR, summary="List accounts")
def list_users(who: Admin, accounts: AccountsDep, audit: AuditDep) -> list[UserPublic]:
    """Every account (no password hashes)."""
    rows = accounts.users()
    audit.record(who, "users.list", "users", "ok")
    return [UserPublic.model_validate(r) for r in rows]


@router.post("", response_model=UserPublic, status_code=201, responses=ERR, summary="Create an account")
def add_user(body: UserCreate, who: Admin, accounts: AccountsDep, audit: AuditDep) -> UserPublic:
    """A new account; a grid worker's staff_id names their roster entry (their cells)."""
    with audit.around(who, "users.add", f"user:{body.username}") as out:
        row = accounts.add(body.username, body.role, body.password, body.staff_id, body.buildings)
        out.result = f"ok: role {body.role}"
    return UserPublic.model_validate(row)


@router.patch("/{username}", response_model=UserPublic, responses=ERR, summary="Disable, enable or reset")
def update_user(username: UserName, body: UserUpdate, who: Admin, accounts: AccountsDep,
                audit: AuditDep) -> UserPublic:
    """Disable (ends every login) or enable an account, or set a new password."""
    done = []
    with audit.around(who, "users.update", f"user:{username}") as out:
        if body.disabled is not None:
            accounts.set_disabled(username, body.disabled)
            done.append("disabled" if body.disabled else "enabled")
        if body.password is not None:
            accounts.reset_password(username, body.password)
            done.append("password reset")
        row = accounts.get(username)
        if row is None:
            raise NotFound(f"no user {username!r}")
        out.result = "ok: " + (", ".join(done) or "nothing")
    return UserPublic.model_validate(row)


@router.post("/{username}/api-keys", response_model=ApiKeyPublic, status_code=201, responses=ERR,
             summary="Create an API key")
def add_key(username: UserName, body: ApiKeyCreate, who: Admin, accounts: AccountsDep,
            audit: AuditDep) -> ApiKeyPublic:
    """A machine key acting as this account; the key is shown once."""
    with audit.around(who, "apikeys.add", f"user:{username}") as out:
        row = accounts.add_key(username, body.name)
        out.target = f"apikey:{row['id']}"
    return ApiKeyPublic.model_validate(row)


@router.get("/{username}/api-keys", response_model=list[ApiKeyPublic], responses=ERR, summary="List API keys")
def list_keys(username: UserName, who: Admin, accounts: AccountsDep, audit: AuditDep) -> list[ApiKeyPublic]:
    """An account's keys, without secrets."""
    rows = accounts.keys(username)
    audit.record(who, "apikeys.list", f"user:{username}", "ok")
    return [ApiKeyPublic.model_validate({**r, "key": None}) for r in rows]


@router.delete("/{username}/api-keys/{key_id}", status_code=204, responses=ERR, summary="Revoke an API key")
def revoke_key(username: UserName, key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")], who: Admin,
               accounts: AccountsDep, audit: AuditDep) -> None:
    """Revoke a key at once."""
    with audit.around(who, "apikeys.revoke", f"apikey:{key_id}"):
        if not any(k["id"] == key_id for k in accounts.keys(username)):
            raise NotFound(f"no API key {key_id} for {username!r}")
        accounts.revoke_key(key_id)
