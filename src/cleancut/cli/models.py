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
from ..models import CATALOG, DEFAULT_PULL, ModelStore
from ..models.pull import import_custom, import_file, pull
from ..models.store import InstalledModel
from ..quantize import (
    MAE_GAIN_GATE,
    MAX_F_LOSS_GATE,
    SPEED_GATE,
    QuantizeReport,
    int8_parent,
    pull_int8,
    quantize,
)

__all__ = ["cmd_models_pull", "cmd_models_import", "cmd_models_list", "cmd_models_quantize"]


def cmd_models_pull(args: argparse.Namespace, settings: Settings) -> int:
    store = ModelStore(settings.model_dir)
    failed = 0
    names = list(args.names or DEFAULT_PULL)
    # an INT8 variant is built from its parent: fetch the parent first, once
    for name in list(names):
        parent = int8_parent(name)
        if parent in CATALOG and parent not in names:
            names.insert(names.index(name), parent)
    for name in names:
        try:
            if int8_parent(name) in CATALOG:
                installed, changed = _pull_int8(settings, name)
            else:
                installed, changed = pull(store, name)
        except CleancutError as exc:
            print(f"cleancut: error: {name}: {exc.detail}", file=sys.stderr)
            failed += 1
            continue
        state = "installed" if changed else "already installed and verified"
        print(f"{name}: {state} at {installed.path} (sha256 {installed.sha256[:12]}…)")
    return 1 if failed else 0


def _pull_int8(settings: Settings, name: str) -> tuple[InstalledModel, bool]:
    log = Console(stderr=True)
    installed, report = pull_int8(Engine(settings), name,
                                  log=lambda msg: log.print(f"cleancut: {msg}", highlight=False))
    if report is None:
        return installed, False
    a = report.agreement or {}
    print(f"{name}: built from {report.parent} on {report.calibration_images} views of the "
          f"shipped photos; masks against fp32 on {a.get('count')} held-out views: MAE "
          f"{a.get('mae', 0):.4f}, IoU {a.get('iou', 0):.4f} (lowest {a.get('worst_iou', 0):.4f})")
    print(f"{name}: floor {report.fp32_ms:.1f} → {report.int8_ms:.1f} ms, "
          f"{report.speedup:.2f}× faster than {report.parent} on this CPU")
    if report.speedup < SPEED_GATE:
        print(f"cleancut: warning: {name} is only {report.speedup:.2f}× faster than "
              f"{report.parent} here (INT8 pays most on CPUs with VNNI); keep using "
              f"{report.parent} if its speed is enough", file=sys.stderr)
    return installed, True


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
                Path(args.calibration) if args.calibration else None,
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
    elif r.agreement:
        a = r.agreement
        print(
            f"{r.name}: against fp32 on {a['count']} views of held-out shipped photos: mask MAE "
            f"{a['mae']:.4f} (gate ≤ {a['gates']['mae']}), IoU {a['iou']:.4f} (gate ≥ "
            f"{a['gates']['iou']}); give --eval DIR to score it on a dataset instead"
        )
    if r.installed:
        forced = " despite failed gates (--force)" if r.failures else ""
        print(f"{r.name}: installed at {r.installed.path}{forced} (sha256 {r.installed.sha256})")
    if json_out:
        atomic_write_bytes(Path(json_out), json.dumps(r.to_dict(), indent=2).encode())
    sys.stdout.flush()
