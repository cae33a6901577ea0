"""A small InfluxQL client for `/query`: InfluxDB 1.x natively, 2.x/3.x through their v1 compatibility API."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from api.services.errors import Unavailable
from commhub.config import InfluxConfig

log = logging.getLogger(__name__)


class InfluxUnavailable(Unavailable):
    """InfluxDB did not answer, or refused the query (503)."""


class InfluxReader:
    """Runs read-only InfluxQL; one HTTP connection pool per process."""

    def __init__(self, cfg: InfluxConfig) -> None:
        self.cfg = cfg
        self._http: httpx.Client | None = None

    def start(self) -> None:
        """Open the connection pool."""
        headers = {"Authorization": f"Token {self.cfg.token}"} if self.cfg.token else {}
        auth = (self.cfg.username, self.cfg.password) if self.cfg.username else None
        self._http = httpx.Client(base_url=self.cfg.url, timeout=self.cfg.timeout_s, headers=headers, auth=auth)

    def stop(self) -> None:
        """Close the pool."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def query(self, q: str) -> list[dict[str, Any]]:
        """Run one SELECT and return its series (each: name, columns, values[, tags]); times in ns."""
        if self._http is None:
            self.start()
        assert self._http is not None
        params = {"db": self.cfg.database, "q": q, "epoch": "ns"}
        if self.cfg.retention_policy:
            params["rp"] = self.cfg.retention_policy
        try:
            r = self._http.get("/query", params=params)
        except httpx.HTTPError as e:
            raise InfluxUnavailable(f"InfluxDB unreachable: {type(e).__name__}") from None
        if r.status_code != 200:
            raise InfluxUnavailable(f"InfluxDB answered HTTP {r.status_code}")
        results = r.json().get("results", [])
        if not results:
            return []
        first = results[0]
        if "error" in first:
            # Our queries are built from validated parts, so this is a server-side problem (or a missing
            # database, which InfluxDB reports as an error): the query text stays out of the log.
            if "database not found" in str(first["error"]):
                return []
            log.warning("InfluxDB refused a query: %s", str(first["error"])[:200])
            raise InfluxUnavailable("InfluxDB refused the query")
        return list(first.get("series", []))

    def ping(self) -> bool:
        """Whether InfluxDB answers /ping."""
        if self._http is None:
            self.start()
        assert self._http is not None
        try:
            return self._http.get("/ping").status_code == 204
        except httpx.HTTPError:
            return False
