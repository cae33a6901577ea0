"""InfluxWriter: write line protocol to InfluxDB over one of two transports.

- v1: `POST /write` — InfluxDB < 1.8 (Debian ships 1.6.7), and also 1.8+.
- v2: influxdb-client's synchronous write API on `/api/v2/write` — InfluxDB 1.8+, 2.x and 3.x.
`auto` asks `/ping` for `X-Influxdb-Version` and takes v1 below 1.8, else v2.
"""

from __future__ import annotations

import logging
import re
from typing import Protocol

import httpx

from commhub.config import InfluxConfig

log = logging.getLogger(__name__)


class WriteError(Exception):
    """A write failed; `retryable` is False when InfluxDB refused the data itself (HTTP 4xx but 401/403)."""

    def __init__(self, message: str, retryable: bool, auth: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.auth = auth


# Our credentials, not the data: retrying is right once an operator fixes them or the grant.
_AUTH = (401, 403)
_RETRY = (0, 404, 408, 429, *_AUTH)


def _status_error(status: int, text: str) -> WriteError:
    if status in _AUTH:
        what = "credentials" if status == 401 else "permissions"
        return WriteError(f"HTTP {status}: InfluxDB refused our {what} (check influx.username/password/token and "
                          f"the grant on the database): {text}", retryable=True, auth=True)
    return WriteError(f"HTTP {status}: {text}", retryable=status >= 500 or status in _RETRY)


def _verify(url: str) -> bool:
    """Verify certificates for https; for plain http skip building a TLS context (30-55 ms of CPU each)."""
    # A plain-http client never uses TLS (redirects are not followed), so nothing is verified less.
    return not url.lower().startswith("http://")


class Transport(Protocol):
    """Writes one body of newline-separated points with microsecond timestamps."""

    name: str

    def write(self, body: bytes) -> None:
        """Write or raise WriteError."""

    def close(self) -> None:
        """Release connections."""


class V1Transport:
    """`POST /write?db=...&precision=u`."""

    name = "v1"

    def __init__(self, cfg: InfluxConfig) -> None:
        self.cfg = cfg
        auth = (cfg.username, cfg.password) if cfg.username else None
        self._http = httpx.Client(base_url=cfg.url, timeout=cfg.timeout_s, auth=auth, verify=_verify(cfg.url))
        self._params = {"db": cfg.database, "precision": "u"}
        if cfg.retention_policy:
            self._params["rp"] = cfg.retention_policy

    def ensure_database(self) -> None:
        """CREATE DATABASE (idempotent in InfluxDB 1.x)."""
        r = self._http.post("/query", params={"q": f'CREATE DATABASE "{self.cfg.database}"'})
        if r.status_code in _AUTH:
            raise _status_error(r.status_code, r.text[:200])
        if r.status_code != 200:
            raise WriteError(f"CREATE DATABASE failed: HTTP {r.status_code} {r.text[:200]}", retryable=True)

    def write(self, body: bytes) -> None:
        """Write or raise WriteError."""
        try:
            r = self._http.post("/write", params=self._params, content=body)
        except httpx.HTTPError as e:
            raise WriteError(f"{type(e).__name__}: {e}", retryable=True) from None
        if r.status_code == 204:
            return
        raise _status_error(r.status_code, r.text[:300])

    def close(self) -> None:
        """Release connections."""
        self._http.close()


class V2Transport:
    """influxdb-client's synchronous write API (`/api/v2/write`)."""

    name = "v2"

    def __init__(self, cfg: InfluxConfig) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.cfg = cfg
        self._client = InfluxDBClient(url=cfg.url, token=cfg.token, org=cfg.org,
                                      timeout=int(cfg.timeout_s * 1000), retries=False)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        bucket = cfg.database
        if cfg.retention_policy:
            bucket = f"{bucket}/{cfg.retention_policy}"
        self._bucket = bucket

    def write(self, body: bytes) -> None:
        """Write or raise WriteError."""
        from influxdb_client.client.write.point import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            self._api.write(bucket=self._bucket, org=self.cfg.org, record=body,
                            write_precision=WritePrecision.US)  # type: ignore[arg-type]
        except ApiException as e:
            raise _status_error(int(e.status or 0), str(e.body)[:300]) from None
        except Exception as e:  # urllib3 connection errors and timeouts
            raise WriteError(f"{type(e).__name__}: {e}", retryable=True) from None

    def close(self) -> None:
        """Release connections."""
        self._client.close()


_VERSION = re.compile(r"^v?(\d+)\.(\d+)")


def choose_transport(version: str | None) -> str:
    """'v1' for InfluxDB below 1.8, else 'v2' (2.x, 3.x and unknown builds speak /api/v2/write)."""
    m = _VERSION.match(version or "")
    if m and (int(m.group(1)), int(m.group(2))) < (1, 8):
        return "v1"
    return "v2"


def detect(url: str, timeout: float = 5.0) -> str | None:
    """The X-Influxdb-Version that /ping reports, or None when the server does not say."""
    r = httpx.get(f"{url.rstrip('/')}/ping", timeout=timeout, verify=_verify(url))
    return r.headers.get("X-Influxdb-Version")


def make_transport(cfg: InfluxConfig) -> Transport:
    """Build the configured transport; `auto` asks the server (raises httpx.HTTPError when unreachable)."""
    kind: str = cfg.transport
    if kind == "auto":
        version = detect(cfg.url, cfg.timeout_s)
        kind = choose_transport(version)
        log.info("InfluxDB %s at %s: using the %s transport", version or "(version unknown)", cfg.url, kind)
    if kind == "v1":
        t1 = V1Transport(cfg)
        if cfg.create_database:
            t1.ensure_database()
        return t1
    return V2Transport(cfg)
