"""The API on real SQLite and PostgreSQL stores: who may read and act on what, and one audit row per request."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alerts_helpers import Postgres
from api_helpers import PASSWORD, add_accounts, api_config, bearer, open_alert
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from commhub import cli

# The alerts every test here reads: (key, rule, grid, building); the forced door's condition is still active.
PLACES = [("door_g1", "door_forced_open", "g1", "b1"), ("door_g2", "door_forced_open", "g2", "b3"),
          ("smoke_b1", "smoke_alarm", "g1", "b1"), ("smoke_b3", "smoke_alarm", "g2", "b3"),
          ("sos_b2", "sos_button", "g1", "b2")]


class Api:
    """A TestClient on one store with an account per role and the alerts of PLACES."""

    def __init__(self, client: TestClient, app: Any, db_url: str, config_file: Path, pg: Postgres | None) -> None:
        self.c = client
        self.pg = pg
        self.app = app
        self.s = app.state.services
        self.db_url = db_url
        self.config_file = config_file
        self.ids: dict[str, int] = {}
        self.tokens: dict[str, str] = {}

    def h(self, user: str) -> dict[str, str]:
        """Authorization header of a user (logged in once)."""
        return bearer(self.c, self.tokens, user)

    def audit_rows(self) -> int:
        """Rows in the audit log."""
        with self.s.store.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one())

    def new_alert(self, rule: str, grid: str, building: str, subject: str) -> int:
        """Open another alert."""
        return open_alert(self.s.store, rule, grid, building, subject)


def _write_config(tmp: Path, db_url: str) -> Path:
    # The CLI loads a file: the same community and store as the app, as YAML.
    import yaml
    from alerts_helpers import ROUTING, RULES, community
    (tmp / "community.yaml").write_text(yaml.safe_dump(community().model_dump(mode="json", exclude_defaults=True)))
    path = tmp / "commhub.yaml"
    path.write_text(yaml.safe_dump({"community": "community.yaml", "mqtt": {"port": 1, "root": "s1"},
                                    "influx": {"url": "http://127.0.0.1:9", "transport": "v1"},
                                    "api": {"argon2_time_cost": 1, "argon2_memory_kib": 1024},
                                    "alerts": {"enabled": True, "db_url": db_url, "rules_file": str(RULES),
                                               "routing_file": str(ROUTING)}}))
    return path


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp = tmp_path_factory.mktemp("api")
    pg = None
    if request.param == "postgres":
        pg = Postgres(tmp / "pg")
        if not pg.available:
            pytest.fail("PostgreSQL server binaries are not installed (Debian: apt-get install postgresql)")
        pg.start()
        db_url = pg.url
    else:
        db_url = f"sqlite:///{tmp}/alerts.db"
    app = create_app(api_config(db_url, login_max_failures=3), live=False)
    try:
        with TestClient(app) as client:
            a = Api(client, app, db_url, _write_config(tmp, db_url), pg)
            add_accounts(a.s)
            for key, rule, grid, building in PLACES:
                a.ids[key] = open_alert(a.s.store, rule, grid, building, f"{key}-subject")
            yield a
    finally:
        if pg is not None:
            pg.stop()


def _listed(api: Api, user: str, **query: Any) -> set[int]:
    r = api.c.get("/api/v1/alerts", headers=api.h(user), params={"limit": 500, **query})
    assert r.status_code == 200, r.text
    return {a["id"] for a in r.json()["items"]}


def test_each_role_lists_only_its_jurisdiction(api: Api) -> None:
    ids = api.ids
    mine = {v for v in ids.values()}
    assert mine <= _listed(api, "sec") and mine <= _listed(api, "police") and mine <= _listed(api, "adm")
    g1 = {ids["door_g1"], ids["smoke_b1"], ids["sos_b2"]}
    assert _listed(api, "gw1") & mine == g1
    assert _listed(api, "gw2") & mine == {ids["door_g2"], ids["smoke_b3"]}
    # property: the facility layer of b1 only
    assert _listed(api, "prop") & mine == {ids["smoke_b1"]}
    # a filter cannot widen the scope: gw1 asking for g2 gets nothing
    assert _listed(api, "gw1", grid="g2") == set()


def test_another_cells_alert_is_404_never_403(api: Api) -> None:
    other = api.ids["door_g2"]
    for path in (f"/api/v1/alerts/{other}", ):
        r = api.c.get(path, headers=api.h("gw1"))
        assert r.status_code == 404 and "no alert" in r.json()["detail"]
    for action in ("acknowledge", "comment", "resolve", "false_alarm", "escalate", "assign"):
        r = api.c.post(f"/api/v1/alerts/{other}/{action}", headers=api.h("gw1"), json={"assignee": "gw1"})
        assert r.status_code == 404, (action, r.text)
    # the same 404 as for an id that does not exist at all
    assert api.c.get("/api/v1/alerts/999999999", headers=api.h("gw1")).json() == \
        {"detail": "no alert 999999999"}
    r = api.c.get(f"/api/v1/alerts/{api.ids['smoke_b3']}", headers=api.h("prop"))
    assert r.status_code == 404
    r = api.c.get(f"/api/v1/alerts/{api.ids['door_g1']}", headers=api.h("prop"))  # b1, but technical layer
    assert r.status_code == 404
    # the grid worker's store state is untouched
    assert api.s.store.get(other)["state"] == "open"


def test_detail_has_timeline_thresholds_and_route_with_reason(api: Api) -> None:
    r = api.c.get(f"/api/v1/alerts/{api.ids['smoke_b1']}", headers=api.h("gw1"))
    assert r.status_code == 200
    d = r.json()
    assert d["timeline"][0]["transition"] == "opened" and d["thresholds"] == {"limit": 1}
    assert d["route"]["reason"] and "recipients" in d["route"]


def test_roles_and_actions(api: Api) -> None:
    a = api.new_alert("sos_button", "g1", "b1", "roles-sos")
    # police: read everywhere, comment and escalate only
    assert api.c.post(f"/api/v1/alerts/{a}/acknowledge", headers=api.h("police"), json={}).status_code == 403
    assert api.c.post(f"/api/v1/alerts/{a}/resolve", headers=api.h("police"), json={}).status_code == 403
    r = api.c.post(f"/api/v1/alerts/{a}/comment", headers=api.h("police"), json={"note": "patrol car sent"})
    assert r.status_code == 200 and r.json()["transition"] == "commented"
    r = api.c.post(f"/api/v1/alerts/{a}/escalate", headers=api.h("police"), json={})
    assert r.status_code == 200 and r.json()["state"] == "escalated"
    # admin: no alert actions
    assert api.c.post(f"/api/v1/alerts/{a}/acknowledge", headers=api.h("adm"), json={}).status_code == 403
    # the grid worker of the cell acts; every action records who
    r = api.c.post(f"/api/v1/alerts/{a}/assign", headers=api.h("gw1"), json={"assignee": "gw1", "note": "mine"})
    assert r.status_code == 200
    r = api.c.post(f"/api/v1/alerts/{a}/acknowledge", headers=api.h("gw1"), json={"note": "on my way"})
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    r = api.c.post(f"/api/v1/alerts/{a}/resolve", headers=api.h("sec"), json={})
    assert r.status_code == 200
    timeline = api.c.get(f"/api/v1/alerts/{a}", headers=api.h("sec")).json()["timeline"]
    assert [(t["transition"], t["by"]) for t in timeline] == [
        ("opened", "system"), ("commented", "police"), ("escalated", "police"), ("assigned", "gw1"),
        ("acknowledged", "gw1"), ("resolved", "sec")]
    assert api.c.get(f"/api/v1/alerts/{a}", headers=api.h("sec")).json()["assignee"] == "gw1"
    # a wrong state is a 409 that says why
    r = api.c.post(f"/api/v1/alerts/{a}/acknowledge", headers=api.h("sec"), json={})
    assert r.status_code == 409 and "resolved" in r.json()["detail"]


def test_forced_door_still_open_cannot_be_acknowledged_and_the_api_says_why(api: Api) -> None:
    a = api.new_alert("door_forced_open", "g1", "b2", "door-still-open")
    r = api.c.post(f"/api/v1/alerts/{a}/acknowledge", headers=api.h("gw1"), json={})
    assert r.status_code == 409
    assert "condition is active" in r.json()["detail"] and "close the door" in r.json()["detail"]
    assert api.s.store.get(a)["state"] == "open"
    with api.s.store.engine.begin() as conn:
        conn.execute(text("UPDATE alerts SET condition_active = :f WHERE id = :i"), {"f": False, "i": a})
    assert api.c.post(f"/api/v1/alerts/{a}/acknowledge", headers=api.h("gw1"), json={}).status_code == 200


def test_list_filters_sort_and_cursor_paging(api: Api) -> None:
    made = {api.new_alert("sos_button", "g2", "b3", f"page-{i}") for i in range(7)}
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, "sort": "-severity", "grid": "g2", "code": "sos_button"}
        if cursor:
            params["cursor"] = cursor
        r = api.c.get("/api/v1/alerts", headers=api.h("gw2"), params=params)
        assert r.status_code == 200, r.text
        seen += [a["id"] for a in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) and made <= set(seen)
    r = api.c.get("/api/v1/alerts", headers=api.h("gw2"), params={"sort": "id", "cursor": "garbage!"})
    assert r.status_code == 400 and "cursor" in r.json()["detail"]
    r = api.c.get("/api/v1/alerts", headers=api.h("gw2"), params={"severity": "apocalyptic"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "severity", 0]


def test_every_request_leaves_exactly_one_audit_row(api: Api) -> None:
    a = api.new_alert("sos_button", "g1", "b1", "audited")
    calls = [
        ("get", "/api/v1/alerts", "gw1", None, 200),
        ("get", f"/api/v1/alerts/{a}", "gw1", None, 200),
        ("get", f"/api/v1/alerts/{api.ids['door_g2']}", "gw1", None, 404),
        ("post", f"/api/v1/alerts/{a}/comment", "gw1", {"note": "x"}, 200),
        ("post", f"/api/v1/alerts/{a}/acknowledge", "police", {}, 403),
        ("post", f"/api/v1/alerts/{a}/acknowledge", "gw1", {}, 200),
        ("post", f"/api/v1/alerts/{a}/acknowledge", "gw1", {"bogus": 1}, 422),
        ("get", "/api/v1/audit", "gw1", None, 403),
        ("get", "/api/v1/audit", "adm", None, 200),
        ("get", "/api/v1/silences", "sec", None, 200),
        ("get", "/api/v1/auth/me", "prop", None, 200),
        ("get", "/api/v1/no/such/route", "sec", None, 404),
        ("get", "/api/v1/alerts", None, None, 401),
    ]
    for method, path, user, body, status in calls:
        headers = api.h(user) if user else {}
        before = api.audit_rows()
        r = api.c.request(method.upper(), path, headers=headers, json=body)
        assert r.status_code == status, (path, r.text)
        assert api.audit_rows() == before + 1, f"{method} {path} left {api.audit_rows() - before} audit rows"
    last = api.c.get("/api/v1/audit", headers=api.h("adm"), params={"limit": 20}).json()["items"]
    acks = [x for x in last if x["action"] == "alerts.acknowledge" and x["target"] == f"alert:{a}"]
    assert [(x["actor"], x["result"][:3]) for x in acks] == [("gw1", "ok:"), ("police", "403")]
    assert all(x["address"] == "testclient" for x in last)


def test_audit_verify_detects_an_edit_and_a_deletion(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["audit", "verify", "--config", str(api.config_file), "--json"]
    assert cli.main(args) == 0, capsys.readouterr()
    assert '"ok": true' in capsys.readouterr().out
    engine = api.s.store.engine
    with engine.begin() as conn:
        seq, result = conn.execute(text("SELECT seq, result FROM audit_log ORDER BY seq LIMIT 1 OFFSET 2")).one()
        conn.execute(text("UPDATE audit_log SET result = 'ok: nothing to see' WHERE seq = :s"), {"s": seq})
    assert cli.main(args) == 1
    out = capsys.readouterr().out
    assert f"row {seq}: contents do not match" in out
    with engine.begin() as conn:  # put it back: the chain is whole again
        conn.execute(text("UPDATE audit_log SET result = :r WHERE seq = :s"), {"r": result, "s": seq})
    assert api.s.audit.verify().ok  # the service the CLI runs; the CLI's exit codes are checked above and below
    with engine.begin() as conn:
        row = dict(conn.execute(text("SELECT * FROM audit_log WHERE seq = :s"), {"s": seq + 1}).mappings().one())
        conn.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": seq + 1})
    assert cli.main(args) == 1
    assert "missing" in capsys.readouterr().out
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_log (seq, at, actor, role, action, target, result, address, prev_hash, "
                          "hash) VALUES (:seq, :at, :actor, :role, :action, :target, :result, :address, "
                          ":prev_hash, :hash)"), row)
        top = dict(conn.execute(text("SELECT * FROM audit_log ORDER BY seq DESC LIMIT 1")).mappings().one())
        conn.execute(text("DELETE FROM audit_log WHERE seq = :s"), {"s": top["seq"]})  # the newest row
    v = api.s.audit.verify()
    assert not v.ok and any("head" in p for p in v.problems), v.problems
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_log (seq, at, actor, role, action, target, result, address, prev_hash, "
                          "hash) VALUES (:seq, :at, :actor, :role, :action, :target, :result, :address, "
                          ":prev_hash, :hash)"), top)
    assert api.s.audit.verify().ok


def test_login_refresh_logout_disable_and_api_keys(api: Api) -> None:
    c = api.c
    r = c.post("/api/v1/auth/token", data={"username": "sec", "password": PASSWORD})
    tokens = r.json()
    h = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert c.get("/api/v1/auth/me", headers=h).json()["role"] == "security_staff"
    r = c.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200
    new = r.json()
    assert c.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
    h2 = {"Authorization": f"Bearer {new['access_token']}"}
    assert c.post("/api/v1/auth/logout", headers=h2).status_code == 204
    for hh in (h, h2):  # the session is over for every token of it
        r = c.get("/api/v1/auth/me", headers=hh)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert c.post("/api/v1/auth/refresh", json={"refresh_token": new["refresh_token"]}).status_code == 401
    # a forged token (signed with another key) and a token with a lying subject are refused
    import jwt
    forged = jwt.encode({"sub": "adm", "sid": "x", "exp": 4102444800}, "not-the-key-" * 4, algorithm="HS256")
    assert c.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    claims = jwt.decode(api.tokens.get("gw1") or api.h("gw1")["Authorization"][7:], options={"verify_signature": False})
    key = api.s.accounts._signing_key()
    lying = jwt.encode({**claims, "sub": "adm"}, key, algorithm="HS256")
    assert c.get("/api/v1/audit", headers={"Authorization": f"Bearer {lying}"}).status_code == 401
    # an API key for a machine acts as its account (the police system: police role)
    r = c.post("/api/v1/users/police/api-keys", headers=api.h("adm"), json={"name": "police system"})
    assert r.status_code == 201
    key_row = r.json()
    kh = {"X-API-Key": key_row["key"]}
    me = c.get("/api/v1/auth/me", headers=kh).json()
    assert me["role"] == "police_liaison" and me["auth"] == "api_key" and me["sees_unblurred"]
    assert c.get("/api/v1/auth/me", headers={"X-API-Key": key_row["key"] + "x"}).status_code == 401
    assert c.delete(f"/api/v1/users/police/api-keys/{key_row['id']}", headers=api.h("adm")).status_code == 204
    assert c.get("/api/v1/auth/me", headers=kh).status_code == 401
    # disabling ends logins at once
    r = c.post("/api/v1/auth/token", data={"username": "prop", "password": PASSWORD})
    hp = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert c.patch("/api/v1/users/prop", headers=api.h("adm"), json={"disabled": True}).status_code == 200
    assert c.get("/api/v1/auth/me", headers=hp).status_code == 401
    assert c.post("/api/v1/auth/token", data={"username": "prop", "password": PASSWORD}).status_code == 401
    assert c.patch("/api/v1/users/prop", headers=api.h("adm"), json={"disabled": False}).status_code == 200
    api.tokens.pop("prop", None)


def test_failed_logins_are_rate_limited_and_audited(api: Api) -> None:
    c = api.c
    api.s.accounts.add("victim", "security_staff", PASSWORD)
    for _ in range(3):
        assert c.post("/api/v1/auth/token", data={"username": "victim", "password": "guess"}).status_code == 401
    r = c.post("/api/v1/auth/token", data={"username": "victim", "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert "too many failed logins" in r.json()["detail"]
    rows = c.get("/api/v1/audit", headers=api.h("adm"), params={"actor": "victim", "action": "login"}).json()["items"]
    assert [x["result"][:3] for x in rows] == ["429", "401", "401", "401"]


def test_admin_manages_accounts_and_silences(api: Api) -> None:
    c = api.c
    r = c.post("/api/v1/users", headers=api.h("adm"), json={"username": "newgw", "role": "grid_worker",
                                                              "password": "longenough1", "staff_id": "gw-g2"})
    assert r.status_code == 201 and "password_hash" not in r.json()
    assert c.post("/api/v1/users", headers=api.h("adm"), json={"username": "newgw", "role": "admin",
                                                                 "password": "longenough1"}).status_code == 409
    r = c.post("/api/v1/users", headers=api.h("adm"), json={"username": "x", "role": "grid_worker",
                                                              "password": "longenough1"})
    assert r.status_code == 400 and "staff_id" in r.json()["detail"]
    r = c.post("/api/v1/users", headers=api.h("adm"), json={"username": "y", "role": "admin", "password": "p",
                                                              "rolee": 1})
    assert r.status_code == 422 and {tuple(e["loc"]) for e in r.json()["detail"]} >= {("body", "rolee")}
    assert c.get("/api/v1/users", headers=api.h("sec")).status_code == 403
    now = api.s.clock()
    r = c.post("/api/v1/silences", headers=api.h("sec"), json={"matchers": {"code": "smoke_alarm", "grid": "g1"},
                                                                 "ends_at": now + 3600, "comment": "drill"})
    assert r.status_code == 201 and r.json()["active"] and r.json()["created_by"] == "sec"
    sid = r.json()["id"]
    assert c.post("/api/v1/silences", headers=api.h("gw1"), json={"matchers": {"code": "x"},
                                                                    "ends_at": now + 60}).status_code == 403
    r = c.post("/api/v1/silences", headers=api.h("sec"), json={"matchers": {"nonsense_label": "x"},
                                                                 "ends_at": now + 60})
    assert r.status_code == 400
    r = c.post("/api/v1/silences", headers=api.h("sec"), json={"matchers": {"code": "x"}, "ends_at": now - 60})
    assert r.status_code == 400 and "ends_at" in r.json()["detail"]
    assert sid in {s["id"] for s in c.get("/api/v1/silences", headers=api.h("adm"), params={"active": True}).json()}
    r = c.post(f"/api/v1/silences/{sid}/expire", headers=api.h("adm"))
    assert r.status_code == 200 and not r.json()["active"]
    assert c.post(f"/api/v1/silences/{sid}/expire", headers=api.h("adm")).status_code == 409


def test_zz_a_database_that_is_down_is_a_503_not_a_500(api: Api, tmp_path: Path) -> None:
    # Runs last in the module: on PostgreSQL the server is stopped for good.
    h = api.h("sec")
    engine = api.s.store.engine
    if api.db_url.startswith("postgresql"):
        import os
        import signal
        pg_proc = api.pg.proc  # type: ignore[union-attr]
        assert pg_proc is not None
        os.killpg(pg_proc.pid, signal.SIGINT)
        pg_proc.wait(30)
        engine.dispose()
        api.s.reader.dispose()
        moved = None
    else:
        path = Path(api.db_url.split("///", 1)[1])
        engine.dispose()
        api.s.reader.dispose()
        moved = tmp_path / "alerts.db.away"
        path.rename(moved)
        path.mkdir()  # a directory where the file was: SQLite cannot open it
    try:
        for method, url, body in (("GET", "/api/v1/alerts", None), ("GET", "/api/v1/alerts/1", None),
                                  ("POST", "/api/v1/alerts/1/comment", {"note": "x"}), ("GET", "/readyz", None)):
            r = api.c.request(method, url, headers=h, json=body)
            assert r.status_code == 503, (url, r.status_code, r.text)
        assert api.c.get("/healthz").status_code == 200  # the process itself is fine
        r = api.c.post("/api/v1/auth/token", data={"username": "sec", "password": PASSWORD})
        assert r.status_code == 503 and "database" in r.json()["detail"]
    finally:
        if moved is not None:
            path.rmdir()
            moved.rename(path)
