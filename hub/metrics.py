"""Prometheus metrics of one hub worker, in a registry of its own (so tests can run several workers)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge


class HubMetrics:
    """The hub's counters and gauges."""

    def __init__(self, worker: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"worker": worker}
        r = self.registry

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, ("worker", *extra), registry=r)

        self.messages_in = counter("commhub_messages_in_total", "MQTT messages received").labels(**labels)
        self._invalid = counter("commhub_messages_invalid_total", "Messages sent to the dead-letter topic",
                                ("reason",))
        self.duplicates = counter("commhub_messages_duplicate_total",
                                  "Messages dropped as duplicates of (device_id, seq)").labels(**labels)
        self.points_spooled = counter("commhub_points_spooled_total", "Points durably spooled").labels(**labels)
        self.points_written = counter("commhub_points_written_total", "Points written to InfluxDB").labels(**labels)
        self.points_rejected = counter("commhub_points_rejected_total",
                                       "Points InfluxDB refused as malformed (kept in spool/rejected)").labels(**labels)
        self.write_errors = counter("commhub_write_errors_total", "Failed InfluxDB writes (retried)").labels(**labels)
        self.write_auth_errors = counter("commhub_write_auth_errors_total",
                                         "InfluxDB writes refused with 401/403 (retried)").labels(**labels)
        self.spool_errors = counter("commhub_spool_errors_total",
                                    "Batches the spool could not store (held and retried)").labels(**labels)
        self.unstorable = counter("commhub_messages_unstorable_total",
                                  "Valid messages whose values InfluxDB cannot store (dead-lettered)").labels(**labels)
        self.sink_errors = counter("commhub_sink_errors_total",
                                   "Exceptions raised by downstream sinks").labels(**labels)
        self.snapshots = counter("commhub_snapshots_total", "Camera snapshots stored").labels(**labels)
        self._worker = worker

    def invalid(self, reason: str) -> Counter:
        """The dead-letter counter for one reason."""
        return self._invalid.labels(worker=self._worker, reason=reason)

    def gauge(self, name: str, doc: str, read: Callable[[], float]) -> None:
        """A gauge computed on every scrape."""
        g = Gauge(name, doc, ("worker",), registry=self.registry)
        g.labels(worker=self._worker).set_function(read)
