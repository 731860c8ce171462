"""Folder processing for ``cleancut p``: mirror a tree, write atomically, keep going past bad
files, and optionally watch for files that arrive later."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ._fs import atomic_write_bytes
from .engine import Engine, Options
from .errors import CleancutError

__all__ = ["BatchReport", "Batch", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".gif"}
)
_OUT_SUFFIX = {"png": ".png", "webp": ".webp", "jpeg": ".jpg"}


@dataclass
class BatchReport:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[tuple[Path, str]] = field(default_factory=list)  # done, with a caveat
    confidence: dict[Path, float] = field(default_factory=dict)  # of each one done

    @property
    def ok(self) -> bool:
        return not self.failed


def _is_candidate(path: Path) -> bool:
    name = path.name
    # hidden, temporary and partial files are someone's unfinished writes (ours included)
    if name.startswith(".") or name.endswith((".part", ".tmp", ".crdownload")):
        return False
    return path.suffix.lower() in IMAGE_SUFFIXES


class Batch:
    """Processes IN_DIR into OUT_DIR, mirroring the tree."""

    def __init__(
        self,
        engine: Engine,
        options: Options,
        model: str,
        in_dir: Path,
        out_dir: Path,
        *,
        overwrite: bool = False,
    ) -> None:
        self.engine, self.options, self.model = engine, options, model
        self.in_dir, self.out_dir = in_dir.resolve(), out_dir.resolve()
        self.overwrite = overwrite
        self.report = BatchReport()

    def _inside_out_dir(self, path: Path) -> bool:
        return path == self.out_dir or self.out_dir in path.parents

    def scan(self) -> Iterator[Path]:
        """Input images below IN_DIR, in a stable order, never from inside OUT_DIR."""
        for root, dirs, files in os.walk(self.in_dir):
            root_path = Path(root)
            dirs[:] = sorted(
                d
                for d in dirs
                if not d.startswith(".") and not self._inside_out_dir((root_path / d).resolve())
            )
            for name in sorted(files):
                path = root_path / name
                if _is_candidate(path):
                    yield path

    def output_for(self, src: Path) -> Path:
        """Mirror path of ``src``; siblings that share a stem keep their extension in the name
        (``a.jpg`` and ``a.png`` give ``a.jpg.png`` and ``a.png.png``) so nothing collides."""
        rel = src.resolve().relative_to(self.in_dir)
        suffix = _OUT_SUFFIX[self.options.format]
        siblings = [
            p
            for p in src.parent.glob(f"{_glob_escape(src.stem)}.*")
            if p.name != src.name and p.stem == src.stem and _is_candidate(p)
        ]
        name = f"{src.name}{suffix}" if siblings else f"{src.stem}{suffix}"
        return self.out_dir / rel.parent / name

    def process_one(self, src: Path) -> None:
        dst = self.output_for(src)
        if dst.exists() and not self.overwrite:
            self.report.skipped.append(src)
            return
        try:
            data = src.read_bytes()
            result = self.engine.process(data, self.options, model=self.model)
            assert result.data is not None
            atomic_write_bytes(dst, result.data)
            self.report.warnings.extend((src, warning) for warning in result.warnings)
            if result.confidence is not None:
                self.report.confidence[src] = result.confidence
        except CleancutError as exc:
            self.report.failed.append((src, f"{exc.code}: {exc.detail}"))
            return
        except OSError as exc:
            self.report.failed.append((src, f"io_error: {exc.strerror or exc}"))
            return
        self.report.done.append(src)

    def run(self, paths: Iterable[Path], on_each: Callable[[Path], None] | None = None) -> None:
        for src in paths:
            self.process_one(src)
            if on_each is not None:
                on_each(src)

    def watch(
        self,
        stop: threading.Event,
        *,
        debounce_s: float = 0.5,
        on_ready: Callable[[], None] | None = None,
        on_each: Callable[[Path], None] | None = None,
    ) -> None:
        """Process files that are created or moved into IN_DIR until ``stop`` is set.

        A file is taken once it has been quiet (no event, same size and mtime) for ``debounce_s``,
        so half-written files are never read. Reads and outputs raise no events we act on: only
        writes, creations and moves inside IN_DIR (outside OUT_DIR) count.
        """
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        pending: dict[Path, tuple[float, tuple[int, int] | None]] = {}
        pending_lock = threading.Lock()
        batch = self

        class Handler(FileSystemEventHandler):
            def _note(self, raw: str | bytes) -> None:
                path = Path(os.fsdecode(raw))
                if not _is_candidate(path) or batch._inside_out_dir(path.resolve()):
                    return
                with pending_lock:
                    pending[path] = (time.monotonic(), None)

            def on_created(self, event: FileSystemEvent) -> None:
                if not event.is_directory:
                    self._note(event.src_path)

            def on_modified(self, event: FileSystemEvent) -> None:
                if not event.is_directory:
                    self._note(event.src_path)

            def on_closed(self, event: FileSystemEvent) -> None:
                self._note(event.src_path)

            def on_moved(self, event: FileSystemEvent) -> None:
                if not event.is_directory:
                    self._note(event.dest_path)

        observer = Observer()
        observer.schedule(Handler(), str(self.in_dir), recursive=True)
        observer.start()
        if on_ready is not None:
            on_ready()
        try:
            while not stop.wait(debounce_s / 4):
                now = time.monotonic()
                ready = []
                with pending_lock:
                    for path, (seen, last_stat) in list(pending.items()):
                        if now - seen < debounce_s:
                            continue
                        try:
                            st = path.stat()
                        except FileNotFoundError:
                            del pending[path]
                            continue
                        stat = (st.st_size, st.st_mtime_ns)
                        if stat != last_stat:  # still changing: look again after a quiet spell
                            pending[path] = (now, stat)
                            continue
                        del pending[path]
                        ready.append(path)
                for path in ready:
                    self.process_one(path)
                    if on_each is not None:
                        on_each(path)
        finally:
            observer.stop()
            observer.join(timeout=5)


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)
