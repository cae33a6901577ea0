"""`commhub mqtt provision`: one broker account per component, a mosquitto password file and an ACL.

Accounts come from the configuration: the hub, the API, and one per edge agent (access, facility, camera,
and the simulator when asked for), each allowed exactly the topics of the devices it serves. An account's
name is also its MQTT username and, for agents, its client id (`agent-<site>-<name>`, as BaseAgent uses).
Passwords are 256-bit random tokens, so mosquitto's own PBKDF2 iteration count is no weakness; existing
secrets are kept when the files are made again, so adding a device does not lock out running agents.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import logging
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from commhub import topics
from commhub.community import Device
from commhub.config import Config, load
from commhub.mqtt import API_ACCOUNT, HUB_ACCOUNT, agent_account
from commhub.wire import DeviceKind

log = logging.getLogger(__name__)

SIM_AGENT = "sim"
API_REPORT_DEVICE = "api-reports"  # api/data/people.py REPORT_DEVICE: the API's report desk
# mosquitto_passwd (2.0) writes $7$: PBKDF2-HMAC-SHA512, 101 iterations, a 12-byte salt.
_ITERATIONS = 101
_SALT_BYTES = 12
# Channels a device publishes on (cmd is the hub's); cameras also send snapshots on snap/<id>.
_DEVICE_CHANNELS = ("evt", "tele", "state", "birth")


@dataclass(frozen=True, slots=True)
class Account:
    """One broker login and what it may do."""

    name: str
    write: tuple[str, ...]
    read: tuple[str, ...]


def write_private(path: Path, data: bytes | str) -> None:
    """Write a file only its owner can read, replacing any old one atomically."""
    raw = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)  # O_CREAT's mode is filtered by the umask; an existing tmp kept its old mode
    os.replace(tmp, path)


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A password in mosquitto's `$7$` format (what mosquitto_passwd writes)."""
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS)
    return f"$7${_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _device_topics(root: str, site: str, dev_id: str, kind: str) -> list[str]:
    out = [topics.device(root, site, kind, dev_id, ch) for ch in _DEVICE_CHANNELS]
    if kind == DeviceKind.CAMERA.value:
        out.append(topics.device(root, site, kind, dev_id, "snap") + "/+")
    return out


def _agent(cfg: Config, name: str, devices: Iterable[Device]) -> Account:
    root, site = cfg.mqtt.root, cfg.community.site.id
    write: list[str] = [topics.device(root, site, DeviceKind.AGENT.value, name, ch)
                        for ch in ("state", "birth", "tele")]
    read: list[str] = []
    for d in devices:
        write += _device_topics(root, site, d.id, d.kind.value)
        read.append(topics.command(root, site, d.kind.value, d.id))
    return Account(agent_account(site, name), tuple(write), tuple(read))


def accounts_for(cfg: Config, *, simulator: bool = False) -> list[Account]:
    """The hub, the API and every agent the configuration describes (plus the simulator's, when asked)."""
    # Imported here: the agent modules are not needed to run the broker side of a hub-only install.
    from edge_agents.access.agent import ACCESS_KINDS
    from edge_agents.base.devices import select_devices
    from edge_agents.facility.bodies import FACILITY_KINDS

    root = cfg.mqtt.root
    hub_root = topics.hub_root(root)
    community = cfg.community
    site = community.site.id
    out = [
        # The hub reads its own site's device topics (what it subscribes to; another community on the broker is
        # not its business) and its dead letters: the operator's way to watch them.
        Account(HUB_ACCOUNT, write=(f"{hub_root}/#",),
                read=(topics.site_filter(root, site), topics.dead_letter(root))),
    ]
    # The API publishes people's input on device topics: patrol check-ins as the checkpoint's event, and
    # residents' reports as events of the report desk (api/data/people.py); nothing else.
    api_writes = [topics.event(root, site, d.kind.value, d.id) for d in community.devices
                  if d.kind is DeviceKind.PATROL]
    api_writes.append(topics.event(root, site, DeviceKind.REPORT_DESK.value, API_REPORT_DEVICE))
    out.append(Account(API_ACCOUNT, write=tuple(api_writes), read=(topics.alerts_filter(root, site),)))
    out.append(_agent(cfg, "access", select_devices(community, ACCESS_KINDS, cfg.agent.access.devices,
                                                      "agent.access").values()))
    out.append(_agent(cfg, "facility", select_devices(community, FACILITY_KINDS, cfg.agent.facility.devices,
                                                        "agent.facility").values()))
    if cfg.cameras.devices:
        index = community.device_index()
        cams = [index[c.id] for c in cfg.cameras.devices if c.id in index]
        out.append(_agent(cfg, cfg.cameras.agent_name, cams))
    if simulator:
        out.append(_agent(cfg, SIM_AGENT, community.devices))
    return out


def acl_text(accounts: Sequence[Account]) -> str:
    """A mosquitto acl_file: each user gets exactly its own topics; nothing for anyone else."""
    lines = ["# Written by `commhub mqtt provision`; edit the community or agent config and run it again."]
    for a in accounts:
        lines += ["", f"user {a.name}"]
        lines += [f"topic write {t}" for t in a.write]
        lines += [f"topic read {t}" for t in a.read]
    return "\n".join(lines) + "\n"


def _secret(accounts_dir: Path, name: str) -> str:
    path = accounts_dir / f"{name}.secret"
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    value = secrets.token_urlsafe(32)
    write_private(path, value + "\n")
    return value


def provision(cfg: Config, out: Path, *, simulator: bool = False,
              owner: tuple[int, int] | None = None) -> list[Account]:
    """Write out/passwd, out/acl and out/accounts/<name>.secret (all 0600); returns the accounts."""
    accounts = accounts_for(cfg, simulator=simulator)
    accounts_dir = out / "accounts"
    accounts_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(accounts_dir, 0o700)
    entries = [f"{a.name}:{hash_password(_secret(accounts_dir, a.name))}" for a in accounts]
    write_private(out / "passwd", "\n".join(entries) + "\n")
    write_private(out / "acl", acl_text(accounts))
    if owner is not None:
        # The broker (uid 1883 in the eclipse-mosquitto image) must read these two; the secrets stay ours.
        for name in ("passwd", "acl"):
            os.chown(out / name, *owner)
    return accounts


def load_for_provisioning(path: str | Path) -> Config:
    """The configuration the accounts are derived from."""
    return load(path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `commhub mqtt`."""
    sub = parser.add_subparsers(dest="mqtt_command", required=True, metavar="ACTION")
    p = sub.add_parser("provision", help="write the broker's password file and ACL, and one secret per account")
    p.add_argument("--config", required=True, help="commhub config (community and agents)")
    p.add_argument("--out", default="run/mqtt", help="directory for passwd, acl and accounts/")
    p.add_argument("--simulator", action="store_true",
                   help="also an account for the simulator, which may publish as every device (never in production)")
    p.add_argument("--owner", help="UID:GID to own passwd and acl (e.g. 1883:1883 for the mosquitto image)")


def run(args: argparse.Namespace) -> int:
    """Write the files and say where."""
    cfg = load_for_provisioning(args.config)
    owner = None
    if args.owner:
        uid, _, gid = args.owner.partition(":")
        owner = (int(uid), int(gid or uid))
    out = Path(args.out)
    accounts = provision(cfg, out, simulator=args.simulator, owner=owner)
    log.info("%d accounts: %s; broker files %s and %s; secrets under %s", len(accounts),
             ", ".join(a.name for a in accounts), out / "passwd", out / "acl", out / "accounts")
    return 0
