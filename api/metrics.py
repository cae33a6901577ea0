"""Prometheus metrics of one API app: requests and latency by route, live SSE clients, audit rows written."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ApiMetrics:
    """Metrics in the app's own registry (tests build several apps in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("commhub_api_requests_total", "HTTP requests by route, method and status.",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("commhub_api_request_seconds", "HTTP request latency by route.", ["route", "method"],
                                 registry=self.registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.sse_clients = Gauge("commhub_api_sse_clients", "Connected live-alert (SSE) clients.",
                                 registry=self.registry)
        self.audit_rows = Counter("commhub_api_audit_rows_total", "Audit rows written by this process.",
                                  registry=self.registry)
