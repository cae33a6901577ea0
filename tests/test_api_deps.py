"""Audit.around, the one way a route audits an action: one row for success, the service error, or nothing."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from api.deps import Audit
from api.services.errors import Conflict, ServiceError
from api.services.scope import Principal

WHO = Principal(username="gw1", role="grid_worker", grids=frozenset({"g1"}), buildings=None)


class Rows:
    """Stands in for AuditLog.append (the chain itself is tested on real stores in test_api_access)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, ...]] = []

    def append(self, actor: str, role: str, action: str, target: str, result: str, address: str) -> int:
        """Keep the row."""
        self.rows.append((actor, role, action, target, result, address))
        return len(self.rows)


def _audit() -> tuple[Audit, Rows, Request]:
    rows = Rows()
    request = Request({"type": "http", "method": "GET", "path": "/api/v1/x", "headers": [],
                       "client": ("10.1.2.3", 40000), "state": {}})
    return Audit(rows, request), rows, request  # type: ignore[arg-type]  # duck-typed log


def test_success_records_what_the_block_found() -> None:
    audit, rows, request = _audit()
    with audit.around(None, "silences.add", "silence") as out:
        out.who, out.target, out.result = WHO, "silence:7", "ok: 2 matchers"
    assert rows.rows == [("gw1", "grid_worker", "silences.add", "silence:7", "ok: 2 matchers", "10.1.2.3")]
    assert request.state.audited is True  # the middleware then writes no second row
    with audit.around(WHO, "alerts.show", "alert:1"):
        pass
    assert rows.rows[-1] == ("gw1", "grid_worker", "alerts.show", "alert:1", "ok", "10.1.2.3")


def test_a_service_error_is_recorded_with_what_was_asked_for_and_re_raised() -> None:
    audit, rows, _ = _audit()
    with pytest.raises(Conflict, match="still open"), audit.around("x" * 100, "login", "session") as out:
        out.target = "changed:before-the-error"
        raise Conflict("the door is still open")
    # a claimed, unproven name is cut to 64 characters and carries no role
    assert rows.rows == [("x" * 64, "-", "login", "session", "409: the door is still open", "10.1.2.3")]


def test_other_exceptions_are_left_to_the_middleware() -> None:
    audit, rows, request = _audit()
    with pytest.raises(KeyError), audit.around(WHO, "alerts.list", "alerts"):
        raise KeyError("bug")
    assert rows.rows == [] and not getattr(request.state, "audited", False)


@pytest.mark.parametrize("who, expected", [(None, ("anonymous", "-")), ("", ("-", "-")), (WHO, ("gw1", "grid_worker"))])
def test_actor_names(who: Any, expected: tuple[str, str]) -> None:
    audit, rows, _ = _audit()
    with pytest.raises(ServiceError), audit.around(who, "refresh", "session"):
        raise ServiceError("bad token")
    assert rows.rows[0][:2] == expected and rows.rows[0][4] == "400: bad token"
