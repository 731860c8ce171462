"""Find and verify model files in the model directory. Never downloads.

Layout of the model directory: ``NAME.onnx`` (the weights) and ``NAME.json`` (what was recorded at
install time: the sha256, where it came from, and for custom models their spec).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from .._fs import atomic_write_bytes
from ..errors import InvalidParameter, ModelChecksumMismatch, ModelNotInstalled, UnknownModel
from .catalog import CATALOG, INT8_BUILDS, ModelSpec

__all__ = [
    "InstalledModel",
    "ModelStore",
    "hash_file",
    "atomic_write_bytes",
]

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_CHUNK = 1 << 20

# (path, size, mtime_ns, inode) -> sha256 already checked in this process
_verified: dict[tuple[str, int, int, int], str] = {}
_verified_lock = threading.Lock()


def hash_file(path: Path) -> tuple[str, str, int]:
    """sha256 and md5 hex digests and the size of ``path``."""
    with open(path, "rb") as fh:
        return hash_stream(fh)


def hash_stream(fh: IO[bytes]) -> tuple[str, str, int]:
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    while chunk := fh.read(_CHUNK):
        sha.update(chunk)
        md5.update(chunk)
        size += len(chunk)
    return sha.hexdigest(), md5.hexdigest(), size


@dataclass(frozen=True)
class InstalledModel:
    spec: ModelSpec
    path: Path
    sha256: str


def _install_hint(spec: ModelSpec) -> str:
    if spec.carrier is not None:
        return f"cleancut models pull {spec.name}"
    return f"cleancut models import {spec.name} /path/to/{spec.file_name}"


class ModelStore:
    """The model directory: which models are there, and are they the right bytes."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = Path(model_dir)

    # --- names and specs ----------------------------------------------------------------------
    def spec(self, name: str) -> ModelSpec:
        if name in CATALOG:
            return CATALOG[name]
        meta = self._read_meta(name) if _NAME_RE.fullmatch(name) else None
        if meta and meta.get("custom"):
            return _spec_from_meta(meta)
        known = ", ".join(self.names())
        raise UnknownModel(f"unknown model {name!r}; known models: {known}")

    def names(self) -> list[str]:
        """Catalog models, then custom models registered in the directory."""
        custom = []
        if self.model_dir.is_dir():
            for meta_path in sorted(self.model_dir.glob("*.json")):
                meta = self._read_meta(meta_path.stem)
                if meta and meta.get("custom") and meta_path.stem not in CATALOG:
                    custom.append(meta_path.stem)
        return [*CATALOG, *custom]

    def path_of(self, spec: ModelSpec) -> Path:
        return self.model_dir / spec.file_name

    def is_installed(self, name: str) -> bool:
        try:
            return self.path_of(self.spec(name)).is_file()
        except UnknownModel:
            return False

    # --- verification -------------------------------------------------------------------------
    def expected_sha256(self, spec: ModelSpec) -> str | None:
        if spec.sha256:
            return spec.sha256
        meta = self._read_meta(spec.name) or {}
        recorded = meta.get("sha256")
        return recorded if isinstance(recorded, str) else None

    def resolve(self, name: str) -> InstalledModel:
        """The verified file of model ``name``; raises if it is missing or not the right bytes.

        Hashing happens once per process per file (keyed on path, size, mtime and inode).
        """
        spec = self.spec(name)
        path = self.path_of(spec)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ModelNotInstalled(
                f"model {name!r} is not installed in {self.model_dir}; "
                f"install it with: {_install_hint(spec)}"
            ) from None
        key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
        with _verified_lock:
            known = _verified.get(key)
        expected = self.expected_sha256(spec)
        if expected is None:
            raise ModelChecksumMismatch(
                f"model {name!r} at {path} has no recorded checksum; "
                f"re-install it with: {_install_hint(spec)}"
            )
        if known == expected:
            return InstalledModel(spec, path, expected)
        sha, _md5, _size = hash_file(path)
        if sha != expected:
            raise ModelChecksumMismatch(
                f"model file {path} does not match the checksum of {name!r} "
                f"(sha256 {sha[:16]}…, expected {expected[:16]}…); it was not used. "
                f"Delete it and run: {_install_hint(spec)}"
            )
        with _verified_lock:
            _verified[key] = sha
        return InstalledModel(spec, path, sha)

    # --- installing ---------------------------------------------------------------------------
    def install_file(
        self,
        spec: ModelSpec,
        source: IO[bytes],
        *,
        origin: str,
        extra_meta: dict[str, Any] | None = None,
    ) -> InstalledModel:
        """Copy ``source`` into the store, checking it against the catalog on the way.

        The bytes go to a temporary file beside the target; only a verified file is renamed into
        place, so a failure at any point leaves the directory as it was.
        """
        self.model_dir.mkdir(parents=True, exist_ok=True)
        target = self.path_of(spec)
        fd, tmp_name = tempfile.mkstemp(
            dir=self.model_dir, prefix=f".{spec.file_name}.", suffix=".part"
        )
        tmp = Path(tmp_name)
        try:
            sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
            os.fchmod(fd, 0o644)  # readable by the service user, like any installed file
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(_CHUNK):
                    sha.update(chunk)
                    md5.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha_hex, md5_hex = sha.hexdigest(), md5.hexdigest()
            _check_against_spec(spec, sha_hex, md5_hex, size)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        meta: dict[str, Any] = {
            "name": spec.name,
            "sha256": sha_hex,
            "md5": md5_hex,
            "size_bytes": size,
            "source": origin,
            "custom": spec.custom,
        }
        meta.update(extra_meta or {})  # e.g. a derived model's parent and recipe
        if spec.custom:
            meta["spec"] = {k: v for k, v in asdict(spec).items() if k != "carrier"}
        atomic_write_bytes(
            self.model_dir / f"{spec.name}.json", json.dumps(meta, indent=2).encode()
        )
        st = target.stat()
        with _verified_lock:
            _verified[(str(target), st.st_size, st.st_mtime_ns, st.st_ino)] = sha_hex
        return InstalledModel(spec, target, sha_hex)

    def custom_spec(
        self, name: str, sha256: str, size: int, input_size: tuple[int, int] = (320, 320)
    ) -> ModelSpec:
        if not _NAME_RE.fullmatch(name):
            raise InvalidParameter(
                "name", f"model name {name!r} must be 1-64 of a-z, 0-9, '_', '.', '-'"
            )
        if name in CATALOG:
            raise InvalidParameter(
                "name", f"{name!r} is a catalog model; import it without --custom"
            )
        return ModelSpec(
            name=name,
            file_name=f"{name}.onnx",
            size_bytes=size,
            sha256=sha256,
            md5=None,
            input_size=input_size,
            licence="user-supplied",
            description="custom model",
            sources=("imported",),
            custom=True,
        )

    def metadata(self, name: str) -> dict[str, Any]:
        return self._read_meta(name) or {}

    def _read_meta(self, name: str) -> dict[str, Any] | None:
        path = self.model_dir / f"{name}.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def iter_status(self) -> Iterator[dict[str, Any]]:
        """One row per known model for ``models list`` (hashes each installed file once), then
        the INT8 variants that ``models pull NAME-int8`` can build and that are not built yet."""
        names = self.names()
        yield from self._status_rows(names)
        for parent in INT8_BUILDS:
            if f"{parent}-int8" not in names:
                spec = self.spec(parent)
                yield {"name": f"{parent}-int8", "installed": False, "verified": None,
                       "size_bytes": None, "licence": spec.licence, "licence_notes": None,
                       "source": f"built here from {parent}: cleancut models pull {parent}-int8",
                       "input_size": list(spec.input_size)}

    def _status_rows(self, names: list[str]) -> Iterator[dict[str, Any]]:
        for name in names:
            spec = self.spec(name)
            path = self.path_of(spec)
            installed = path.is_file()
            verified: bool | None = None
            if installed:
                try:
                    self.resolve(name)
                    verified = True
                except ModelChecksumMismatch:
                    verified = False
            yield {
                "name": name,
                "installed": installed,
                "verified": verified,
                "size_bytes": path.stat().st_size if installed else spec.size_bytes,
                "licence": spec.licence,
                "licence_notes": spec.licence_notes or None,
                "source": (self.metadata(name).get("source") if installed else None)
                or (spec.carrier.label if spec.carrier else "import only"),
                "input_size": list(spec.input_size),
            }


def _check_against_spec(spec: ModelSpec, sha_hex: str, md5_hex: str, size: int) -> None:
    if spec.size_bytes is not None and size != spec.size_bytes:
        raise ModelChecksumMismatch(
            f"file for {spec.name!r} has {size} bytes, expected {spec.size_bytes}; not installed"
        )
    if spec.sha256 is not None:
        if sha_hex != spec.sha256:
            raise ModelChecksumMismatch(
                f"file for {spec.name!r} has sha256 {sha_hex}, expected {spec.sha256}; "
                "not installed"
            )
    elif spec.md5 is not None:
        if md5_hex != spec.md5:
            raise ModelChecksumMismatch(
                f"file for {spec.name!r} has md5 {md5_hex}, expected {spec.md5}; not installed"
            )
    else:  # pragma: no cover - every catalog entry has one of the two
        raise ModelChecksumMismatch(f"no published checksum for {spec.name!r}")


def _spec_from_meta(meta: dict[str, Any]) -> ModelSpec:
    raw = dict(meta.get("spec") or {})
    raw["input_size"] = tuple(raw.get("input_size", (320, 320)))
    raw["mean"] = tuple(raw.get("mean", (0.485, 0.456, 0.406)))
    raw["std"] = tuple(raw.get("std", (0.229, 0.224, 0.225)))
    raw["sources"] = tuple(raw.get("sources", ()))
    raw["custom"] = True
    raw["sha256"] = meta.get("sha256")
    allowed = set(ModelSpec.__dataclass_fields__) - {"carrier"}
    return ModelSpec(**{k: v for k, v in raw.items() if k in allowed})
