"""Prometheus metrics. One registry per app, so several apps (tests, benches) can share a process."""

from __future__ import annotations


from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ideohub_requests_total", "API requests by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("ideohub_request_seconds", "API request latency by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.overhead = Histogram("ideohub_overhead_seconds", "Time not spent waiting on engines or upstreams",
                                  ["endpoint"], buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 1),
                                  registry=r)
        self.upstream_attempts = Counter("ideohub_upstream_attempts_total", "Upstream attempts by channel and outcome",
                                         ["channel", "outcome"], registry=r)
        self.upstream_latency = Histogram("ideohub_upstream_seconds", "Upstream call latency by channel",
                                          ["channel"], buckets=LATENCY_BUCKETS, registry=r)
        self.images_stored = Counter("ideohub_images_stored_total", "Result images stored", ["operation"], registry=r)
        self.channel_cooldown = Gauge("ideohub_channel_cooldown", "1 while a channel is cooling down",
                                      ["channel"], registry=r)
        self.channel_in_flight = Gauge("ideohub_channel_in_flight", "Requests in flight per channel",
                                       ["channel"], registry=r)
        self.images_in_flight = Gauge("ideohub_images_in_flight", "Images being produced right now", registry=r)
        # notify.worker: kind webhook|callback; outcome delivered|retried|dead|superseded (one per attempt's end)
        self.deliveries = Counter("ideohub_deliveries_total", "Webhook and task-callback deliveries by kind and outcome",
                                  ["kind", "outcome"], registry=r)

        # generations (issue 8): pending ones are read from the database at scrape time (all processes);
        # finished ones are counted by the process that finished them
        self.generations_pending = Gauge("ideohub_generations_pending",
                                         "Generations pending in the database (admitted, not yet completed or failed)",
                                         registry=r)
        self.oldest_pending_generation = Gauge("ideohub_generation_oldest_pending_seconds",
                                               "Age of the oldest pending generation (0 when none is pending)",
                                               registry=r)
        self.generations_finished = Counter("ideohub_generations_finished_total",
                                            "Generations this process finished, by status (completed, failed)",
                                            ["status"], registry=r)
        for status in ("completed", "failed"):
            self.generations_finished.labels(status)
        # the queue (issue 9): depth read at scrape time; live workers from their registry; redeliveries here
        self.queue_depth = Gauge("ideohub_queue_depth", "Generations queued (admitted, waiting for a worker)",
                                 registry=r)
        self.generations_running = Gauge("ideohub_generations_running", "Generations running on some process",
                                         registry=r)
        self.workers_live = Gauge("ideohub_workers_live", "Workers whose heartbeat is current, by operation",
                                  ["operation"], registry=r)
        self.redeliveries = Counter("ideohub_redeliveries_total",
                                    "Generations this process ran again after an earlier run stopped", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
