"""Generate configs/community/sample.yaml: a realistic sample community (run: python configs/make_sample.py)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import yaml

GRIDS = [("g1", "东区网格", 4), ("g2", "西区网格", 4), ("g3", "南区网格", 3)]
UNITS = ("u1", "u2")


def _device(dev_id: str, kind: str, grid: str, building: str | None = None, unit: str | None = None,
            interval_s: float = 60.0, room: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"id": dev_id, "kind": kind, "grid": grid}
    if building:
        d["building"] = building
    if unit:
        d["unit"] = unit
    if room:
        d["room"] = room
    d["interval_s"] = interval_s
    return d


def build() -> dict[str, Any]:
    """The sample community as plain data."""
    grids: list[dict[str, Any]] = []
    devices: list[dict[str, Any]] = []
    n = 0
    for gid, gname, nbuild in GRIDS:
        buildings = []
        for _ in range(nbuild):
            n += 1
            bid = f"b{n:02d}"
            buildings.append({"id": bid, "name": f"{n}号楼", "floors": 18, "units": list(UNITS)})
            for u in UNITS:
                devices.append(_device(f"door-{bid}-{u}", "door_controller", gid, bid, u, 300))
                devices.append(_device(f"fgate-{bid}-{u}", "face_gate", gid, bid, u, 300))
                devices.append(_device(f"cam-{bid}-{u}-lobby", "camera", gid, bid, u, 10))
                devices.append(_device(f"elev-{bid}-{u}", "elevator", gid, bid, u, 300))
                devices.append(_device(f"firedoor-{bid}-{u}", "fire_door", gid, bid, u, 600))
                devices.append(_device(f"hydrant-{bid}-{u}", "hydrant", gid, bid, u, 60))
                devices.append(_device(f"panic-{bid}-{u}", "panic_button", gid, bid, u, 3600))
                for floor in (1, 6, 12, 18):
                    room = f"{floor}01"
                    devices.append(_device(f"smoke-{bid}-{u}-{room}", "smoke", gid, bid, u, 3600, room))
                for floor in (2, 9, 15):
                    room = f"{floor}02"
                    devices.append(_device(f"gas-{bid}-{u}-{room}", "gas", gid, bid, u, 60, room))
                    devices.append(_device(f"leak-{bid}-{u}-{room}", "water_leak", gid, bid, u, 3600, room))
                    devices.append(_device(f"wmeter-{bid}-{u}-{room}", "water_meter", gid, bid, u, 900, room))
                    devices.append(_device(f"dc-{bid}-{u}-{room}", "door_contact", gid, bid, u, 3600, room))
            devices.append(_device(f"elec-{bid}", "electrical", gid, bid, None, 60))
            devices.append(_device(f"env-{bid}", "env", gid, bid, None, 60))
        grids.append({"id": gid, "name": gname, "buildings": buildings})
        devices.append(_device(f"gate-{gid}-main", "turnstile", gid, None, None, 300))
        devices.append(_device(f"cam-{gid}-perimeter", "camera", gid, None, None, 10))
        devices.append(_device(f"cam-{gid}-firelane", "camera", gid, None, None, 10))
        devices.append(_device(f"ir-{gid}-fence", "intrusion", gid, None, None, 300))
        devices.append(_device(f"charger-{gid}", "charger", gid, None, None, 60))
        devices.append(_device(f"manhole-{gid}-1", "manhole", gid, None, None, 600))
        devices.append(_device(f"manhole-{gid}-2", "manhole", gid, None, None, 600))
        devices.append(_device(f"patrol-{gid}-cp1", "patrol", gid, None, None, 3600))
    return {
        "site": {"id": "sunrise", "name": "朝阳花园社区", "timezone": "Asia/Shanghai", "jurisdiction": "pcs-chaoyang",
                 "language": "zh",
                 # The API publishes residents' reports as events of this desk (api/data/people.py).
                 "devices": [{"id": "api-reports", "kind": "report_desk", "name": "居民报事台"}]},
        "grids": grids,
        "devices": devices,
        "staff": _staff(),
        "residents": _residents(grids),
    }


def _ref(seed: str) -> str:
    """An opaque person ref (what an enrolment system would hand us), never a name."""
    return hashlib.sha256(seed.encode()).hexdigest()[:16]


def _staff() -> list[dict[str, Any]]:
    """Grid workers on day and night shifts per grid, and the site-wide desks."""
    day = [{"start": "08:00", "end": "20:00"}]
    night = [{"start": "20:00", "end": "08:00"}]
    staff: list[dict[str, Any]] = []
    for gid, gname, _ in GRIDS:
        staff.append({"id": f"gw-{gid}-day", "role": "grid_worker", "name": f"{gname}网格员(白班)", "grids": [gid],
                      "shifts": day})
        staff.append({"id": f"gw-{gid}-night", "role": "grid_worker", "name": f"{gname}网格员(夜班)", "grids": [gid],
                      "shifts": night})
    staff += [
        {"id": "prop-day", "role": "property", "name": "物业服务中心", "shifts": day},
        {"id": "prop-night", "role": "property", "name": "物业夜间值班", "shifts": night},
        {"id": "police-chaoyang", "role": "police_liaison", "name": "派出所社区民警", "jurisdiction": "pcs-chaoyang"},
        {"id": "ctrl-room", "role": "control_room", "name": "监控中心"},
        {"id": "sec-supervisor", "role": "security_supervisor", "name": "保安队长"},
        {"id": "maint-desk", "role": "maintenance", "name": "设备维护",
         "shifts": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat"], "start": "08:00", "end": "18:00"}]},
        {"id": "fire-maint", "role": "fire_maintenance", "name": "消防维保单位"},
        {"id": "gas-company", "role": "gas_company", "name": "燃气公司抢修"},
        {"id": "municipal", "role": "municipal", "name": "市政热线"},
        {"id": "street-office", "role": "street_office", "name": "街道办"},
    ]
    return staff


def _residents(grids: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One opted-in resident per building: the flat with a door contact and a water meter on floor 9."""
    out = []
    for g in grids:
        for b in g["buildings"]:
            bid = b["id"]
            out.append({"ref": _ref(f"resident-{bid}-u1-902"), "grid": g["id"], "building": bid, "unit": "u1",
                        "devices": [f"dc-{bid}-u1-902", f"wmeter-{bid}-u1-902"],
                        "emergency_contact": _ref(f"contact-{bid}-u1-902")})
    return out


def main() -> int:
    """Write the sample file next to this script."""
    out = Path(__file__).resolve().parent / "community" / "sample.yaml"
    header = "# Generated by configs/make_sample.py; edit the generator, not this file.\n"
    out.write_text(header + yaml.safe_dump(build(), allow_unicode=True, sort_keys=False, width=120))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
