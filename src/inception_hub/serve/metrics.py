"""The server's Prometheus metrics (`GET /metrics`), shared by both protocols."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Prometheus metrics in a registry of the server's own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "inception_hub_requests",
            "Requests by protocol, model and result code",
            ["protocol", "model", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "inception_hub_request_latency_seconds",
            "Request latency",
            ["protocol"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.batch_size = Histogram(
            "inception_hub_batch_size",
            "Images per model execution",
            ["model"],
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
        self.queue_depth = Gauge(
            "inception_hub_queue_depth", "Images waiting to be batched", ["model"], registry=self.registry
        )
