"""Prometheus metrics of one app, in its own registry (never the process-global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SLOW = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "cleancut_http_requests", "HTTP requests answered, by route, method, status and model",
            ["route", "method", "status", "model"], registry=r,
        )
        self.latency = Histogram(
            "cleancut_http_request_duration_seconds", "Time from request to response, by route",
            ["route"], buckets=_SLOW, registry=r,
        )
        self.in_flight = Gauge(
            "cleancut_http_requests_in_flight", "HTTP requests being answered now", registry=r
        )
        self.queue_depth = Gauge(
            "cleancut_queue_depth", "Images waiting for a free worker", registry=r
        )
        self.workers_busy = Gauge("cleancut_workers_busy", "Workers processing an image",
                                  registry=r)
        self.workers = Gauge("cleancut_workers", "Size of the worker pool", registry=r)
        self.queue_capacity = Gauge(
            "cleancut_queue_capacity", "Images allowed to wait for a worker", registry=r
        )
        self.queue_wait = Histogram(
            "cleancut_queue_wait_seconds", "Time an image waited for a worker",
            buckets=_FAST, registry=r,
        )
        self.stage = Histogram(
            "cleancut_stage_duration_seconds",
            "Time spent in each pipeline stage (decode, preprocess, inference, mask, compose, "
            "encode), by model; inference includes waiting for a free inference slot",
            ["stage", "model"], buckets=_FAST, registry=r,
        )
        self.rejects = Counter(
            "cleancut_rejects", "Requests answered with an error, by reason (the error code)",
            ["reason"], registry=r,
        )
        self.model_load = Gauge(
            "cleancut_model_load_seconds", "Time taken to load each model (ONNX Runtime session)",
            ["model"], registry=r,
        )
        self.abandoned = Counter(
            "cleancut_jobs_abandoned",
            "Images given up at the request deadline, by where they were (queued: never started; "
            "running: stopped, inference terminated)",
            ["where"], registry=r,
        )
        self.ready = Gauge("cleancut_ready", "1 when every start-up model is loaded and warm",
                           registry=r)

    def observe_stages(self, model: str, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.stage.labels(stage=stage, model=model).observe(ms / 1e3)

    def render(self) -> bytes:
        return generate_latest(self.registry)
