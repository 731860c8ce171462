"""Speed and quality of every model and fusion, in one table (bench/results/quality.md).

    .venv/bin/python bench/quality.py --ecssd ../shared/eval/ecssd-100 \
        --matting ../shared/eval/alphamatting-8 [--models u2net,u2netp,isnet,u2netp+isnet]

For each model (or fusion, ``a+b``): SAD, whole and in the trimap's unknown band, on the matting
sample (true alpha); max Fβ and MAE on the saliency sample; seconds per image (the whole
pipeline, decode included); and the Spearman correlation of the result's confidence with its IoU
against the true mask. The samples are read in place, never copied. Prints the Markdown and, with
``--write``, puts it in bench/results/quality.md between its ``models`` markers.
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from cleancut.config import load
from cleancut.engine import Engine, Options
from cleancut.engine.options import spec_of
from cleancut.evaluate import Scores, band_of, dataset_pairs, iou, load_truth, score_image

OUT = Path(__file__).parent / "results" / "quality.md"
START, END = "<!-- models:start (bench/quality.py) -->", "<!-- models:end -->"


def _flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = set(next((ln for ln in text.splitlines() if ln.startswith("flags")), "").split())
    return ", ".join(f"{f} {'yes' if f in flags else 'no'}"
                     for f in ("avx2", "avx512f", "avx512_vnni"))


def _score(engine: Engine, model: str, root: Path) -> tuple[Scores, list[float], list[float]]:
    pairs, _ = dataset_pairs(root)
    models = engine.models(model)
    options = Options.create(only_mask=True)
    scores, confidence, ious = Scores(), [], []
    for image, mask in pairs:
        started = time.perf_counter()
        result = engine.process(image.read_bytes(), options, model=models)
        scores.elapsed_s += time.perf_counter() - started
        pred = np.asarray(result.image)
        gt = load_truth(mask)
        scores.add(score_image(image.stem, pred, gt, band_of(mask)))
        confidence.append(result.confidence or 0.0)
        ious.append(iou(pred, gt > 127))
    return scores, confidence, ious


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ecssd", type=Path, required=True)
    parser.add_argument("--matting", type=Path, required=True)
    parser.add_argument("--models", default="u2net,u2netp,isnet,u2net+isnet,u2netp+isnet")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    engine = Engine(load())
    rows = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        matting, _, _ = _score(engine, model, args.matting)
        ecssd, conf, ious = _score(engine, model, args.ecssd)
        m, e = matting.summary(), ecssd.summary()
        rho = float(spearmanr(conf, ious).statistic)
        seconds = (matting.elapsed_s + ecssd.elapsed_s) / (matting.count + ecssd.count)
        rows.append(f"| {model} | {m['sad']:.1f} | {m['sad_band']:.1f} | {e['max_f']:.4f} | "
                    f"{e['mae']:.4f} | {seconds:.2f} | {rho:.2f} |")
        print(rows[-1], flush=True)
    text = "\n".join([
        f"## Models and fusions — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {platform.processor() or platform.machine()}, CPU flags {_flags()}; "
        f"matting sample {args.matting.name} ({matting.count} images, true alpha and trimaps), "
        f"saliency sample {args.ecssd.name} ({ecssd.count} pairs). Command: "
        "`.venv/bin/python bench/quality.py --ecssd DIR --matting DIR`.",
        "",
        "SAD = mean over images of Σ|α − α_true| / 1000 (lower is better); band = the trimap's "
        "unknown region. Seconds per image: the whole pipeline (decode to mask), both samples, "
        "2 threads. ρ: Spearman correlation of the confidence with the IoU on the saliency "
        f"sample. Fusions use the default method ({spec_of('fusion').default}).",
        "",
        "| model | SAD whole | SAD band | max Fβ | MAE | s/image | confidence ρ |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ])
    print(text)
    if args.write:
        old = OUT.read_text(encoding="utf-8")
        head, _, rest = old.partition(START)
        _, _, tail = rest.partition(END)
        OUT.write_text(f"{head}{START}\n{text}{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
