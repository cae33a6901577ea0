"""The operator CLI (`commhub alerts|silence|users|audit`) on a real SQLite store, in process, like amtool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from alerts_helpers import ROUTING, RULES, community
from api_helpers import open_alert
from sqlalchemy import text

from api.state import Services
from commhub import cli
from commhub.config import load


@pytest.fixture
def cfg_file(tmp_path: Path) -> Path:
    (tmp_path / "community.yaml").write_text(yaml.safe_dump(community().model_dump(mode="json",
                                                                                   exclude_defaults=True)))
    path = tmp_path / "commhub.yaml"
    path.write_text(yaml.safe_dump({"community": "community.yaml", "mqtt": {"port": 1, "root": "s1"},
                                    "api": {"argon2_time_cost": 1, "argon2_memory_kib": 1024},
                                    "alerts": {"enabled": True, "db_path": "alerts.db", "rules_file": str(RULES),
                                               "routing_file": str(ROUTING)}}))
    return path


def run(capsys: pytest.CaptureFixture[str], cfg: Path, *args: str) -> tuple[int, Any]:
    """Run `commhub ARGS --config cfg --json`; (exit code, parsed JSON or the error text)."""
    code = cli.main([*args, "--config", str(cfg), "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 and out.strip() else err


def test_alerts_silences_users_and_audit_from_the_cli(cfg_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = Services(load(cfg_file), live=False)
    s.store.start()
    door = open_alert(s.store, "door_forced_open", "g1", "b1", "cli-door")
    sos = open_alert(s.store, "sos_button", "g2", "b3", "cli-sos")
    code, page = run(capsys, cfg_file, "alerts", "list", "--grid", "g2")
    assert code == 0 and [a["id"] for a in page["items"]] == [sos]
    code, detail = run(capsys, cfg_file, "alerts", "show", str(door))
    assert code == 0 and detail["timeline"][0]["transition"] == "opened" and detail["route"]["reason"]
    # the forced door is still open: refused, with the reason, exit code 5
    code, err = run(capsys, cfg_file, "alerts", "ack", str(door), "-m", "seen")
    assert code == 5 and "condition is active" in err
    code, n = run(capsys, cfg_file, "alerts", "comment", str(door), "-m", "guard sent")
    assert code == 0 and n["transition"] == "commented" and n["by"].startswith("cli:")
    code, n = run(capsys, cfg_file, "alerts", "false-alarm", str(sos), "-m", "test press")
    assert code == 0 and n["state"] == "false_alarm"
    code, err = run(capsys, cfg_file, "alerts", "resolve", "424242")
    assert code == 4 and "no alert 424242" in err
    code, sil = run(capsys, cfg_file, "silence", "add", "code=smoke_alarm", "grid=g1", "--duration", "2h")
    assert code == 0 and sil["active"] and sil["matchers"] == {"code": "smoke_alarm", "grid": "g1"}
    code, sils = run(capsys, cfg_file, "silence", "list", "--active")
    assert code == 0 and [x["id"] for x in sils] == [sil["id"]]
    code, _ = run(capsys, cfg_file, "silence", "expire", str(sil["id"]))
    assert code == 0 and run(capsys, cfg_file, "silence", "list", "--active") == (0, [])
    code, err = run(capsys, cfg_file, "silence", "add", "code=x", "--duration", "forever")
    assert code == 2 and "duration" in err
    code, u = run(capsys, cfg_file, "users", "add", "ann", "--role", "grid_worker", "--staff-id", "gw-g2",
                  "--generate")
    assert code == 0 and len(u["password"]) >= 8 and "password_hash" not in u
    code, err = run(capsys, cfg_file, "users", "add", "bob", "--role", "grid_worker", "--password", "longenough")
    assert code == 2 and "staff_id" in err
    assert s.accounts.login("ann", u["password"], "test")[0]["role"] == "grid_worker"
    code, _ = run(capsys, cfg_file, "users", "disable", "ann")
    assert code == 0 and s.accounts.get("ann")["disabled"]  # type: ignore[index]
    code, r = run(capsys, cfg_file, "users", "reset-password", "ann", "--generate")
    assert code == 0 and r["password"] != u["password"]
    code, users = run(capsys, cfg_file, "users", "list")
    assert code == 0 and [x["username"] for x in users] == ["ann"]
    # every command above left exactly one audit row; verify reads only
    with s.store.engine.connect() as conn:
        rows = conn.execute(text("SELECT action, result FROM audit_log ORDER BY seq")).all()
    assert [r[0] for r in rows] == [
        "alerts.list", "alerts.show", "alerts.acknowledge", "alerts.comment", "alerts.false_alarm",
        "alerts.resolve", "silences.add", "silences.list", "silences.expire", "silences.list", "silences.add",
        "users.add", "users.add", "users.disable", "users.reset_password", "users.list"]
    assert rows[2][1].startswith("409") and rows[5][1].startswith("404")
    code, v = run(capsys, cfg_file, "audit", "verify")
    assert code == 0 and v == {"ok": True, "rows": 16, "problems": []}
    s.stop()
