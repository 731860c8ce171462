"""``cleancut p --engine ray --address`` on a real two-node cluster (``ray start --head`` and
``ray start --address``, on loopback): the job spreads over both nodes and completes, whole,
when the worker node dies under it."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from cleancut.engine import Engine, Options

from .conftest import CLEANCUT, Cluster, cleancut, our_processes, photo_folder

pytestmark = pytest.mark.cluster

PHOTOS = 48  # enough that the job is still running well after its first outputs


def _outputs(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png")) if folder.is_dir() else []


def _expected(engine: Engine, photos: Path) -> dict[str, bytes]:
    """What the local engine writes for each photo, by output path."""
    made: dict[str, bytes] = {}
    by_source: dict[bytes, bytes] = {}
    for src in sorted(photos.rglob("*.jpg")):
        data = src.read_bytes()
        if data not in by_source:
            result = engine.process(data, Options.create(model="u2netp"), model="u2netp")
            assert result.data is not None
            by_source[data] = result.data
        made[str(src.relative_to(photos).with_suffix(".png"))] = by_source[data]
    return made


def test_a_client_without_the_clusters_token_is_refused(cluster: Cluster) -> None:
    wrong = cluster.root / "wrong-token"
    wrong.write_text(secrets.token_hex(32))
    photos = photo_folder(cluster.root / "refused", 1)
    done = cleancut(cluster, "p", str(photos), str(cluster.root / "never"), "--engine", "ray",
                    "--address", cluster.address, RAY_AUTH_TOKEN_PATH=str(wrong))
    assert done.returncode == 1
    assert f"cleancut: error: cannot join the Ray cluster at {cluster.address}" in done.stderr
    assert not (cluster.root / "never").exists()


def test_overwrite_redoes_every_output_on_the_cluster(cluster: Cluster, engine: Engine) -> None:
    photos = photo_folder(cluster.root / "small", 4)
    out = cluster.root / "small" / "out"
    first = cleancut(cluster, "p", str(photos), str(out), "--engine", "ray", "--address",
                     cluster.address, "-m", "u2netp")
    assert first.returncode == 0, first.stderr
    stale = _outputs(out)[0]
    stale.write_bytes(b"stale")
    again = cleancut(cluster, "p", str(photos), str(out), "--engine", "ray", "--address",
                     cluster.address, "-m", "u2netp", "--overwrite")
    assert again.returncode == 0, again.stderr
    assert "done 4, skipped 0 (output exists; --overwrite to redo), failed 0" in again.stderr
    assert {str(p.relative_to(out)): p.read_bytes() for p in _outputs(out)} == \
        _expected(engine, photos)


def test_the_job_completes_whole_when_the_worker_node_dies_mid_job(
        cluster: Cluster, engine: Engine) -> None:
    photos = photo_folder(cluster.root / "job", PHOTOS)
    out = cluster.root / "job" / "out"
    log = cluster.root / "job" / "cleancut.log"
    with open(log, "wb") as sink:
        job = subprocess.Popen(
            [CLEANCUT, "p", str(photos), str(out), "--engine", "ray", "--address",
             cluster.address, "-m", "u2netp"],
            env=cluster.env("driver", CLEANCUT_RAY_ACTORS="2"), stdout=sink,
            stderr=subprocess.STDOUT)
    try:
        # Both nodes at work: outputs are being written and one actor runs on the worker.
        deadline = time.monotonic() + 300
        while not (len(_outputs(out)) >= 2 and any(
                "MapWorker" in cmd for cmd in our_processes(cluster.root / "worker").values())):
            assert job.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no progress on both nodes:\n{log.read_text()}"
            time.sleep(0.1)
        cluster.kill_node("worker")
        written_before = len(_outputs(out))
        assert job.poll() is None and written_before < PHOTOS, \
            f"the job ended before the node was lost: raise PHOTOS ({PHOTOS})"
        assert job.wait(timeout=500) == 0, log.read_text()
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    text = log.read_text()
    assert f"done {PHOTOS}, skipped 0 (output exists; --overwrite to redo), failed 0" in text
    # every output present and whole: exactly the local engine's bytes, no partial file left
    assert {str(p.relative_to(out)): p.read_bytes() for p in _outputs(out)} == \
        _expected(engine, photos)
    assert [p for p in out.rglob("*") if p.is_file() and p.suffix != ".png"] == []
    assert not our_processes(cluster.root / "worker")
    assert os.listdir(cluster.root / "home") == []
