"""``cleancut i``, ``p`` and ``b``: one image, a folder, raw video frames."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from .._fs import atomic_write_bytes, read_image_file
from ..batch import Batch, FolderJob
from ..engine import Engine, Options, Result
from ..errors import InvalidParameter, ResolutionTooHigh
from .flags import options_from

__all__ = ["cmd_i", "cmd_p", "cmd_b", "finish_batch", "SUFFIX_FORMATS"]

SUFFIX_FORMATS = {".png": "png", ".webp": "webp", ".jpg": "jpeg", ".jpeg": "jpeg"}


def _suffix_format(path: str | None) -> str:
    return SUFFIX_FORMATS.get(Path(path).suffix.lower(), "png") if path else "png"


def _model(engine: Engine, options: Options) -> str:
    name = options.model or engine.settings.default_model
    engine.models(name)  # fail early, with the store's message, before any input is read
    return name


def _load_kernels() -> None:
    from ..engine.refine import warm_up

    # a failure here is the first photo's to report, in its own words
    with contextlib.suppress(Exception):
        warm_up()


def write_stdout(data: bytes) -> None:
    """All of ``data`` to standard output. A buffered write to a pipe whose reader has gone
    stops short without an error; each ``os.write`` here either writes or raises
    BrokenPipeError (which ``main`` turns into a quiet exit 1)."""
    sys.stdout.buffer.flush()
    view = memoryview(data)
    while view:
        view = view[os.write(sys.stdout.fileno(), view):]


def warn(result: Result) -> None:
    for warning in result.warnings:
        print(f"cleancut: warning: {warning}", file=sys.stderr)


def write_report(target: str | None, report: dict[str, Any]) -> None:
    """The ``--json`` report: to a file (atomically), or to stderr for ``-`` (stdout may
    carry the image)."""
    if not target:
        return
    text = json.dumps(report, indent=2) + "\n"
    if target == "-":
        sys.stderr.write(text)
    else:
        atomic_write_bytes(Path(target), text.encode())


def describe(result: Result) -> dict[str, Any]:
    box = result.foreground
    return {
        "model": result.model, "width": result.width, "height": result.height,
        "confidence": None if result.confidence is None else round(result.confidence, 4),
        "foreground": None if box is None else dict(zip(("left", "top", "width", "height"), box,
                                                        strict=True)),
        "warnings": result.warnings,
        "timings_ms": {k: round(v, 2) for k, v in result.timings_ms.items()},
    }


def cmd_i(args: argparse.Namespace, engine: Engine) -> int:
    options = options_from(args, format=_suffix_format(None if args.output == "-" else
                                                       args.output))
    if args.output == "-" and sys.stdout.isatty():
        raise InvalidParameter(
            "output",
            "refusing to write image bytes to a terminal; "
            "give an OUTPUT file or redirect standard output",
        )
    model = _model(engine, options)
    if args.input == "-":
        data = sys.stdin.buffer.read(engine.limits.max_bytes + 1)
    else:
        data = read_image_file(Path(args.input), engine.limits.max_bytes)
    result = engine.process(data, options, model=model)
    warn(result)
    assert result.data is not None
    if args.output == "-":
        write_stdout(result.data)
    else:
        atomic_write_bytes(Path(args.output), result.data)
    write_report(args.json, {"input": args.input, "output": args.output, **describe(result)})
    return 0


def cmd_p(args: argparse.Namespace, engine: Engine) -> int:
    in_dir, out_dir = Path(args.input), Path(args.output)
    if not in_dir.is_dir():
        raise InvalidParameter("input", f"{in_dir} is not a folder")
    options = options_from(args)
    if options.decontaminate:
        # numba loads the edge-colour kernels from its cache in about a second: on the other
        # core while the model loads, rather than on the first photo's way out
        threading.Thread(target=_load_kernels, name="cleancut-kernels", daemon=True).start()
    batch = Batch(engine, options, _model(engine, options), in_dir, out_dir,
                  overwrite=args.overwrite)
    console = Console(stderr=True)
    files = list(batch.scan())
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("removing backgrounds", total=len(files))
        batch.run(files, on_each=lambda _p: progress.advance(task))
    if args.watch:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        batch.watch(
            stop,
            on_ready=lambda: print(
                f"watching {batch.in_dir} for new images (Ctrl-C to stop)",
                file=sys.stderr,
                flush=True,
            ),
            on_each=lambda p: print(f"processed {p}", file=sys.stderr, flush=True),
        )
    return finish_batch(batch, args.json)


def finish_batch(batch: FolderJob, json_target: str | None) -> int:
    """The end of a folder job, whatever ran it: counts and each failure on stderr, the
    ``--json`` report, and the exit code (1 when any file failed)."""
    r = batch.report
    print(
        f"done {len(r.done)}, skipped {len(r.skipped)} (output exists; --overwrite to redo), "
        f"failed {len(r.failed)}",
        file=sys.stderr,
    )
    for path, warning in r.warnings:
        print(f"  warning {path}: {warning}", file=sys.stderr)
    for path, reason in r.failed:
        print(f"  failed {path}: {reason}", file=sys.stderr)
    write_report(json_target, {
        "done": [{"input": str(p), "output": str(batch.output_for(p)),
                  "confidence": None if p not in r.confidence else round(r.confidence[p], 4)}
                 for p in r.done],
        "skipped": [str(p) for p in r.skipped],
        "failed": [{"input": str(p), "reason": reason} for p, reason in r.failed],
        "warnings": [{"input": str(p), "warning": w} for p, w in r.warnings],
    })
    return 0 if r.ok else 1


def cmd_b(args: argparse.Namespace, engine: Engine) -> int:
    width, height = args.width, args.height
    if width <= 0 or height <= 0:
        raise InvalidParameter("size", "WIDTH and HEIGHT must be positive")
    options = options_from(args, format=_suffix_format(args.output))
    if width * height > engine.limits.max_pixels:
        raise ResolutionTooHigh(
            f"frames of {width}×{height} exceed {engine.limits.max_pixels} "
            "pixels (CLEANCUT_MAX_PIXELS)"
        )
    session = engine.models(_model(engine, options))
    frame_bytes = width * height * 3
    stdin = sys.stdin.buffer
    index = 0
    while True:
        chunk = stdin.read(frame_bytes)
        if not chunk:
            return 0
        while len(chunk) < frame_bytes:  # pipes deliver in pieces
            more = stdin.read(frame_bytes - len(chunk))
            if not more:
                raise InvalidParameter(
                    "input",
                    f"frame {index + 1} is short: {len(chunk)} of {frame_bytes} bytes "
                    f"({width}×{height} RGB24); check WIDTH, HEIGHT and -pix_fmt rgb24",
                )
            chunk += more
        index += 1
        frame = Image.frombytes("RGB", (width, height), chunk)
        result = engine.cut(frame, options, model=session, encode=True)
        warn(result)
        assert result.data is not None
        if args.output:
            atomic_write_bytes(Path(args.output % index), result.data)
        else:
            write_stdout(result.data)
