"""Prometheus metrics of one process: deliveries by source/outcome, ingest latency, queue depth."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """A registry per app, so tests and several apps in one process never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "baton_webhook_deliveries",
            "Webhook deliveries by source and outcome",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.ingest_seconds = Histogram(
            "baton_webhook_ingest_seconds",
            "Time from request start to response, by source",
            ["source"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.enqueue_failures = Counter(
            "baton_enqueue_failures",
            "Runs committed but not enqueued (the sweeper recovers them)",
            registry=self.registry,
        )
        self.ingest_batch = Histogram(
            "baton_ingest_batch_deliveries",
            "Deliveries committed together in one inbox transaction (group commit)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.queue_depth = Gauge("baton_queue_depth", "Jobs waiting in the arq queue", registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
