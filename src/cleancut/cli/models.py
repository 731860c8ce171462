"""``cleancut models pull | import | list | quantize``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from .._fs import atomic_write_bytes
from ..config import Settings
from ..engine import Engine
from ..errors import CleancutError, InvalidParameter, QuantizeRejected
from ..evaluate import dataset_pairs
from ..models import DEFAULT_PULL, ModelStore
from ..models.pull import import_custom, import_file, pull
from ..quantize import MAE_GAIN_GATE, MAX_F_LOSS_GATE, SPEED_GATE, QuantizeReport, quantize

__all__ = ["cmd_models_pull", "cmd_models_import", "cmd_models_list", "cmd_models_quantize"]


def cmd_models_pull(args: argparse.Namespace, settings: Settings) -> int:
    store = ModelStore(settings.model_dir)
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


def cmd_models_import(args: argparse.Namespace, settings: Settings) -> int:
    store = ModelStore(settings.model_dir)
    file = Path(args.file)
    if not file.is_file():
        raise InvalidParameter("file", f"no such file: {file}")
    installed = (import_custom if args.custom else import_file)(store, args.name, file)
    print(f"{args.name}: installed at {installed.path} (sha256 {installed.sha256})")
    return 0


def cmd_models_list(args: argparse.Namespace, settings: Settings) -> int:
    rows = list(ModelStore(settings.model_dir).iter_status())
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table()
    for column in ("name", "installed", "verified", "size"):
        table.add_column(column, no_wrap=True)
    for column in ("licence", "source"):  # long for carriers such as ISNet's npm package
        table.add_column(column, overflow="fold")
    for r in rows:
        verified = {True: "yes", False: "NO (checksum)", None: "-"}[r["verified"]]
        size = f"{r['size_bytes'] / 1e6:.1f} MB" if r["size_bytes"] else "?"
        table.add_row(
            r["name"], "yes" if r["installed"] else "no", verified, size, r["licence"], r["source"]
        )
    Console(width=max(120, Console().width)).print(table)
    return 0


def cmd_models_quantize(args: argparse.Namespace, engine: Engine) -> int:
    if not args.calibration:
        raise InvalidParameter(
            "calibration",
            "give --calibration DIR: a folder of photos like the ones you will process, and not "
            "your evaluation set (a handful is enough; the test suite uses the 8 photos in "
            "tests/fixtures/golden/inputs)",
        )
    if args.runs < 3:
        raise InvalidParameter("runs", "--runs must be at least 3")
    pairs = None
    if args.eval:
        pairs, _unmatched = dataset_pairs(Path(args.eval), args.limit)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("scoring fp32, then int8", total=2 * len(pairs or ()), visible=False)
    try:
        with bar:
            report = quantize(
                engine,
                args.name,
                Path(args.calibration),
                exclude=args.exclude or (),
                default_excludes=not args.no_default_excludes,
                eval_pairs=pairs,
                runs=args.runs,
                force=args.force,
                log=lambda msg: bar.console.print(f"cleancut: {msg}"),
                on_eval_image=lambda _n: bar.update(task, visible=True, advance=1),
            )
    except QuantizeRejected as exc:
        _finish(exc.measured, args.json)
        raise
    _finish(report, args.json)
    return 0


def _finish(r: QuantizeReport, json_out: str | None) -> None:
    print(
        f"{r.name}: floor {r.fp32_ms:.1f} → {r.int8_ms:.1f} ms (median of {r.runs}, interleaved, "
        f"threads {r.threads or 'default'}), {r.speedup:.2f}× faster (gate ≥ {SPEED_GATE}×); "
        f"{r.fp32_size / 1e6:.1f} → {r.int8_size / 1e6:.1f} MB"
    )
    if r.quality:
        q, a, b = r.quality, r.quality["fp32"], r.quality["int8"]
        print(
            f"{r.name}: on {q['count']} images max Fβ {a['max_f']:.4f} → {b['max_f']:.4f} "
            f"({-q['max_f_loss']:+.4f}, gate ≥ −{MAX_F_LOSS_GATE}), MAE {a['mae']:.4f} → "
            f"{b['mae']:.4f} ({q['mae_gain']:+.4f}, gate ≤ +{MAE_GAIN_GATE}), IoU {a['iou']:.4f} → "
            f"{b['iou']:.4f}, S-measure {a['s_measure']:.4f} → {b['s_measure']:.4f}"
        )
    else:
        print(f"{r.name}: quality not checked (give --eval DIR to score it)")
    if r.installed:
        forced = " despite failed gates (--force)" if r.failures else ""
        print(f"{r.name}: installed at {r.installed.path}{forced} (sha256 {r.installed.sha256})")
    if json_out:
        atomic_write_bytes(Path(json_out), json.dumps(r.to_dict(), indent=2).encode())
    sys.stdout.flush()
