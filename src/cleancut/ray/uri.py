"""Folders given as URIs for ``cleancut p --engine ray``: ``s3://bucket/photos``, ``gs://…``,
``hdfs://…``, ``file:///…``, whatever filesystem pyarrow (hence Ray Data) opens, with its own
credentials and settings from the environment (``AWS_*`` for S3, for instance).

The job is the local one: the same inputs (image suffixes, no hidden or partial files, nothing
from inside OUT), the same output names, the same skip and overwrite rules, and outputs that
appear whole or not at all: a local output through a temporary file and a rename, an object in
a bucket through one upload of the finished bytes, which the store makes visible only once
complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .._fs import atomic_write_bytes
from ..batch import BatchReport, is_candidate, output_name
from ..engine import Options
from ..errors import InvalidParameter

__all__ = ["is_uri", "Location", "UriFolder", "write_whole"]


def is_uri(text: str) -> bool:
    return "://" in text


@dataclass(frozen=True)
class Location:
    """A folder on a filesystem: ``path`` inside ``fs``, and the ``scheme`` it was named with
    (empty for a plain local path)."""

    fs: Any  # a pyarrow.fs.FileSystem
    path: str
    scheme: str = ""

    @classmethod
    def parse(cls, text: str, what: str) -> Location:
        import pyarrow.fs as pafs

        if not is_uri(text):
            return cls(pafs.LocalFileSystem(), str(Path(text).absolute()))
        try:
            fs, path = pafs.FileSystem.from_uri(text)
        except (OSError, ValueError, NotImplementedError) as exc:  # pyarrow's errors derive so
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise InvalidParameter(what, f"cannot open {text[:200]!r}: {first}") from exc
        return cls(fs, path.rstrip("/"), text.split("://", 1)[0])

    @property
    def remote(self) -> bool:
        """Anything but the local filesystem (where outputs are renamed into place)."""
        return bool(self.fs.type_name != "local")

    def show(self, path: str) -> str:
        """``path`` as the user would name it."""
        return f"{self.scheme}://{path}" if self.scheme else path

    def join(self, *parts: str) -> str:
        return "/".join([self.path, *(p for p in parts if p and p != ".")])

    def contains(self, other: Location, path: str) -> bool:
        """Whether ``path`` of ``other`` lies inside this folder."""
        return other.fs.type_name == self.fs.type_name and \
            f"{path}/".startswith(f"{self.path}/")


def _walk_key(rel: str) -> list[tuple[int, str]]:
    """The local engine's order (``os.walk``, sorted): a folder's files, then its subfolders."""
    *folders, name = rel.split("/")
    return [*((1, part) for part in folders), (0, name)]


@dataclass
class UriFolder:
    """IN into OUT where either is a URI; :class:`~cleancut.batch.Batch`'s planning, over a
    pyarrow filesystem."""

    options: Options
    model: str
    source: Location
    target: Location
    overwrite: bool = False
    report: BatchReport = field(default_factory=BatchReport)
    _outputs: dict[str, str] = field(default_factory=dict)  # input path -> output path

    def scan(self) -> list[str]:
        """Input images below IN (paths inside its filesystem), in the local engine's order."""
        import pyarrow.fs as pafs

        try:
            infos = self.source.fs.get_file_info(pafs.FileSelector(self.source.path,
                                                                   recursive=True))
        except OSError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise InvalidParameter("input", f"cannot list {self.source.show(self.source.path)}"
                                   f": {first}") from exc
        found: dict[str, PurePosixPath] = {}
        for info in infos:
            rel = info.path[len(self.source.path):].lstrip("/")
            if info.type != pafs.FileType.File or not rel:
                continue
            if any(part.startswith(".") for part in rel.split("/")[:-1]):
                continue
            if self.target.contains(self.source, info.path) or not is_candidate(
                    PurePosixPath(rel)):
                continue
            found[info.path] = PurePosixPath(rel)
        stems: dict[tuple[PurePosixPath, str], int] = {}
        for rel in found.values():
            stems[(rel.parent, rel.stem)] = stems.get((rel.parent, rel.stem), 0) + 1
        for path, rel in found.items():
            shared = stems[(rel.parent, rel.stem)] > 1
            name = output_name(rel, self.options.format, has_sibling=shared)
            self._outputs[path] = self.target.join(str(rel.parent), name)
        return sorted(found, key=lambda p: _walk_key(str(found[p])))

    def destination(self, src: str) -> str:
        """The output path of input ``src`` (from :meth:`scan`), inside OUT's filesystem."""
        return self._outputs[src]

    def output_for(self, shown: str) -> str:
        """The output of an input as the report names it."""
        src = shown.split("://", 1)[1] if self.source.scheme else shown
        return self.target.show(self._outputs[src])

    def outputs_exist(self, sources: list[str]) -> list[bool]:
        import pyarrow.fs as pafs

        if not sources:
            return []
        infos = self.target.fs.get_file_info([self._outputs[s] for s in sources])
        return [info.type != pafs.FileType.NotFound for info in infos]


def write_whole(dest: str, data: bytes, fs: Any = None) -> None:
    """``data`` at ``dest``, never half of it: a local file (``fs`` is ``None``) through a
    rename; an object through one upload, closed only after every byte is written."""
    if fs is None:
        atomic_write_bytes(Path(dest), data)
        return
    with fs.open_output_stream(dest) as out:
        out.write(data)
