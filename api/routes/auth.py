"""Log in (OAuth2 password flow), refresh, log out, and who am I."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from api.deps import AccountsDep, AuditDep, CurrentUser, client_address
from api.schemas import PrincipalPublic, RefreshRequest, TokenPublic, errors
from api.services.scope import principal_for

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
ERR = errors(400, 401, 422, 429, 503)


@router.post("/token", response_model=TokenPublic, responses=ERR, summary="Log in")
def login(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()], accounts: AccountsDep,
          audit: AuditDep) -> TokenPublic:
    """Password login; failed logins are counted per username and address, audited, and limited (429)."""
    # A failed login is recorded under the name tried: the caller has not proven it.
    with audit.around(form.username, "login", "session") as out:
        user, tokens = accounts.login(form.username, form.password, client_address(request))
        out.who = principal_for(user, accounts.community)
    return TokenPublic(**tokens)


@router.post("/refresh", response_model=TokenPublic, responses=ERR, summary="Renew the access token")
def refresh(body: RefreshRequest, accounts: AccountsDep, audit: AuditDep) -> TokenPublic:
    """A new access token and refresh token; the old refresh token stops working."""
    with audit.around(None, "refresh", "session") as out:
        username, tokens = accounts.refresh(body.refresh_token)
        user = accounts.get(username)
        out.who = principal_for(user or {"username": username, "role": "-"}, accounts.community)
    return TokenPublic(**tokens)


@router.post("/logout", status_code=204, responses=ERR, summary="End this login")
def logout(request: Request, who: CurrentUser, accounts: AccountsDep, audit: AuditDep) -> None:
    """Revoke the session of the access token used (API keys are revoked by an admin instead)."""
    sid = getattr(request.state, "session_id", None)
    if sid:
        accounts.logout(sid)
    audit.record(who, "logout", "session", "ok")


@router.get("/me", response_model=PrincipalPublic, responses=ERR, summary="Who am I")
def me(who: CurrentUser) -> PrincipalPublic:
    """The caller's role and jurisdiction."""
    return PrincipalPublic(username=who.username, role=who.role,
                           auth="api_key" if who.auth == "api_key" else "user",
                           grids=sorted(who.grids) if who.grids is not None else None,
                           buildings=sorted(who.buildings) if who.buildings is not None else None,
                           layers=sorted(who.layers) if who.layers is not None else None,
                           can_act=bool(who.may("acknowledge")), sees_unblurred=who.sees_unblurred)
