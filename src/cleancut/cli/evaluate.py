"""``cleancut eval``: score models on a labelled set, with a progress bar and a table."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from .._fs import atomic_write_bytes
from ..engine import Engine
from ..errors import InvalidParameter
from ..evaluate import METRICS, dataset_pairs, evaluate

__all__ = ["cmd_eval"]


def cmd_eval(args: argparse.Namespace, engine: Engine) -> int:
    names = [n.strip() for m in args.model or [] for n in m.split(",") if n.strip()]
    models = names or [engine.settings.default_model]
    root, limit, json_out = Path(args.dataset), args.limit, args.json
    if limit is not None and limit < 1:
        raise InvalidParameter("limit", "--limit must be at least 1")
    pairs, unmatched = dataset_pairs(root, limit)
    sessions = {name: engine.models(name) for name in models}  # fail early, with the store's word
    started = time.perf_counter()
    results: dict[str, Any] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        for name, session in sessions.items():
            task = progress.add_task(f"scoring {name}", total=len(pairs))

            def advance(_image: str, task: TaskID = task) -> None:
                progress.advance(task)

            scores = evaluate(engine, session, pairs, on_each=advance)
            results[name] = {**scores.summary(),
                             "sha256": "+".join(s.sha256 for s in session.sessions)}
    report = {
        "dataset": str(root),
        "pairs": len(pairs),
        "images_without_mask": unmatched,
        "limit": limit,
        "models": results,
        "elapsed_s": round(time.perf_counter() - started, 3),
        "metrics": METRICS,
    }
    table = Table(title=f"{root.name}: {len(pairs)} images")
    for column in ("model", "max Fβ", "MAE", "IoU@0.5", "S-measure", "SAD", "SAD band",
                   "ms/image"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['max_f']:.4f}",
            f"{r['mae']:.4f}",
            f"{r['iou']:.4f}",
            f"{r['s_measure']:.4f}",
            "-" if r["sad"] is None else f"{r['sad']:.1f}",
            "-" if r["sad_band"] is None else f"{r['sad_band']:.1f}",
            f"{r['ms_per_image']:.0f}",
        )
    text = json.dumps(report, indent=2)
    Console(stderr=json_out == "-").print(table)
    if json_out == "-":
        print(text)
    elif json_out:
        atomic_write_bytes(Path(json_out), (text + "\n").encode())
        print(f"wrote {json_out}", file=sys.stderr)
    return 0
