"""Device identity on a real mosquitto: the provisioned password file, ACL and certificates, as `commhub up` has."""

from __future__ import annotations

import ssl
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from commhub import certs, topics
from commhub.config import Config, MqttConfig, MqttTlsConfig, load
from commhub.mqtt import API_ACCOUNT, HUB_ACCOUNT, agent_account, make_client
from commhub.provision import accounts_for, hash_password, provision
from commhub.services import BrokerAuth, BrokerTls, Mosquitto
from commhub.wire import DeviceKind
from edge_agents.base import BaseAgent

pytestmark = pytest.mark.broker
REPO = Path(__file__).resolve().parents[1]
WAIT = 30.0  # generous: the machine is shared


@dataclass
class Env:
    """One provisioned broker shared by the checks of this module."""

    cfg: Config
    broker: Mosquitto
    mqtt_dir: Path
    certs_dir: Path
    site: str = ""
    devices: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (kind, agent account)

    def secret(self, account: str) -> str:
        return (self.mqtt_dir / "accounts" / f"{account}.secret").read_text().strip()

    def tls(self, account: str | None) -> MqttConfig:
        """An MQTT config for the TLS port with this account's password and (when given) certificate."""
        client = ({"cert": self.certs_dir / "clients" / "{account}.crt",
                   "key": self.certs_dir / "clients" / "{account}.key"} if account else {})
        assert self.broker.tls is not None
        return MqttConfig(port=self.broker.tls.port, password_file=self.mqtt_dir / "accounts" / "{account}.secret",
                          tls=MqttTlsConfig(ca=self.certs_dir / "ca.crt", **client))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("broker-auth")
    cfg = load(REPO / "configs" / "commhub.yaml")
    mqtt_dir, certs_dir = tmp / "mqtt", tmp / "certs"
    accounts = provision(cfg, mqtt_dir)
    issued = certs.init(certs_dir, [a.name for a in accounts], ["127.0.0.1", "localhost"])
    broker = Mosquitto(tmp / "broker", auth=BrokerAuth(mqtt_dir / "passwd", mqtt_dir / "acl"),
                       tls=BrokerTls(issued["ca"].cert, issued["broker"].cert, issued["broker"].key))
    broker.start()
    site = cfg.community.site.id
    agents = {d.id: a.name for a in accounts for d in cfg.community.devices
              if topics.event(cfg.mqtt.root, site, d.kind.value, d.id) in a.write}
    devices = {d.id: (d.kind.value, agents[d.id]) for d in cfg.community.devices if d.id in agents}
    yield Env(cfg, broker, mqtt_dir, certs_dir, site, devices)
    broker.stop(kill=True)


class Client:
    """A paho MQTT 5 client that records CONNACK, PUBACK and SUBACK reason codes and messages."""

    def __init__(self, username: str | None, password: str | None, port: int,
                 ctx: ssl.SSLContext | None = None, client: paho.Client | None = None) -> None:
        self.c = client or paho.Client(CallbackAPIVersion.VERSION2, client_id="t-" + uuid.uuid4().hex[:8],
                                       protocol=paho.MQTTv5)
        if client is None and username:
            self.c.username_pw_set(username, password)
        if ctx is not None:
            self.c.tls_set_context(ctx)
        self.port = port
        self.connack: Any = None
        self.pubacks: dict[int, int] = {}
        self.subacks: list[list[int]] = []
        self.messages: list[str] = []
        self._event = threading.Event()
        self.c.on_connect = self._on_connect
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        self.pubacks[mid] = int(rc.value)
        self._event.set()

    def _on_subscribe(self, _c: Any, _u: Any, _m: int, rcs: list[Any], _p: Any) -> None:
        self.subacks.append([int(r.value) for r in rcs])
        self._event.set()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        self.messages.append(msg.topic)
        self._event.set()

    def _set(self) -> None:
        self._event.set()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.connack = rc
        self._set()

    def _wait(self, cond: Any) -> bool:
        deadline = time.monotonic() + WAIT
        while not cond():
            if time.monotonic() > deadline:
                return False
            self._event.wait(0.1)
            self._event.clear()
        return True

    def connect(self) -> int:
        """CONNACK reason code; -1 when the connection failed before any CONNACK (e.g. TLS)."""
        try:
            self.c.connect("127.0.0.1", self.port, 30)
        except (OSError, ssl.SSLError):
            return -1
        self.c.loop_start()
        self._wait(lambda: self.connack is not None or (not self.c.is_connected() and self._gone()))
        rc = -1 if self.connack is None else int(self.connack.value)
        if rc != 0:
            self.close()
        return rc

    def _gone(self) -> bool:
        return self.c.socket() is None

    def publish(self, topic: str) -> int:
        """PUBACK reason code of one QoS 1 publish."""
        info = self.c.publish(topic, b'{"x":1}', qos=1)
        assert self._wait(lambda: info.mid in self.pubacks), f"no PUBACK for {topic}"
        return self.pubacks[info.mid]

    def subscribe(self, topic_filter: str) -> list[int]:
        """SUBACK reason codes."""
        n = len(self.subacks)
        self.c.subscribe(topic_filter, qos=1)
        assert self._wait(lambda: len(self.subacks) > n), f"no SUBACK for {topic_filter}"
        return self.subacks[n]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _plain(env: Env, account: str, password: str | None = None) -> Client:
    client = Client(account, env.secret(account) if password is None else password, env.broker.port)
    assert client.connect() == 0, f"{account} was refused"
    return client


def _device(env: Env, agent: str, other: bool = False) -> tuple[str, str]:
    """A device served by agent (or, with other=True, by another agent)."""
    return next((d, k) for d, (k, a) in env.devices.items() if (a == agent) != other and a != HUB_ACCOUNT)


def test_provisioned_files_are_private_and_in_mosquitto_format(env: Env) -> None:
    for path in [env.mqtt_dir / "passwd", env.mqtt_dir / "acl", *(env.mqtt_dir / "accounts").iterdir(),
                 env.certs_dir / "ca.key", env.certs_dir / "broker.key"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((env.mqtt_dir / "accounts").stat().st_mode) == 0o700
    line = next(x for x in (env.mqtt_dir / "passwd").read_text().splitlines() if x.startswith(f"{HUB_ACCOUNT}:"))
    user, hashed = line.split(":", 1)
    salt = __import__("base64").b64decode(hashed.split("$")[3])
    assert hash_password(env.secret(user), salt) == hashed
    # Re-provisioning keeps every account's secret: running agents keep working.
    before = {a.name: env.secret(a.name) for a in accounts_for(env.cfg)}
    provision(env.cfg, env.mqtt_dir)
    assert {n: env.secret(n) for n in before} == before


def test_unknown_client_wrong_password_and_anonymous_are_refused(env: Env) -> None:
    # mosquitto 2.0.11 answers 0x87 Not authorized to all three; 0x86 Bad user name or password is as good.
    refused = (0x86, 0x87)
    assert Client("nobody", "x", env.broker.port).connect() in refused
    assert Client(HUB_ACCOUNT, env.secret(HUB_ACCOUNT) + "x", env.broker.port).connect() in refused
    assert Client(None, None, env.broker.port).connect() in refused
    assert Client(HUB_ACCOUNT, env.secret(HUB_ACCOUNT), env.broker.port).connect() == 0  # the control


def test_agent_publishes_only_for_its_own_devices(env: Env) -> None:
    root, site = env.cfg.mqtt.root, env.site
    access = agent_account(site, "access")
    own_id, own_kind = _device(env, access)
    other_id, other_kind = _device(env, access, other=True)
    hub = _plain(env, HUB_ACCOUNT)
    agent = _plain(env, access)
    try:
        assert hub.subscribe(topics.site_filter(root, site)) == [1]
        own = topics.event(root, site, own_kind, own_id)
        other = topics.event(root, site, other_kind, other_id)
        elsewhere = topics.event(root, "evil", own_kind, own_id)
        assert agent.publish(other) == 0x87
        assert agent.publish(elsewhere) == 0x87
        assert agent.publish(topics.command(root, site, own_kind, own_id)) == 0x87
        assert agent.publish(own) == 0
        assert hub._wait(lambda: own in hub.messages)
        # The hub saw the allowed message, which was sent after the refused ones: those never arrive.
        assert other not in hub.messages and elsewhere not in hub.messages
    finally:
        hub.close()
        agent.close()


def test_device_cannot_read_alerts_and_hub_cannot_publish_as_device(env: Env) -> None:
    root, site = env.cfg.mqtt.root, env.site
    access = agent_account(site, "access")
    dev_id, kind = _device(env, access)
    agent, api, hub = _plain(env, access), _plain(env, API_ACCOUNT), _plain(env, HUB_ACCOUNT)
    watcher = _plain(env, HUB_ACCOUNT)
    try:
        agent_sub = agent.subscribe(topics.alerts_filter(root))
        assert api.subscribe(topics.alerts_filter(root, site)) == [1]
        # Another community's alerts on the same broker: the API's account does not read them.
        foreign_sub = api.subscribe(topics.alerts_filter(root, "elsewhere"))
        assert watcher.subscribe(topics.site_filter(root, site)) == [1]
        foreign = topics.alert(root, "elsewhere", "g1", "critical")
        alert = topics.alert(root, site, "g1", "critical")
        assert hub.publish(foreign) == 0
        assert hub.publish(alert) == 0
        assert api._wait(lambda: alert in api.messages)
        assert foreign_sub == [0x87] or foreign not in api.messages  # published first: it would be here by now
        assert agent_sub == [0x87] or alert not in agent.messages
        assert agent.messages == []
        # The hub may write under commhub/hub/v1 only; the API only people's input (patrol check-ins).
        forged = topics.event(root, site, kind, dev_id)
        assert hub.publish(forged) == 0x87
        assert api.publish(alert) == 0x87 and api.publish(forged) == 0x87
        patrol = next(d for d in env.cfg.community.devices if d.kind is DeviceKind.PATROL)
        assert api.publish(topics.event(root, site, patrol.kind.value, patrol.id)) == 0
        assert agent.publish(topics.event(root, site, kind, dev_id)) == 0
        assert watcher._wait(lambda: forged in watcher.messages)
        assert watcher.messages.count(forged) == 1  # the agent's, not the hub's
    finally:
        for c in (agent, api, hub, watcher):
            c.close()


def test_tls_with_the_generated_ca_for_hub_api_and_agent(env: Env, tmp_path: Path) -> None:
    root, site = env.cfg.mqtt.root, env.site
    assert env.broker.tls is not None
    hub = Client(None, None, env.broker.tls.port,
                 client=make_client("t-hub-" + uuid.uuid4().hex[:6], env.tls(HUB_ACCOUNT), account=HUB_ACCOUNT))
    api = Client(None, None, env.broker.tls.port,
                 client=make_client("t-api-" + uuid.uuid4().hex[:6], env.tls(API_ACCOUNT), account=API_ACCOUNT))
    assert hub.connect() == 0 and api.connect() == 0
    access = agent_account(site, "access")
    dev_id, kind = _device(env, access)
    agent = BaseAgent(env.tls(None).model_copy(update={"tls": env.tls(access).tls}), site, "access",
                      tmp_path / "agent", env.cfg.agent)
    agent.add_device(dev_id, DeviceKind(kind))
    try:
        assert hub.subscribe(topics.site_filter(root, site)) == [1]
        assert api.subscribe(topics.alerts_filter(root, site)) == [1]
        agent.start()
        assert agent.wait_connected(WAIT), "the agent did not connect over TLS"
        from commhub.wire import Heartbeat
        agent.publish(dev_id, Heartbeat(uptime_s=1.0))
        assert agent.flush(WAIT)
        tele = topics.telemetry(root, site, kind, dev_id)
        assert hub._wait(lambda: tele in hub.messages)
        alert = topics.alert(root, site, "g1", "info")
        assert hub.publish(alert) == 0
        assert api._wait(lambda: alert in api.messages)
    finally:
        agent.stop()
        hub.close()
        api.close()


def test_tls_port_refuses_plain_clients_and_foreign_certificates(env: Env, tmp_path: Path) -> None:
    assert env.broker.tls is not None
    port = env.broker.tls.port
    assert Client(HUB_ACCOUNT, env.secret(HUB_ACCOUNT), port).connect() == -1  # plain TCP on the TLS port
    # A client certificate from another CA, trusting the right broker CA.
    foreign = certs.init(tmp_path / "foreign", [HUB_ACCOUNT], ["127.0.0.1"])
    ctx = ssl.create_default_context(cafile=str(env.certs_dir / "ca.crt"))
    ctx.load_cert_chain(str(foreign[HUB_ACCOUNT].cert), str(foreign[HUB_ACCOUNT].key))
    assert Client(HUB_ACCOUNT, env.secret(HUB_ACCOUNT), port, ctx).connect() == -1
    # No client certificate at all.
    bare = ssl.create_default_context(cafile=str(env.certs_dir / "ca.crt"))
    assert Client(HUB_ACCOUNT, env.secret(HUB_ACCOUNT), port, bare).connect() == -1
    # A broker certificate from another CA is refused by our clients.
    wrong_ca = ssl.create_default_context(cafile=str(foreign["ca"].cert))
    ours = env.certs_dir / "clients"
    wrong_ca.load_cert_chain(str(ours / f"{HUB_ACCOUNT}.crt"), str(ours / f"{HUB_ACCOUNT}.key"))
    assert Client(HUB_ACCOUNT, env.secret(HUB_ACCOUNT), port, wrong_ca).connect() == -1
    # The plain listener is on loopback only.
    assert env.broker.host == "127.0.0.1" and "listener" in env.broker.config_text()


@pytest.mark.services
def test_hub_worker_stores_an_agents_stream_over_tls(env: Env, influxd: Any, tmp_path: Path) -> None:
    """The hub's own read loop over TLS (decrypted bytes wait in the SSL object, not the socket)."""
    from conftest import influx_count

    from hub.worker import Worker

    site = env.site
    db = "tls_" + uuid.uuid4().hex[:8]
    hub_cfg = env.cfg.hub.model_copy(update={
        "worker_id": "hub-tls-" + uuid.uuid4().hex[:6], "metrics": env.cfg.hub.metrics.model_copy(update={"port": 0}),
        "spool": env.cfg.hub.spool.model_copy(update={"dir": tmp_path / "spool"}), "snapshots_dir": tmp_path / "s"})
    cfg = env.cfg.model_copy(update={
        "mqtt": env.tls(HUB_ACCOUNT), "hub": hub_cfg,
        "influx": env.cfg.influx.model_copy(update={"url": influxd.url, "database": db, "transport": "v1"})})
    worker = Worker(cfg)
    access = agent_account(site, "access")
    devices = [d for d, (_k, a) in env.devices.items() if a == access][:5]
    agent = BaseAgent(env.tls(access), site, "access", tmp_path / "agent",
                      env.cfg.agent.model_copy(update={"heartbeats": False}))
    for d in devices:
        agent.add_device(d, DeviceKind(env.devices[d][0]))
    n = 2000
    worker.start()
    try:
        assert worker.wait_connected(WAIT), "the hub did not connect over TLS"
        agent.start()
        assert agent.wait_connected(WAIT)
        from commhub.wire import Heartbeat
        for i in range(n):
            agent.publish(devices[i % len(devices)], Heartbeat(uptime_s=float(i)))
        assert agent.flush(WAIT) and agent.stats.rejected == 0
        deadline = time.monotonic() + WAIT
        while influx_count(influxd.url, db, "heartbeat") < n and time.monotonic() < deadline:
            time.sleep(0.3)
        assert influx_count(influxd.url, db, "heartbeat") == n
    finally:
        agent.stop()
        worker.stop()


def test_certificate_identity_is_the_username_on_the_tls_listener(env: Env, tmp_path: Path) -> None:
    """use_identity_as_username: the ACL applies to the certificate's CN, with no password, whatever name is sent."""
    issued = {n: certs.Issued(env.certs_dir / f"{n}.crt", env.certs_dir / f"{n}.key") for n in ("ca", "broker")}
    broker = Mosquitto(tmp_path / "broker", auth=BrokerAuth(env.mqtt_dir / "passwd", env.mqtt_dir / "acl"),
                       tls=BrokerTls(issued["ca"].cert, issued["broker"].cert, issued["broker"].key,
                                     use_identity_as_username=True))
    broker.start()
    root, site = env.cfg.mqtt.root, env.site
    access = agent_account(site, "access")
    own_id, own_kind = _device(env, access)
    other_id, other_kind = _device(env, access, other=True)
    other_agent = env.devices[other_id][1]
    own, other = topics.event(root, site, own_kind, own_id), topics.event(root, site, other_kind, other_id)
    assert broker.tls is not None
    port = broker.tls.port

    def with_cert(account: str, username: str | None = None, password: str | None = None) -> Client:
        ctx = ssl.create_default_context(cafile=str(env.certs_dir / "ca.crt"))
        ctx.load_cert_chain(str(env.certs_dir / "clients" / f"{account}.crt"),
                            str(env.certs_dir / "clients" / f"{account}.key"))
        return Client(username, password, port, ctx)

    # The agent as the config makes it: its certificate, `identity: true`, no password file at all.
    cfg = MqttConfig(port=port, tls=MqttTlsConfig(ca=env.certs_dir / "ca.crt", identity=True,
                                                  cert=env.certs_dir / "clients" / "{account}.crt",
                                                  key=env.certs_dir / "clients" / "{account}.key"))
    agent = Client(None, None, port, client=make_client("t-id-" + uuid.uuid4().hex[:6], cfg, account=access))
    hub = Client(None, None, port, client=make_client("t-idh-" + uuid.uuid4().hex[:6], cfg, account=HUB_ACCOUNT))
    # Another account's certificate, claiming the agent's name and even its password.
    impostor = with_cert(other_agent, access, env.secret(access))
    hub_as_agent = with_cert(HUB_ACCOUNT, access, env.secret(access))
    clients = [agent, hub, impostor, hub_as_agent]
    try:
        assert [c.connect() for c in clients] == [0, 0, 0, 0], "a certificate of our CA is the login"
        assert hub.subscribe(topics.site_filter(root, site)) == [1]
        assert agent.publish(other) == 0x87, "an agent may not publish for another agent's device"
        assert agent.publish(own) == 0
        assert impostor.publish(own) == 0x87, "a certificate of another account cannot act as the agent"
        assert hub_as_agent.publish(own) == 0x87, "the hub's certificate cannot publish as a device"
        assert impostor.publish(other) == 0, "the impostor is what its certificate says: the other agent"
        assert hub._wait(lambda: own in hub.messages and other in hub.messages)
        assert hub.messages.count(own) == 1 and hub.messages.count(other) == 1
        # A certificate from another CA, and no certificate, are still refused before any login.
        foreign = certs.init(tmp_path / "foreign", [access], ["127.0.0.1"])
        ctx = ssl.create_default_context(cafile=str(env.certs_dir / "ca.crt"))
        ctx.load_cert_chain(str(foreign[access].cert), str(foreign[access].key))
        assert Client(None, None, port, ctx).connect() == -1
        bare = ssl.create_default_context(cafile=str(env.certs_dir / "ca.crt"))
        assert Client(access, env.secret(access), port, bare).connect() == -1
    finally:
        for c in clients:
            c.close()
        broker.stop(kill=True)
    with pytest.raises(ValueError, match="require_certificate"):
        Mosquitto(tmp_path / "b2", tls=BrokerTls(issued["ca"].cert, issued["broker"].cert, issued["broker"].key,
                                                 require_certificate=False, use_identity_as_username=True))


def test_the_hub_and_api_accounts_read_only_their_own_sites_topics() -> None:
    # A broker several communities share: neither account of one community reads another's devices or alerts.
    cfg = load(REPO / "configs" / "commhub.yaml")
    root, site = cfg.mqtt.root, cfg.community.site.id
    accounts = {a.name: a for a in accounts_for(cfg)}
    assert set(accounts[HUB_ACCOUNT].read) == {topics.site_filter(root, site), topics.dead_letter(root)}
    assert accounts[API_ACCOUNT].read == (topics.alerts_filter(root, site),)
    neighbour = (topics.telemetry(root, "elsewhere", "gas", "gas-b01-u1-202"),
                 topics.alert(root, "elsewhere", "g1", "high"))
    for account in accounts.values():
        assert not any(topics.matches(f, t) for f in account.read for t in neighbour), account.name
