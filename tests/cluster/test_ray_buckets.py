"""``cleancut p s3://… s3://… --engine ray``: folders in a bucket, read by Ray Data through the
bucket's own API, on a real S3-compatible server on loopback (moto's), with a local Ray of the
command's own. The job is the local engine's: the same outputs, names, report and skip rules."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import (
    Cluster,
    cleancut,
    free_port,
    mixed_folder,
    ray_sessions_in_tmp,
    short_root,
    stop_processes,
    wait_gone,
)

pytestmark = pytest.mark.cluster
pafs = pytest.importorskip("pyarrow.fs")
MOTO = str(Path(sys.executable).with_name("moto_server"))
BUCKET = "shop"


@dataclass
class Bucket:
    cluster: Cluster  # no node is started: its folders and environment only
    endpoint: str
    photos: Path  # the same photos, on disk, for the local engine

    @property
    def root(self) -> Path:
        return self.cluster.root

    def env(self) -> dict[str, str]:
        """What a user of the bucket sets: its endpoint and credentials, for pyarrow and Ray."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "cleancut-test",
                "AWS_SECRET_ACCESS_KEY": "cleancut-test", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true"}

    def fs(self) -> object:
        return pafs.S3FileSystem(endpoint_override=self.endpoint, access_key="cleancut-test",
                                 secret_key="cleancut-test", region="us-east-1",
                                 allow_bucket_creation=True)

    def put_folder(self, folder: Path, prefix: str) -> None:
        fs = self.fs()
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                with fs.open_output_stream(f"{BUCKET}/{prefix}/{path.relative_to(folder)}") as out:
                    out.write(path.read_bytes())

    def files(self, prefix: str) -> dict[str, bytes]:
        fs = self.fs()
        found = {}
        for info in fs.get_file_info(pafs.FileSelector(f"{BUCKET}/{prefix}", recursive=True)):
            if info.type == pafs.FileType.File:
                with fs.open_input_stream(info.path) as src:
                    found[info.path[len(f"{BUCKET}/{prefix}/"):]] = src.read()
        return found

    def p(self, *args: str) -> subprocess.CompletedProcess[str]:
        return cleancut(self.cluster, "p", *args, "--engine", "ray", "-m", "u2netp",
                        joining=False, **self.env())


def _wait_port(port: int, proc: subprocess.Popen[bytes], limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the S3 server exited"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the S3 server did not start")


@pytest.fixture(scope="module")
def bucket(model_dir: Path) -> Iterator[Bucket]:
    root = short_root()
    before = ray_sessions_in_tmp()
    port = free_port()
    with open(root / "s3.log", "wb") as log:
        server = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(port)], cwd=root,
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_port(port, server)
        made = Bucket(Cluster(root, model_dir), f"http://127.0.0.1:{port}", mixed_folder(root))
        made.fs().create_dir(BUCKET)
        made.put_folder(made.photos, "in")
        yield made
    finally:
        server.terminate()
        server.wait(timeout=30)
        left = wait_gone(root, 30.0)
        stop_processes(root)
        shutil.rmtree(root, ignore_errors=True)
    assert not left, f"processes outlived their command: {left}"
    assert ray_sessions_in_tmp() == before, "Ray wrote into /tmp/ray"


@pytest.fixture(scope="module")
def local(bucket: Bucket) -> dict[str, bytes]:
    """What the local engine writes for the same photos."""
    out = bucket.root / "local"
    done = cleancut(bucket.cluster, "p", str(bucket.photos), str(out), "-m", "u2netp",
                    joining=False, HOME=str(bucket.root / "local-home"))
    assert done.returncode == 1, done.stderr  # the broken photo
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def to_bucket(bucket: Bucket) -> subprocess.CompletedProcess[str]:
    return bucket.p(f"s3://{BUCKET}/in", f"s3://{BUCKET}/out",
                    "--json", str(bucket.root / "s3.json"))


def test_a_bucket_to_a_bucket_gives_the_local_engines_outputs(
        bucket: Bucket, to_bucket: subprocess.CompletedProcess[str],
        local: dict[str, bytes]) -> None:
    assert to_bucket.returncode == 1, to_bucket.stderr
    written = bucket.files("out")
    assert sorted(written) == ["astronaut.png", "cat.jpg.png", "cat.png.png", "sub/rocket.png"]
    assert written == local


def test_the_report_names_the_objects_and_the_bad_one_fails_alone(
        bucket: Bucket, to_bucket: subprocess.CompletedProcess[str]) -> None:
    report = json.loads((bucket.root / "s3.json").read_text())
    assert [(d["input"], d["output"]) for d in report["done"]] == [
        (f"s3://{BUCKET}/in/astronaut.jpg", f"s3://{BUCKET}/out/astronaut.png"),
        (f"s3://{BUCKET}/in/cat.jpg", f"s3://{BUCKET}/out/cat.jpg.png"),
        (f"s3://{BUCKET}/in/cat.png", f"s3://{BUCKET}/out/cat.png.png"),
        (f"s3://{BUCKET}/in/sub/rocket.jpg", f"s3://{BUCKET}/out/sub/rocket.png"),
    ]
    assert [f["input"] for f in report["failed"]] == [f"s3://{BUCKET}/in/sub/broken.jpg"]
    assert report["failed"][0]["reason"].startswith("invalid_file_type: ")
    assert "done 4, skipped 0 (output exists; --overwrite to redo), failed 1" in to_bucket.stderr


def test_objects_that_exist_are_skipped_and_overwrite_redoes_them(
        bucket: Bucket, to_bucket: subprocess.CompletedProcess[str],
        local: dict[str, bytes]) -> None:
    assert to_bucket.returncode == 1, to_bucket.stderr
    again = bucket.p(f"s3://{BUCKET}/in", f"s3://{BUCKET}/out")
    assert "done 0, skipped 4 (output exists; --overwrite to redo), failed 1" in again.stderr
    with bucket.fs().open_output_stream(f"{BUCKET}/out/astronaut.png") as out:
        out.write(b"stale")
    redone = bucket.p(f"s3://{BUCKET}/in", f"s3://{BUCKET}/out", "--overwrite")
    assert "done 4, skipped 0 (output exists; --overwrite to redo), failed 1" in redone.stderr
    assert bucket.files("out") == local


def test_a_bucket_into_a_local_folder(bucket: Bucket, local: dict[str, bytes]) -> None:
    out = bucket.root / "from-s3"
    done = bucket.p(f"s3://{BUCKET}/in", str(out))
    assert done.returncode == 1, done.stderr
    assert {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file()} == local  # and no temporary file left beside them


def test_a_missing_bucket_is_one_line_naming_it(bucket: Bucket) -> None:
    done = bucket.p("s3://no-such-bucket/in", str(bucket.root / "never"))
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("cleancut: error: cannot list s3://no-such-bucket/in: ")
    assert not (bucket.root / "never").exists()


def test_a_bucket_needs_the_ray_engine(bucket: Bucket) -> None:
    done = cleancut(bucket.cluster, "p", f"s3://{BUCKET}/in", str(bucket.root / "never"),
                    joining=False, **bucket.env())
    assert done.returncode == 2
    assert "folders given as URIs (s3://...) need --engine ray" in done.stderr
