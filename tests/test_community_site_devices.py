"""Site-level devices: the API's report desk is registered in the community model and validated like any device."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alerts_helpers import community
from pydantic import ValidationError

from api.data.people import REPORT_DEVICE
from commhub.community import SITE_LEVEL_GRID, Community
from commhub.config import load
from commhub.mqtt import API_ACCOUNT
from commhub.provision import accounts_for
from commhub.wire import DeadLetter, DeviceKind, Envelope, ResidentReport
from hub.ingest.message import Accepted
from hub.ingest.validate import Validator

REPO = Path(__file__).resolve().parents[1]


def _report(device: str = REPORT_DEVICE) -> bytes:
    env = Envelope(device_id=device, ts=datetime(2026, 6, 1, tzinfo=UTC), seq=1,
                   body=ResidentReport(report_id="r1", category="noise", place_grid="g1", source="staff"))
    return env.model_dump_json().encode()


def _with_site_devices(*devices: dict[str, Any]) -> dict[str, Any]:
    data = community().model_dump(mode="json", exclude_none=True)
    data["site"]["devices"] = list(devices)
    return data


def test_a_site_device_is_registered_in_no_cell_and_walked_by_nothing_that_walks_cells() -> None:
    c = community()
    desk = c.device_index()[REPORT_DEVICE]
    assert desk.kind is DeviceKind.REPORT_DESK and desk.grid == SITE_LEVEL_GRID and desk.building is None
    assert desk.effective_layer.value == "people"
    # The simulator, coverage and the liveness rules walk `devices`: the desk is not among them.
    assert REPORT_DEVICE not in {d.id for d in c.devices}
    assert len(c.device_index()) == len(c.devices) + len(c.site.devices)


@pytest.mark.parametrize(("devices", "error"), [
    ([{"id": "desk", "kind": "report_desk", "grid": "g1"}], "grid"),  # a site device has no place to give
    ([{"id": "desk", "kind": "agent"}], "not registered"),
    ([{"id": "desk", "kind": "report_desk"}, {"id": "desk", "kind": "report_desk"}], "duplicate"),
    ([{"id": "gas-b1", "kind": "report_desk"}], "duplicate device id"),  # an id of a device in a cell
    ([{"id": "desk", "kind": "doorbell"}], "kind"),
])
def test_bad_site_devices_are_refused_with_the_reason(devices: list[dict[str, Any]], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        Community.model_validate(_with_site_devices(*devices))


def test_no_grid_cell_may_take_the_site_level_grid_id() -> None:
    data = _with_site_devices()
    data["grids"].append({"id": SITE_LEVEL_GRID})
    with pytest.raises(ValidationError, match="reserved"):
        Community.model_validate(data)


def test_validation_treats_the_report_desk_like_any_device() -> None:
    c = community()
    v = Validator("commhub", c.device_index(), "w", c.site.id)
    ok = v.check(f"commhub/v1/{c.site.id}/report_desk/{REPORT_DEVICE}/evt", _report(), time.time())
    assert isinstance(ok, Accepted) and ok.device is not None and ok.device.grid == SITE_LEVEL_GRID
    # No kind is admitted for its own sake any more: an unregistered desk is an unknown device ...
    rogue = v.check(f"commhub/v1/{c.site.id}/report_desk/rogue-desk/evt", _report("rogue-desk"), time.time())
    assert isinstance(rogue, DeadLetter) and rogue.reason == "unknown_device"
    # ... and the registered one under another kind is a kind mismatch.
    wrong = v.check(f"commhub/v1/{c.site.id}/camera/{REPORT_DEVICE}/evt", _report(), time.time())
    assert isinstance(wrong, DeadLetter) and wrong.reason == "kind_mismatch"
    # A community that does not register the desk refuses its reports' events.
    bare = Community.model_validate(_with_site_devices())
    v = Validator("commhub", bare.device_index(), "w", bare.site.id)
    out = v.check(f"commhub/v1/{bare.site.id}/report_desk/{REPORT_DEVICE}/evt", _report(), time.time())
    assert isinstance(out, DeadLetter) and out.reason == "unknown_device"


def test_the_shipped_community_registers_the_apis_desk_and_the_api_may_publish_there() -> None:
    cfg = load(REPO / "configs" / "commhub.yaml")
    assert cfg.community.device_index()[REPORT_DEVICE].kind is DeviceKind.REPORT_DESK
    api = next(a for a in accounts_for(cfg) if a.name == API_ACCOUNT)
    assert f"{cfg.mqtt.root}/v1/{cfg.community.site.id}/report_desk/{REPORT_DEVICE}/evt" in api.write
