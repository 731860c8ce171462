"""Real Ray clusters on loopback for the ``--engine ray`` tests (marked ``cluster``).

Each cluster lives in a short folder of its own (``/tmp/ccr-*``: Ray's socket paths must fit in
107 bytes, which pytest's own temporary folders are too deep for), with ``HOME`` inside it and a
folder per node, and is removed afterwards.

The tests find their own processes, and only them, by the files they hold open: every Ray
process keeps its logs open in its node's folder (their command lines and environments are no
guide: Ray rewrites both to set a process title). That is how one node is killed, how a cluster
is stopped, and how the tests check that nothing is left behind. No test runs ``ray stop``,
which stops every Ray process on the machine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import GOLDEN
from tests.server.conftest import free_port, photo, photo_path  # noqa: F401  (fixtures)

RAY = str(Path(sys.executable).with_name("ray"))
CLEANCUT = str(Path(sys.executable).with_name("cleancut"))


def _holds_open(pid: int, prefix: str) -> bool:
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # gone, a zombie, or not ours to read
        return False
    for name in names:
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith(prefix):
                return True
        except OSError:
            continue
    return False


def our_processes(folder: Path) -> dict[int, str]:
    """PID -> command line of every live process with a file open below ``folder``."""
    prefix = f"{folder}/"
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() \
                and _holds_open(int(entry.name), prefix):
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(
                    b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
    return found


def wait_gone(folder: Path, limit_s: float) -> dict[int, str]:
    """Until no process holds a file below ``folder`` (at most ``limit_s``); what is left."""
    deadline = time.monotonic() + limit_s
    while (left := our_processes(folder)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill_processes(folder: Path, sig: signal.Signals = signal.SIGKILL) -> None:
    for pid in our_processes(folder):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop_processes(folder: Path, grace_s: float = 15.0) -> None:
    """SIGTERM to every process of ``folder``, then SIGKILL to those still there."""
    kill_processes(folder, signal.SIGTERM)
    if wait_gone(folder, grace_s):
        kill_processes(folder)
        wait_gone(folder, 10.0)


def ray_sessions_in_tmp() -> set[str]:
    """What Ray would leave in /tmp/ray by default."""
    root = Path("/tmp/ray")
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


@dataclass
class Cluster:
    """A head and any worker nodes, each started with ``ray start --block`` in its own
    temp dir under ``root``."""

    root: Path
    model_dir: Path
    port: int = field(default_factory=free_port)
    nodes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def token(self) -> Path:
        return self.root / "token"

    def env(self, node: str, *, joining: bool = True, **extra: str) -> dict[str, str]:
        """The environment of a process of ``node`` (``driver`` for cleancut's commands):
        with ``joining``, what a node or a client of this cluster needs; without, no Ray
        variable at all (cleancut on a local Ray of its own)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CLEANCUT_", "RAY_"))}
        env.update(HOME=str(self.root / "home"), CLEANCUT_MODEL_DIR=str(self.model_dir),
                   CLEANCUT_RAY_DIR=str(self.root / "d"))
        if joining:
            env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
                       RAY_AUTH_TOKEN_PATH=str(self.token))
            env["GRPC_DNS_RESOLVER"] = "native"  # numeric addresses, never a DNS query
            if node != "worker":
                # Loopback only: a head or driver advertises 127.0.0.1, not the machine's
                # address (Ray's switch for that refuses to start a worker node, which finds
                # 127.0.0.1 itself, as the address it reaches the head from).
                env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        env.update(extra)
        return env

    def start_node(self, name: str, *, cpus: int = 2) -> None:
        """The head first, then a worker node (named ``worker``)."""
        temp = self.root / name
        temp.mkdir(exist_ok=True)
        head = not self.nodes
        args = [RAY, "start", "--block", f"--temp-dir={temp}", f"--num-cpus={cpus}",
                "--disable-usage-stats", f"--dashboard-agent-listen-port={free_port()}"]
        if head:
            args += ["--head", f"--port={self.port}", "--node-ip-address=127.0.0.1",
                     "--include-dashboard=false", f"--ray-client-server-port={free_port()}"]
        else:
            # "127.1" is 127.0.0.1 spelled so that Ray does not take it for localhost, which it
            # would swap for the machine's address; the node then finds 127.0.0.1 as its own.
            args += [f"--address=127.1:{self.port}"]
        with open(temp / "ray-start.log", "wb") as log:
            self.nodes[name] = subprocess.Popen(args, env=self.env(name),
                                                stdout=log, stderr=subprocess.STDOUT)
        self.wait_nodes(len(self.nodes))

    def wait_nodes(self, count: int, limit_s: float = 120) -> None:
        """Until ``count`` nodes are alive, as a driver on the head sees them."""
        probe = (f"import ray; ray.init(address={self.address!r}, logging_level='ERROR'); "
                 "print(sum(n['Alive'] for n in ray.nodes()))")
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            for name, proc in self.nodes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"node {name} exited with {proc.returncode}:\n"
                                       f"{self.log(name)}")
            done = subprocess.run([sys.executable, "-c", probe],
                                  env=self.env("driver"), capture_output=True, text=True,
                                  timeout=120, check=False)
            if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(count)]:
                return
            time.sleep(1)
        raise RuntimeError(f"{count} nodes did not come up:\n"
                           + "\n".join(self.log(name) for name in self.nodes))

    def log(self, node: str) -> str:
        return (self.root / node / "ray-start.log").read_text(errors="replace")

    def kill_node(self, name: str) -> None:
        """The node dies at once, as a machine that loses power: SIGKILL to every process."""
        kill_processes(self.root / name)
        self.nodes[name].wait(timeout=30)
        assert not wait_gone(self.root / name, 10.0)

    def stop(self) -> None:
        """Every node, workers first, each as `ray stop` would (SIGTERM, then SIGKILL)."""
        for name in reversed(list(self.nodes)):
            stop_processes(self.root / name)
            self.nodes[name].wait(timeout=30)


def short_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="ccr-", dir="/tmp"))
    (root / "home").mkdir()
    return root


@pytest.fixture(scope="module")
def cluster_root() -> Iterator[Path]:
    root = short_root()
    before = ray_sessions_in_tmp()
    yield root
    left = wait_gone(root, 30.0)
    stop_processes(root)  # whatever a failed test left running
    shutil.rmtree(root, ignore_errors=True)
    assert not left, f"Ray processes left behind: {left}"
    assert ray_sessions_in_tmp() == before, "Ray wrote into /tmp/ray"


@pytest.fixture(scope="module")
def cluster(cluster_root: Path, model_dir: Path) -> Iterator[Cluster]:
    """A head and a worker node, two CPUs each, with a token of their own."""
    cluster = Cluster(cluster_root, model_dir)
    cluster.token.write_text(secrets.token_hex(32))
    cluster.token.chmod(0o600)
    cluster.start_node("head")
    cluster.start_node("worker")
    yield cluster
    cluster.stop()


def cleancut(cluster: Cluster, *args: str, joining: bool = True,
             **env: str) -> subprocess.CompletedProcess[str]:
    """``cleancut ARGS`` as a client of ``cluster`` (``joining``) or on its own."""
    return subprocess.run([CLEANCUT, *args], env=cluster.env("driver", joining=joining, **env),
                          capture_output=True, text=True, timeout=600, check=False)


def photo_folder(root: Path, copies: int) -> Path:
    """``copies`` photos (the small golden ones, in turn), in two folders."""
    sources = sorted((GOLDEN / "inputs").glob("*.jpg"))
    sources = [p for p in sources if "cmyk" not in p.name and "exif" not in p.name]
    folder = root / "photos"
    for i in range(copies):
        src = sources[i % len(sources)]
        dst = folder / ("a" if i % 2 else "b") / f"{i:03d}-{src.name}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return folder


def mixed_folder(root: Path) -> Path:
    """Photos in a folder and a subfolder, two that share a stem, and one broken file."""
    photos = root / "in"
    (photos / "sub").mkdir(parents=True)
    inputs = GOLDEN / "inputs"
    shutil.copyfile(inputs / "astronaut.jpg", photos / "astronaut.jpg")
    shutil.copyfile(inputs / "rocket.jpg", photos / "sub" / "rocket.jpg")
    shutil.copyfile(inputs / "chelsea.jpg", photos / "cat.jpg")  # siblings that share a stem
    shutil.copyfile(inputs / "logo.png", photos / "cat.png")
    (photos / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a photo after all")
    return photos


def wait_serving(proc: subprocess.Popen[bytes], log: Path, limit_s: float = 240) -> None:
    """Until ``cleancut serve --engine ray`` says it serves (its replicas are warm)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{log.read_text()}")
        if "serving on" in log.read_text(errors="replace"):
            return
        time.sleep(0.5)
    raise RuntimeError(f"did not start serving:\n{log.read_text()}")


