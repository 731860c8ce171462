"""``cleancut p --engine ray`` on a local Ray it starts itself: the same job as the local engine,
offline and private."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import (
    Cluster,
    cleancut,
    mixed_folder,
    ray_sessions_in_tmp,
    short_root,
    stop_processes,
    wait_gone,
)

pytestmark = pytest.mark.cluster


@dataclass
class Runs:
    cluster: Cluster  # no node is started: only its folders and environment are used
    photos: Path
    local: subprocess.CompletedProcess[str]
    ray: subprocess.CompletedProcess[str]

    @property
    def root(self) -> Path:
        return self.cluster.root


@pytest.fixture(scope="module")
def runs(model_dir: Path) -> Iterator[Runs]:
    """The same folder, once through each engine, with HOME in the test's folder."""
    root = short_root()
    before = ray_sessions_in_tmp()
    cluster = Cluster(root, model_dir)
    photos = mixed_folder(root)
    common = ("-m", "u2netp")
    local = cleancut(cluster, "p", str(photos), str(root / "local"), *common,
                     "--json", str(root / "local.json"), joining=False,
                     HOME=str(root / "local-home"))  # the local engine's own caches: not ours
    ray = cleancut(cluster, "p", str(photos), str(root / "ray"), "--engine", "ray", *common,
                   "--json", str(root / "ray.json"), joining=False)
    yield Runs(cluster, photos, local, ray)
    left = wait_gone(root, 30.0)  # the local Ray of each command stops with it
    stop_processes(root)
    shutil.rmtree(root, ignore_errors=True)
    assert not left, f"processes outlived their command: {left}"
    assert ray_sessions_in_tmp() == before, "Ray wrote into /tmp/ray"


def _report(path: Path, out: Path) -> dict[str, object]:
    return json.loads(path.read_text().replace(str(out), "OUT"))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_the_ray_engine_writes_byte_for_byte_what_the_local_engine_writes(runs: Runs) -> None:
    local, ray = _files(runs.root / "local"), _files(runs.root / "ray")
    assert sorted(ray) == ["astronaut.png", "cat.jpg.png", "cat.png.png", "sub/rocket.png"]
    assert ray == local


def test_a_bad_file_fails_alone_with_the_same_report_and_exit_code(runs: Runs) -> None:
    assert runs.local.returncode == runs.ray.returncode == 1, runs.ray.stderr
    local = _report(runs.root / "local.json", runs.root / "local")
    ray = _report(runs.root / "ray.json", runs.root / "ray")
    assert ray == local
    assert [entry["input"] for entry in ray["failed"]] == [  # type: ignore[index]
        str(runs.photos / "sub" / "broken.jpg")]
    assert len(ray["done"]) == 4  # type: ignore[arg-type]
    summary = "done 4, skipped 0 (output exists; --overwrite to redo), failed 1"
    assert summary in runs.ray.stderr and summary in runs.local.stderr
    assert f"failed {runs.photos / 'sub' / 'broken.jpg'}: invalid_file_type" in runs.ray.stderr


def test_nothing_of_ray_is_written_outside_its_folder(runs: Runs) -> None:
    assert runs.ray.returncode == 1, runs.ray.stderr
    assert list((runs.root / "home").iterdir()) == []  # no ~/.ray, no ~/.cache
    ray_dir = runs.root / "d"
    token = ray_dir / "auth_token"
    assert token.stat().st_mode & 0o777 == 0o600
    assert len(token.read_text()) == 64  # 256 random bits, hex
    (session,) = [p for p in ray_dir.iterdir() if p.name.startswith("session_2")]
    assert "Usage reporting is disabled." in (session / "logs" / "dashboard.log").read_text()
    assert not list(session.rglob("usage_stats.json"))


def test_outputs_that_exist_are_skipped_and_a_job_with_nothing_to_do_starts_no_ray(
        runs: Runs) -> None:
    photos = runs.root / "again-in"
    shutil.copytree(runs.photos, photos)
    (photos / "sub" / "broken.jpg").unlink()
    out = runs.root / "again-out"
    shutil.copytree(runs.root / "ray", out)
    sessions = set((runs.root / "d").iterdir())
    done = cleancut(runs.cluster, "p", str(photos), str(out), "--engine", "ray", "-m", "u2netp",
                    joining=False)
    assert done.returncode == 0, done.stderr
    assert "done 0, skipped 4 (output exists; --overwrite to redo), failed 0" in done.stderr
    assert set((runs.root / "d").iterdir()) == sessions  # no Ray was started for it


def test_watch_is_refused_with_the_ray_engine(runs: Runs) -> None:
    done = cleancut(runs.cluster, "p", str(runs.photos), str(runs.root / "w"), "--engine",
                    "ray", "--watch", joining=False)
    assert done.returncode == 2
    assert "--watch runs on the local engine only" in done.stderr


def test_without_ray_the_error_names_the_extra(runs: Runs) -> None:
    blocked = ("import sys; sys.modules['ray'] = None; from cleancut.cli import main; "
               f"sys.exit(main(['p', {str(runs.photos)!r}, {str(runs.root / 'x')!r}, "
               "'--engine', 'ray']))")
    done = subprocess.run([sys.executable, "-c", blocked],
                          env=runs.cluster.env("driver", joining=False), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == ("cleancut: error: --engine ray needs Ray, which is not "
                                   "installed: pip install 'cleancut[ray]'")
