"""How cleancut's settings become Ray's: pure functions, no cluster (so not marked)."""

from __future__ import annotations

import pytest

from cleancut.config import load
from cleancut.errors import InvalidSetting
from cleancut.ray.data import actors_for
from cleancut.ray.serve import deployment_options, replica_settings


def _settings(**values: str):  # type: ignore[no-untyped-def]
    return load({"CLEANCUT_MODEL_DIR": "/nonexistent/models",
                 **{f"CLEANCUT_{k.upper()}": v for k, v in values.items()}})


def test_by_default_a_replicas_own_queue_fills_before_ray_serves() -> None:
    settings = _settings()
    own = replica_settings(settings)
    assert (own.workers, own.intra_op_threads) == (1, 1)  # from the replica's one CPU
    options = deployment_options(settings)
    capacity = own.effective_workers() + own.effective_queue_size()
    assert options["max_ongoing_requests"] > capacity
    assert options["max_queued_requests"] == -1
    assert options["num_replicas"] == 1 and "autoscaling_config" not in options
    assert options["backpressure_config"] == {"status_code": 503, "retry_after_s": 1}


def test_replicas_and_autoscaling_come_from_the_settings() -> None:
    options = deployment_options(_settings(
        ray_replica_cpus="2", ray_serve_min_replicas="2", ray_serve_max_replicas="6",
        ray_serve_target_ongoing_requests="3", ray_serve_max_ongoing_requests="40",
        ray_serve_max_queued_requests="100"))
    assert options["ray_actor_options"] == {"num_cpus": 2.0}
    assert options["autoscaling_config"] == {"min_replicas": 2, "max_replicas": 6,
                                             "target_ongoing_requests": 3.0}
    assert "num_replicas" not in options
    assert (options["max_ongoing_requests"], options["max_queued_requests"]) == (40, 100)


def test_the_autoscalers_target_defaults_to_a_replicas_workers() -> None:
    options = deployment_options(_settings(ray_replica_cpus="3", ray_serve_max_replicas="2"))
    assert options["autoscaling_config"]["target_ongoing_requests"] == 3


def test_fewer_max_than_min_replicas_is_a_setting_error() -> None:
    with pytest.raises(InvalidSetting, match="CLEANCUT_RAY_SERVE_MIN_REPLICAS"):
        deployment_options(_settings(ray_serve_min_replicas="3", ray_serve_max_replicas="2"))


def test_a_ray_dir_too_long_for_rays_sockets_is_refused_at_start_up() -> None:
    with pytest.raises(InvalidSetting, match="CLEANCUT_RAY_DIR") as caught:
        _settings(ray_dir="/" + "x" * 60)
    assert "socket" in caught.value.detail


@pytest.mark.parametrize(("actors", "photos", "cpus", "expected"), [
    ("0", 100, 4.0, 4),  # one per CPU of the cluster
    ("0", 3, 4.0, 3),  # never more than there are photos
    ("2", 100, 16.0, 2),
])
def test_the_actor_pool_size(actors: str, photos: int, cpus: float, expected: int) -> None:
    assert actors_for(_settings(ray_actors=actors), photos, cpus) == expected
