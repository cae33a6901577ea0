"""Alerts: list with filters, sort and cursor paging; detail; actions through AlertStore.act."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import AlertsDep, AuditDep, CurrentUser
from api.schemas import (
    ActionResultPublic,
    AlertAction,
    AlertActionCreate,
    AlertDetailPublic,
    AlertsPage,
    AlertStateName,
    LayerName,
    Severity,
    errors,
)
from api.services.alerts import AlertFilter

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
ERR = errors(400, 401, 403, 404, 409, 422, 503)
Ident = Annotated[list[str], Query(max_length=100)]
AlertId = Annotated[int, Path(ge=1, le=2**62)]
Time = Annotated[float | None, Query(ge=0, le=1e11, description="Epoch seconds (opened_at).")]


@router.get("", response_model=AlertsPage, responses=ERR, summary="List alerts")
def list_alerts(who: CurrentUser, alerts: AlertsDep, audit: AuditDep,
                grid: Ident = [], building: Ident = [],  # noqa: B006 - FastAPI copies defaults
                layer: Annotated[list[LayerName], Query(max_length=3)] = [],  # noqa: B006
                code: Ident = [],  # noqa: B006
                severity: Annotated[list[Severity], Query(max_length=4)] = [],  # noqa: B006
                state: Annotated[list[AlertStateName], Query(max_length=6)] = [],  # noqa: B006
                since: Time = None, until: Time = None,
                sort: Annotated[str, Query(pattern=r"^-?(id|opened_at|updated_at|severity)$",
                                           description="Field, '-' first for descending.")] = "-id",
                limit: Annotated[int, Query(ge=1, le=500)] = 50,
                cursor: Annotated[str | None, Query(max_length=400)] = None) -> AlertsPage:
    """Alerts in the caller's jurisdiction (a grid worker's cells, property's facility layer, ...)."""
    f = AlertFilter(grid=grid, building=building, layer=layer, code=code, severity=severity, state=state,
                    since=since, until=until)
    with audit.around(who, "alerts.list", "alerts") as out:
        rows, nxt = alerts.search(who, f, sort.lstrip("-"), sort.startswith("-"), limit, cursor)
        out.result = f"ok: {len(rows)} rows"
    return AlertsPage.model_validate({"items": rows, "next_cursor": nxt})


@router.get("/{alert_id}", response_model=AlertDetailPublic, responses=ERR, summary="One alert")
def get_alert(alert_id: AlertId, who: CurrentUser, alerts: AlertsDep, audit: AuditDep) -> AlertDetailPublic:
    """Timeline of transitions, triggering events, thresholds, route and its reason; 404 outside jurisdiction."""
    with audit.around(who, "alerts.show", f"alert:{alert_id}"):
        row = alerts.get(who, alert_id)
    return AlertDetailPublic.model_validate(row)


@router.post("/{alert_id}/{action}", response_model=ActionResultPublic, responses=ERR, summary="Act on an alert")
def act(alert_id: AlertId, action: AlertAction, body: AlertActionCreate, who: CurrentUser, alerts: AlertsDep,
        audit: AuditDep) -> ActionResultPublic:
    """acknowledge, assign, comment, resolve, false_alarm or escalate; 409 with the reason when refused."""
    with audit.around(who, f"alerts.{action}", f"alert:{alert_id}") as out:
        n = alerts.act(who, alert_id, action, body.note, body.assignee)
        out.result = f"ok: notice {n.notice_id}"
    return ActionResultPublic(alert_id=n.alert_id, notice_id=n.notice_id, transition=n.transition, state=n.state)
