"""Prometheus metrics of one app instance (own registry, so that several apps can live in one process)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "explain_http_requests", "HTTP requests by route and status.", ["route", "status"], registry=self.registry
        )
        self.request_seconds = Histogram(
            "explain_http_request_duration_seconds",
            "Time from a request's arrival to its answer's headers, by route (streamed bodies not included).",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "explain_queue_depth", "Jobs waiting for a model's worker.", ["model"], registry=self.registry
        )
        self.batch_limit = Gauge(
            "explain_batch_limit",
            "Most jobs per batch: the batch size the model was measured fastest at when warmed, up to MAX_BATCH_SIZE, "
            "then the one that served fastest in trials while serving.",
            ["model"],
            registry=self.registry,
        )
        self.long_tasks = Gauge(
            "explain_long_tasks",
            "Long requests and jobs of a model running a chunk at a time between batches.",
            ["model"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "explain_batch_size",
            "Jobs served by one batched pass.",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "explain_inference_seconds",
            "Wall time of one batched pass on the device.",
            ["model"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
