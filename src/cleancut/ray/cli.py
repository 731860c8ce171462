"""The ``--engine ray`` halves of ``cleancut p`` and ``cleancut serve``: a few lines each over
:mod:`.data` and :mod:`.serve`, ending as their local halves do."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ..batch import Batch
from ..cli.flags import options_from
from ..cli.images import finish_batch
from ..config import Settings
from ..engine import Engine
from ..engine.fusion import model_names
from ..engine.pipeline import MAX_FUSED, expand
from ..errors import InvalidParameter
from .cluster import require_ray

__all__ = ["cmd_p", "cmd_serve"]


def _check_model(engine: Engine, name: str) -> None:
    """Fail here, with the store's message, before any cluster starts; verifies the files
    without loading them (the actors load them)."""
    parts = model_names(expand(name))
    if len(parts) > MAX_FUSED:
        raise InvalidParameter("model", f"model {name[:80]!r} joins {len(parts)} models; "
                               f"a fused mask joins at most {MAX_FUSED}")
    for part in parts:
        engine.store.resolve(part)


def cmd_p(args: argparse.Namespace, engine: Engine) -> int:
    """``cleancut p IN OUT --engine ray``: IN and OUT are folders, or URIs of any filesystem
    Ray Data reads (``s3://bucket/photos``)."""
    require_ray()
    from .data import run_folder, run_uri_folder
    from .uri import Location, UriFolder, is_uri

    options = options_from(args)
    model = options.model or engine.settings.default_model
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        console=Console(stderr=True), transient=True)
    job: Batch | UriFolder
    if is_uri(args.input) or is_uri(args.output):
        job = UriFolder(options, model, Location.parse(args.input, "input"),
                        Location.parse(args.output, "output"), overwrite=args.overwrite)
        _check_model(engine, model)
        sources = job.scan()
        with progress:
            task = progress.add_task("removing backgrounds (ray)", total=len(sources))
            run_uri_folder(job, sources, engine.settings, address=args.address,
                           on_each=lambda _p: progress.advance(task))
    else:
        in_dir, out_dir = Path(args.input), Path(args.output)
        if not in_dir.is_dir():
            raise InvalidParameter("input", f"{in_dir} is not a folder")
        job = Batch(engine, options, model, in_dir, out_dir, overwrite=args.overwrite)
        _check_model(engine, model)
        files = list(job.scan())
        with progress:
            task = progress.add_task("removing backgrounds (ray)", total=len(files))
            run_folder(job, files, engine.settings, address=args.address,
                       on_each=lambda _p: progress.advance(task))
    return finish_batch(job, args.json)


def cmd_serve(settings: Settings, address: str | None) -> int:
    """``cleancut serve --engine ray``: until SIGTERM or SIGINT."""
    require_ray()
    from .serve import serve_until_stopped

    serve_until_stopped(settings, address)
    return 0
