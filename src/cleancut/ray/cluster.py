"""Starting or joining Ray, offline and private.

Ray, left to itself, reports usage statistics, serves a dashboard, accepts unauthenticated
clients, writes its token to ``~/.ray/auth_token`` and its sessions to ``/tmp/ray``. Everything
here runs before Ray starts (its settings are read from the environment, once, by each process
it starts), so a local Ray and the processes it spawns inherit:

- ``RAY_USAGE_STATS_ENABLED=0``, always;
- ``RAY_AUTH_MODE=token`` unless the caller set a mode, with the token in
  ``<CLEANCUT_RAY_DIR>/auth_token`` (generated once, mode 0600) unless ``RAY_AUTH_TOKEN`` or
  ``RAY_AUTH_TOKEN_PATH`` names another;
- every session file under ``CLEANCUT_RAY_DIR``, and ONNX Runtime's cache beside them.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from .._fs import atomic_write_bytes
from ..config import RAY_DIR_MAX_BYTES, Settings
from ..errors import ClusterUnavailable, InvalidSetting, RayNotInstalled

__all__ = ["EXTRA", "require_ray", "import_ray", "ray_dir", "address_of", "private_environment",
           "private_process", "connected"]

EXTRA = "pip install 'cleancut[ray]'"
log = logging.getLogger("cleancut.ray")


def require_ray() -> None:
    """Raise :class:`RayNotInstalled` unless Ray is installed. Looks without importing it: Ray
    reads its settings from the environment when imported, so it is imported only after
    :func:`private_environment` (see :func:`import_ray`)."""
    try:
        found = importlib.util.find_spec("ray") is not None
    except ValueError:  # sys.modules["ray"] is None: blocked on purpose
        found = False
    if not found:
        raise RayNotInstalled(f"--engine ray needs Ray, which is not installed: {EXTRA}")


def import_ray(*parts: str) -> ModuleType:
    """``ray``, with ``ray.<part>`` imported for each of ``parts`` (``data``, ``serve``);
    :class:`RayNotInstalled` when one is missing (Ray without its extras)."""
    require_ray()
    try:
        import ray

        for part in parts:
            importlib.import_module(f"ray.{part}")
    except ImportError as exc:
        raise RayNotInstalled(f"--engine ray needs Ray with its data and serve parts "
                              f"({exc.name or exc} is missing): {EXTRA}") from exc
    return ray


def ray_dir(settings: Settings) -> Path:
    """``CLEANCUT_RAY_DIR``, else ``cleancut-ray`` in the temp dir; short enough for Ray."""
    folder = settings.ray_dir or Path(settings.tmp_dir or tempfile.gettempdir()) / "cleancut-ray"
    folder = folder.absolute()
    if len(os.fsencode(folder)) > RAY_DIR_MAX_BYTES:
        raise InvalidSetting(
            "CLEANCUT_RAY_DIR", f"Ray's folder {str(folder)[:60]!r} is longer than "
            f"{RAY_DIR_MAX_BYTES} bytes, and Ray's socket paths below it would not fit; set "
            "CLEANCUT_RAY_DIR to a shorter path (see docs/settings.md)")
    return folder


def address_of(settings: Settings, given: str | None = None) -> str | None:
    """The cluster to join: ``--address``, ``CLEANCUT_RAY_ADDRESS``, ``RAY_ADDRESS``; or none
    (start a local Ray)."""
    return given or settings.ray_address or os.environ.get("RAY_ADDRESS") or None


def private_process(settings: Settings) -> Path:
    """Point this process's own caches into Ray's folder (ONNX Runtime writes a device id under
    ``$XDG_CACHE_HOME`` when imported, else under ``~/.cache``). Called by the driver and by every
    actor and replica before they load a model; returns the folder."""
    folder = ray_dir(settings)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ["XDG_CACHE_HOME"] = str(folder / "cache")
    return folder


def private_environment(settings: Settings, *, starting: bool) -> Path:
    """Set what keeps Ray offline and private in this process's environment (inherited by a
    local Ray and by ``ray start``); ``starting`` says a new cluster will be started here, which
    may create its token. Returns Ray's folder."""
    folder = private_process(settings)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    # Where Ray would otherwise default to /tmp/ray (e.g. the address file of `address="auto"`).
    os.environ.setdefault("RAY_TMPDIR", str(folder))
    if starting:
        # A cluster of this process alone: its nodes advertise loopback, not the machine's
        # address (Ray's switch for that is named after the platforms it is meant for).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if "RAY_AUTH_TOKEN" not in os.environ and "RAY_AUTH_TOKEN_PATH" not in os.environ:
        token = folder / "auth_token"
        if starting and not token.exists():
            # 256 random bits, as Ray's own generator makes them
            atomic_write_bytes(token, secrets.token_hex(32).encode(), mode=0o600)
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)
    return folder


@contextmanager
def connected(settings: Settings, address: str | None = None,
              parts: tuple[str, ...] = ()) -> Iterator[bool]:
    """Ray for the block: joined at ``address`` (see :func:`address_of`), or a local one started
    for the block and stopped after it. Yields whether the cluster was started here.

    Raises :class:`ClusterUnavailable` when Ray cannot be joined or started."""
    require_ray()
    address = address_of(settings, address)
    folder = private_environment(settings, starting=address is None)
    ray = import_ray(*parts)

    quiet: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False,
                             "namespace": "cleancut"}
    try:
        if address is None:
            # num_cpus and the folders only when starting a cluster: joining refuses them
            ray.init(address="local", num_cpus=settings.ray_cpus or None,
                     _temp_dir=str(folder), include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except Exception as exc:  # Ray raises many kinds here (connection, auth, setup); all mean this
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        if address is None:
            raise ClusterUnavailable(f"cannot start a local Ray: {first}") from exc
        raise ClusterUnavailable(
            f"cannot join the Ray cluster at {address}: {first} (a cluster with token "
            "authentication needs its token in RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN)") from exc
    try:
        yield address is None
    finally:
        ray.shutdown()  # in the thread that started it: never while a job runs elsewhere
