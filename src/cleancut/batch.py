"""Folder processing for ``cleancut p``: mirror a tree, write atomically, keep going past bad
files, and optionally watch for files that arrive later.

A folder runs as a small bounded pipeline over the engine's own stages, so the cores that one
inference leaves idle are not wasted: one thread reads, decodes and preprocesses the next photos,
the calling thread runs inference, and a third finishes (mask, compose, encode) and writes the
ones before. At most ``DEPTH`` photos wait between two steps, so memory stays flat whatever the
folder holds. Everything that touches the report happens in the finishing thread, in input order,
so outputs and the report are those of one photo after another.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Protocol, TypeVar

from ._fs import atomic_write_bytes, read_image_file
from .engine import Engine, Options
from .engine.pipeline import Job
from .errors import CleancutError

__all__ = ["BatchReport", "Batch", "FolderJob", "IMAGE_SUFFIXES", "is_candidate", "output_name"]

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".gif"}
)
_OUT_SUFFIX = {"png": ".png", "webp": ".webp", "jpeg": ".jpg"}
DEPTH = 2  # photos allowed to wait between two steps of the pipeline
_T = TypeVar("_T")


@dataclass
class _Item:
    """One photo between the steps: its job, or why it stops early."""

    src: Path
    dst: Path
    job: Job | None = None
    skipped: bool = False
    error: str | None = None


@dataclass
class BatchReport:
    """Inputs by local path, or by URI where ``p --engine ray`` reads a bucket."""

    done: list[Path | str] = field(default_factory=list)
    skipped: list[Path | str] = field(default_factory=list)
    failed: list[tuple[Path | str, str]] = field(default_factory=list)
    warnings: list[tuple[Path | str, str]] = field(default_factory=list)  # done, with a caveat
    confidence: dict[Path | str, float] = field(default_factory=dict)  # of each one done

    @property
    def ok(self) -> bool:
        return not self.failed


class FolderJob(Protocol):
    """What the end of a folder job reads, whatever ran it."""

    report: BatchReport

    def output_for(self, src: Any) -> Path | str: ...


def is_candidate(path: PurePath) -> bool:
    name = path.name
    # hidden, temporary and partial files are someone's unfinished writes (ours included)
    if name.startswith(".") or name.endswith((".part", ".tmp", ".crdownload")):
        return False
    return path.suffix.lower() in IMAGE_SUFFIXES


def output_name(src: PurePath, fmt: str, *, has_sibling: bool) -> str:
    """The output's file name; siblings that share a stem keep their extension in the name
    (``a.jpg`` and ``a.png`` give ``a.jpg.png`` and ``a.png.png``) so nothing collides."""
    suffix = _OUT_SUFFIX[fmt]
    return f"{src.name}{suffix}" if has_sibling else f"{src.stem}{suffix}"


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
                if is_candidate(path):
                    yield path

    def output_for(self, src: Path) -> Path:
        """Mirror path of ``src``, named by :func:`output_name`."""
        rel = src.resolve().relative_to(self.in_dir)
        siblings = [
            p
            for p in src.parent.glob(f"{_glob_escape(src.stem)}.*")
            if p.name != src.name and p.stem == src.stem and is_candidate(p)
        ]
        return self.out_dir / rel.parent / output_name(src, self.options.format,
                                                       has_sibling=bool(siblings))

    def process_one(self, src: Path) -> None:
        """One photo, start to finish, in the calling thread (what ``watch`` does)."""
        item = self._start(src)
        self._infer(item)
        self._finish(item)

    def _start(self, src: Path) -> _Item:
        """Skip, or read, decode and preprocess."""
        item = _Item(src, self.output_for(src))
        if item.dst.exists() and not self.overwrite:
            item.skipped = True
            return item
        try:
            data = read_image_file(src, self.engine.limits.max_bytes)  # refused before it is read
            job = self.engine.job(self.options, self.model, data=data)
            item.job = self.engine.run(job, until="preprocess")
        except (CleancutError, OSError) as exc:
            item.error = _reason(exc)
        return item

    def _infer(self, item: _Item) -> None:
        if item.job is None:
            return
        try:
            self.engine.run(item.job, after="preprocess", until="inference")
        except CleancutError as exc:
            item.job, item.error = None, _reason(exc)

    def _finish(self, item: _Item) -> None:
        """Mask, compose, encode and write; then the report, in input order."""
        report = self.report
        if item.skipped:
            report.skipped.append(item.src)
            return
        if item.job is not None:
            try:
                result = self.engine.run(item.job, after="inference").result()
                assert result.data is not None
                atomic_write_bytes(item.dst, result.data)
            except (CleancutError, OSError) as exc:
                item.error = _reason(exc)
            else:
                report.warnings.extend((item.src, warning) for warning in result.warnings)
                if result.confidence is not None:
                    report.confidence[item.src] = result.confidence
            item.job = None
        if item.error is not None:
            report.failed.append((item.src, item.error))
        else:
            report.done.append(item.src)

    def run(self, paths: Iterable[Path], on_each: Callable[[Path], None] | None = None) -> None:
        """Process ``paths`` through the pipeline (module docstring); an exception that is not
        a photo's fault (a bug, Ctrl-C) stops every step and is raised here."""
        stop = threading.Event()
        errors: list[BaseException] = []
        started: queue.Queue[_Item | None] = queue.Queue(maxsize=DEPTH)
        inferred: queue.Queue[_Item | None] = queue.Queue(maxsize=DEPTH)

        def guarded(step: Callable[[], None]) -> Callable[[], None]:
            def run_step() -> None:
                try:
                    step()
                except BaseException as exc:  # handed to the calling thread, which raises it
                    errors.append(exc)
                    stop.set()
            return run_step

        def front() -> None:
            for src in paths:
                if not _put(started, self._start(src), stop):
                    return
            _put(started, None, stop)

        def back() -> None:
            while (item := _get(inferred, stop)) is not None:
                self._finish(item)
                if on_each is not None:
                    on_each(item.src)

        threads = [threading.Thread(target=guarded(step), name=f"cleancut-batch-{step.__name__}",
                                    daemon=True) for step in (front, back)]
        for thread in threads:
            thread.start()
        try:
            while (item := _get(started, stop)) is not None:
                self._infer(item)
                if not _put(inferred, item, stop):
                    break
            _put(inferred, None, stop)
        except BaseException:
            stop.set()
            raise
        finally:
            for thread in threads:
                thread.join()
        if errors:
            raise errors[0]

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
                if not is_candidate(path) or batch._inside_out_dir(path.resolve()):
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


def _reason(exc: CleancutError | OSError) -> str:
    if isinstance(exc, CleancutError):
        return f"{exc.code}: {exc.detail}"
    return f"io_error: {exc.strerror or exc}"


def _put(q: queue.Queue[_T], item: _T, stop: threading.Event) -> bool:
    """Put ``item`` unless the pipeline stops first (a full queue never blocks forever)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue[_T | None], stop: threading.Event) -> _T | None:
    """The next item, or None at the end or when the pipeline stops."""
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return None


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)
