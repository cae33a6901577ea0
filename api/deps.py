"""Annotated dependencies of the routes: config, store, services, the current principal, roles and the audit log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer

from api.services.accounts import Accounts
from api.services.alerts import AlertService
from api.services.audit import AuditLog
from api.services.errors import Forbidden, ServiceError, Unauthorized
from api.services.scope import Principal
from api.state import Services
from commhub.config import Config
from hub.alerts.store import AlertStore

TOKEN_URL = "/api/v1/auth/token"
oauth2 = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def get_services(request: Request) -> Services:
    """The app's clients (opened in lifespan)."""
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_config(s: ServicesDep) -> Config:
    """The validated configuration tree."""
    return s.cfg


def get_store(s: ServicesDep) -> AlertStore:
    """The alert store (hub.alerting.open_store), shared with the hub workers through SQL."""
    return s.store


def get_accounts(s: ServicesDep) -> Accounts:
    """Accounts and credentials."""
    return s.accounts


def get_alerts(s: ServicesDep) -> AlertService:
    """Alerts and silences, jurisdiction-limited."""
    return s.alerts


ConfigDep = Annotated[Config, Depends(get_config)]
StoreDep = Annotated[AlertStore, Depends(get_store)]
AccountsDep = Annotated[Accounts, Depends(get_accounts)]
AlertsDep = Annotated[AlertService, Depends(get_alerts)]


def client_address(request: Request) -> str:
    """The caller's address as the socket saw it (no forwarded headers are trusted)."""
    return request.client.host if request.client else "-"


def authenticate(request: Request, s: ServicesDep, token: Annotated[str | None, Depends(oauth2)],
                 api_key: Annotated[str | None, Depends(api_key_header)]) -> Principal:
    """The caller, from a bearer token or an X-API-Key header; 401 otherwise."""
    credential = api_key or token
    if not credential:
        raise Unauthorized("not authenticated: send 'Authorization: Bearer <token>' or 'X-API-Key'")
    principal, sid = s.accounts.from_token(credential)
    request.state.principal = principal
    request.state.session_id = sid
    return principal


CurrentUser = Annotated[Principal, Depends(authenticate)]


def require_roles(*roles: str) -> Callable[..., Principal]:
    """A dependency admitting only these roles (403 says which roles may)."""
    def check(who: CurrentUser) -> Principal:
        if who.role not in roles:
            raise Forbidden(f"this needs one of the roles: {', '.join(roles)}")
        return who
    return check


Actor = Principal | str | None  # a principal; a name the caller claims but has not proven; or nobody known


class Outcome:
    """What an audited block records when it succeeds; the block may name the actor, target and result it found."""

    def __init__(self, who: Actor, target: str) -> None:
        self.who = who
        self.target = target
        self.result = "ok"


class Audit:
    """Records one audit row per request; a request that records none gets a row from the middleware."""

    def __init__(self, log: AuditLog, request: Request) -> None:
        self.log = log
        self.request = request

    def record(self, principal: Actor, action: str, target: str, result: str,
               request: Request | None = None) -> int:
        """Append who did what to which target, with the result and the caller's address."""
        req = request or self.request
        req.state.audited = True
        if isinstance(principal, Principal):
            who, role = principal.username, principal.role
        elif principal is None:
            who, role = "anonymous", "-"
        else:
            who, role = principal[:64] or "-", "-"
        return self.log.append(who, role, action, target, result, client_address(req))

    @contextmanager
    def around(self, principal: Actor, action: str, target: str) -> Iterator[Outcome]:
        """Record the block once: its Outcome when it ends, or the service error it raises (then re-raised)."""
        out = Outcome(principal, target)
        try:
            yield out
        except ServiceError as e:
            # The row names what was asked for; any other exception is left to the middleware's row.
            self.record(principal, action, target, f"{e.status}: {e}")
            raise
        self.record(out.who, action, out.target, out.result)


def get_audit(request: Request, s: ServicesDep) -> Audit:
    """The request's audit recorder."""
    return Audit(s.audit, request)


AuditDep = Annotated[Audit, Depends(get_audit)]


def audit_result(status: int, detail: Any = None) -> str:
    """A short result text for an audit row."""
    return "ok" if status < 400 else f"{status}: {str(detail)[:200]}" if detail else str(status)
