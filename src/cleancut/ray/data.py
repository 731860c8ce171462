"""``cleancut p --engine ray``: the folder job on Ray Data.

The driver plans as the local engine does (:class:`~cleancut.batch.Batch` finds the inputs,
names each output and applies the skip and overwrite rules; :class:`~.uri.UriFolder` does the
same where IN or OUT is a URI such as ``s3://bucket/photos``), then Ray Data reads the photos
(``read_binary_files``, on the inputs' filesystem) and a pool of actors runs them through the
one pipeline: each actor holds one :class:`~cleancut.engine.Engine`, loads the model once, and
writes each output itself, whole or not at all. Each actor answers one row per photo, done or
failed with its reason, and the driver fills the job's report from them, so the end of the job
is the local one (:func:`cleancut.cli.images.finish_batch`).

Ray Data restarts an actor lost with its node and runs its unfinished batches again elsewhere;
an output written twice is written whole both times.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..batch import Batch, BatchReport, output_name
from ..config import Settings
from ..engine import Engine, Options
from ..engine.process import configure_process
from ..errors import CleancutError
from .cluster import connected, private_process
from .uri import UriFolder, write_whole

__all__ = ["Cutter", "Naming", "Plan", "run_folder", "run_uri_folder", "actors_for"]

_MISSING = "io_error: No such file or directory"  # what the local engine reports for it
Entry = Path | str  # an input as the report names it


@dataclass(frozen=True)
class Naming:
    """Each input's output path, worked out by the actor that writes it: what every actor is
    given is two folders and the few outputs that are not named by the rule (siblings that share
    a stem, say), not a table of every path of the job."""

    in_root: str
    out_root: str
    format: str
    overrides: dict[str, str] = field(default_factory=dict)

    def by_rule(self, src: str) -> str:
        rel = PurePosixPath(src[len(self.in_root):].lstrip("/"))
        name = output_name(rel, self.format, has_sibling=False)
        return "/".join(p for p in (self.out_root, str(rel.parent), name) if p not in ("", "."))

    def dest(self, src: str) -> str:
        return self.overrides.get(src) or self.by_rule(src)

    def add(self, src: str, dest: str) -> None:
        """Record that ``src`` goes to ``dest`` (kept only where the rule says otherwise)."""
        if self.by_rule(src) != dest:
            self.overrides[src] = dest


@dataclass
class Plan:
    """What the actors do: the inputs to read (as Ray Data reads them), their outputs, the
    filesystems of both (``None``: local paths), and the report's name for each input."""

    naming: Naming
    shown: dict[str, Entry] = field(default_factory=dict)
    in_fs: Any = None
    out_fs: Any = None

    def add(self, src: str, dest: str, shown: Entry) -> None:
        self.naming.add(src, dest)
        self.shown[src] = shown


class Cutter:
    """One actor of the pool: its own engine, with ONNX Runtime's threads set from the actor's
    CPUs (not from the node's cores, which other actors share)."""

    def __init__(self, settings: Settings, options: Options, model: str,
                 naming: Naming, out_fs: Any = None) -> None:
        private_process(settings)
        configure_process(settings)  # the actor owns its process, as the CLI owns its own
        threads = settings.ray_actor_threads or max(1, math.ceil(settings.ray_actor_cpus))
        self.engine = Engine(settings.model_copy(update={"intra_op_threads": threads}))
        self.models = self.engine.models(model)  # loaded once, here, for every batch
        self.options = options
        self.naming = naming
        self.out_fs = out_fs

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        failed: list[str] = []
        warnings: list[str] = []
        confidence: list[float] = []
        for path, data in zip(batch["path"], batch["bytes"], strict=True):
            reason, notes, score = "", [], math.nan
            try:
                result = self.engine.process(bytes(data), self.options, model=self.models)
                assert result.data is not None
                write_whole(self.naming.dest(str(path)), result.data, self.out_fs)
                notes = result.warnings
                score = math.nan if result.confidence is None else result.confidence
            except CleancutError as exc:  # a bad photo fails alone, as in the local engine
                reason = f"{exc.code}: {exc.detail}"
            except OSError as exc:
                reason = f"io_error: {exc.strerror or exc}"
            failed.append(reason)
            warnings.append("\n".join(notes))
            confidence.append(score)
        return {"path": np.asarray(batch["path"]), "failed": np.asarray(failed, dtype=object),
                "warnings": np.asarray(warnings, dtype=object),
                "confidence": np.asarray(confidence, dtype=np.float64)}


def actors_for(settings: Settings, photos: int, cluster_cpus: float) -> int:
    """Actors in the pool: ``CLEANCUT_RAY_ACTORS``, else one per CPU of the cluster; never more
    than there are photos."""
    wanted = settings.ray_actors or max(1, int(cluster_cpus))
    return max(1, min(wanted, photos))


def run_folder(batch: Batch, files: Iterable[Path], settings: Settings, *,
               address: str | None = None,
               on_each: Callable[[Entry], None] | None = None) -> None:
    """Process ``files`` (from ``batch.scan()``) on Ray into ``batch.report``, as
    ``batch.run(files)`` does locally: outputs that exist are skipped unless
    ``batch.overwrite``; ``on_each`` is called once per file, done, skipped or failed. The
    report lists files in input order."""
    plan = Plan(Naming(str(batch.in_dir), str(batch.out_dir), batch.options.format))
    order: list[Entry] = []
    for src in files:
        order.append(src)
        dst = batch.output_for(src)
        if dst.exists() and not batch.overwrite:
            batch.report.skipped.append(src)
            if on_each is not None:
                on_each(src)
        else:
            plan.add(str(src), str(dst), src)
    _execute(plan, batch.report, batch.options, batch.model, order, settings, address, on_each)


def run_uri_folder(job: UriFolder, sources: list[str], settings: Settings, *,
                   address: str | None = None,
                   on_each: Callable[[Entry], None] | None = None) -> None:
    """:func:`run_folder` for a job whose IN or OUT is a URI; ``sources`` from
    ``job.scan()``."""
    plan = Plan(Naming(job.source.path, job.target.path, job.options.format), {},
                job.source.fs, job.target.fs if job.target.remote else None)
    order: list[Entry] = []
    exists = job.outputs_exist(sources)
    for src, there in zip(sources, exists, strict=True):
        shown = job.source.show(src)
        order.append(shown)
        if there and not job.overwrite:
            job.report.skipped.append(shown)
            if on_each is not None:
                on_each(shown)
        else:
            plan.add(src, job.destination(src), shown)
    _execute(plan, job.report, job.options, job.model, order, settings, address, on_each)


def _execute(plan: Plan, report: BatchReport, options: Options, model: str, order: list[Entry],
             settings: Settings, address: str | None,
             on_each: Callable[[Entry], None] | None) -> None:
    if plan.shown:  # a job with nothing to do starts no cluster
        with connected(settings, address, parts=("data",)):
            _run(plan, report, options, model, settings, on_each)
    rank = {entry: i for i, entry in enumerate(order)}
    for entries in (report.done, report.skipped):
        entries.sort(key=rank.__getitem__)
    for pairs in (report.failed, report.warnings):
        pairs.sort(key=lambda pair: rank[pair[0]])


def _run(plan: Plan, report: BatchReport, options: Options, model: str, settings: Settings,
         on_each: Callable[[Entry], None] | None) -> None:
    import ray
    from ray.data import ActorPoolStrategy, DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False  # the CLI draws its own
    context.print_on_execution_start = False
    for handler in logging.getLogger("ray.data").handlers:  # Ray Data's notes, on the terminal
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.ERROR)
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    cpus = float(resources.get("CPU", 1))
    size = actors_for(settings, len(plan.shown), cpus)
    dataset = ray.data.read_binary_files(
        list(plan.shown), include_paths=True, filesystem=plan.in_fs,
        ignore_missing_paths=True,  # a photo removed since the scan is reported, not fatal
    ).map_batches(
        Cutter,
        fn_constructor_kwargs={"settings": settings, "options": options, "model": model,
                               "naming": plan.naming, "out_fs": plan.out_fs},
        compute=ActorPoolStrategy(size=size),
        num_cpus=settings.ray_actor_cpus,
        batch_size=settings.ray_batch_size,
        batch_format="numpy",
    )
    pending = dict(plan.shown)
    for row in dataset.iter_rows():
        src = pending.pop(str(row["path"]))
        _record(report, src, row)
        if on_each is not None:
            on_each(src)
    for src in pending.values():  # never read: it was gone by then
        report.failed.append((src, _MISSING))
        if on_each is not None:
            on_each(src)


def _record(report: BatchReport, src: Entry, row: dict[str, Any]) -> None:
    if row["failed"]:
        report.failed.append((src, str(row["failed"])))
        return
    if row["warnings"]:
        report.warnings.extend((src, w) for w in str(row["warnings"]).split("\n"))
    if not math.isnan(row["confidence"]):
        report.confidence[src] = float(row["confidence"])
    report.done.append(src)
