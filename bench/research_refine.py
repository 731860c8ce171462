"""Research: a confidence score for every result and edge colour decontamination, measured.

    .venv/bin/python bench/research_refine.py confidence   # ECSSD-100: candidates, split-half
    .venv/bin/python bench/research_refine.py quality      # alphamatting-8: edge colours
    .venv/bin/python bench/research_refine.py timing       # 4000×3000: decontamination vs u2net
    .venv/bin/python bench/research_refine.py all

The samples are read in place (never copied): ``--eval DIR`` (default: ../shared/eval beside
the checkout) holds
``ecssd-100/{images,masks}`` and ``alphamatting-8/{images,masks}``. Model maps come from the
real pipeline's own stages (``preprocess``, ``Session.run``, ``to_mask``; one ONNX Runtime
thread), checked against ``Engine.process(..., Options(only_mask=True))`` on the first images;
raw maps are cached under ``--cache`` (default: a folder in the system's temp dir) so reruns
skip the models. Figures are printed as Markdown; findings are in bench/results/refine.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.stats import rankdata, spearmanr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from cleancut.config import Settings  # noqa: E402
from cleancut.engine import (  # noqa: E402
    Engine,
    Options,
    refine,  # noqa: E402
)
from cleancut.engine.pipeline import preprocess, to_mask  # noqa: E402

MODELS = ("u2net", "u2netp")
GOLDEN = ROOT / "tests" / "fixtures" / "golden" / "inputs"


def rho(x: np.ndarray, y: np.ndarray) -> float:
    return float(spearmanr(x, y)[0])


def header() -> None:
    flags = set()
    model = platform.processor() or "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
    wanted = ("avx2", "avx512f", "avx512_vnni", "amx_tile")
    import numba
    import onnxruntime
    import pymatting

    print(
        f"CPU: {model}, {os.cpu_count()} cores; flags: "
        + ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in wanted)
    )
    print(
        f"load average at start: {os.getloadavg()[0]:.2f}; onnxruntime {onnxruntime.__version__}, "
        f"numba {numba.__version__}, pymatting {pymatting.__version__}, numpy {np.__version__}\n"
    )


# --- confidence ------------------------------------------------------------------------------


def ecssd_maps(eval_dir: Path, cache: Path) -> dict[str, list[dict[str, np.ndarray]]]:
    """Per model, per ECSSD image: raw map (320×320), final mask (image size), true mask."""
    data_dir = eval_dir / "ecssd-100"
    images = sorted((data_dir / "images").glob("*.jpg"))
    engine = Engine(Settings(intra_op_threads=1))
    out: dict[str, list[dict[str, np.ndarray]]] = {}
    for model in MODELS:
        session = engine.session(model)
        rows = []
        for k, path in enumerate(images):
            cached = cache / f"ecssd-{model}-{path.stem}.npy"
            decoded = engine.decode(path.read_bytes())
            rgb = decoded.image.convert("RGB")
            if cached.is_file():
                raw = np.load(cached)
            else:
                raw = session.run(preprocess(rgb, session.spec))
                np.save(cached, raw)
            mask = np.asarray(to_mask(raw, session.spec, rgb.size))
            if k < 3:  # the stages called here are the engine's own: same mask
                res = engine.process(path.read_bytes(), Options(only_mask=True), model=model)
                assert np.array_equal(np.asarray(res.image), mask), path
            truth = np.asarray(Image.open(data_dir / "masks" / f"{path.stem}.png").convert("L"))
            rows.append({"raw": raw[0, 0].astype(np.float32), "mask": mask, "truth": truth})
        out[model] = rows
    return out


def iou(mask: np.ndarray, truth: np.ndarray) -> float:
    a, b = mask >= 128, truth >= 128
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def normalised(raw: np.ndarray) -> np.ndarray:
    low, high = float(raw.min()), float(raw.max())
    return np.clip((raw - low) / max(high - low, 1e-12), 0.0, 1.0)


def strip_of(p: np.ndarray, radius: int) -> np.ndarray:
    if radius == 0:
        return np.zeros(p.shape, dtype=bool)
    fg = (p >= 0.5).view(np.uint8)
    size = 2 * radius + 1
    return ndimage.maximum_filter(fg, size, mode="nearest") != ndimage.minimum_filter(
        fg, size, mode="nearest"
    )


WEIGHTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "4p(1-p)": lambda p: 4 * p * (1 - p),
    "band 0.1-0.9": lambda p: ((p > 0.1) & (p < 0.9)).astype(np.float32),
    "2 min(p,1-p)": lambda p: 2 * np.minimum(p, 1 - p),
}
RADII = (0, 1, 2, 3, 4)


def family(p: np.ndarray) -> dict[tuple[str, int], float]:
    """Doubt outside the outline strip over the foreground area, for every weight and radius."""
    area = max(1, int(np.count_nonzero(p >= 0.5)))
    out = {}
    for radius in RADII:
        keep = ~strip_of(p, radius)
        for name, weight in WEIGHTS.items():
            out[(name, radius)] = -float(weight(p)[keep].sum()) / area
    return out


def candidates(raw: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Candidate scores (higher = more confident) from the low-res map and from the final mask."""
    p = normalised(raw)
    fg = p >= 0.5
    area = max(1, int(fg.sum()))
    perimeter = max(1, int((fg & ~ndimage.binary_erosion(fg)).sum()))
    band = (p > 0.1) & (p < 0.9)
    entropy = -(p * np.log2(p + 1e-7) + (1 - p) * np.log2(1 - p + 1e-7))
    labels, n_parts = ndimage.label(fg)
    sizes = ndimage.sum_labels(fg, labels, range(1, n_parts + 1)) if n_parts else np.zeros(1)
    m = mask.astype(np.float32) / 255
    mfg = mask >= 128
    mband = (m > 0.1) & (m < 0.9)
    _, mparts = ndimage.label(mfg)
    u = refine.doubt(raw)
    c = {
        "map: decisive share (p<0.1 or p>0.9)": float(np.mean((p < 0.1) | (p > 0.9))),
        "map: mean |2p-1|": float(np.mean(np.abs(2 * p - 1))),
        "map: 1 - mean entropy": 1 - float(entropy.mean()),
        "map: -band(0.1-0.9) / foreground area": -band.sum() / area,
        "map: -band / foreground perimeter": -band.sum() / perimeter,
        "map: -mean |normalised - raw|": -float(np.mean(np.abs(p - np.clip(raw, 0, 1)))),
        "map: raw maximum (before min-max)": float(raw.max()),
        "map: -components (p>=0.5)": -float(n_parts),
        "map: largest component share": float(sizes.max() / area),
        "map: -sum 4p(1-p) / area (no strip)": -float((4 * p * (1 - p)).sum()) / area,
        "mask: decisive share": float(np.mean((m < 0.1) | (m > 0.9))),
        "mask: mean |2m-1|": float(np.mean(np.abs(2 * m - 1))),
        "mask: -band / foreground area": -mband.sum() / max(1, int(mfg.sum())),
        "mask: -components (>=128)": -float(mparts),
        "**chosen: -U (doubt outside the outline strip)**": -u,
        "combo: confidence × largest component share": refine.confidence(raw) * sizes.max() / area,
    }
    return c


def run_confidence(args: argparse.Namespace) -> None:
    data = ecssd_maps(args.eval, args.cache)
    ious = {m: np.array([iou(r["mask"], r["truth"]) for r in data[m]]) for m in MODELS}
    cands = {m: [candidates(r["raw"], r["mask"]) for r in data[m]] for m in MODELS}
    names = list(cands[MODELS[0]][0])
    print("## Confidence candidates: Spearman with per-image IoU (threshold 128), ECSSD-100\n")
    for m in MODELS:
        print(f"{m}: mean IoU {ious[m].mean():.4f}, min {ious[m].min():.4f}")
    print("\n| candidate | u2net | u2netp |\n|---|---|---|")
    for name in names:
        vals = [rho(np.array([c[name] for c in cands[m]]), ious[m]) for m in MODELS]
        print(f"| {name} | {vals[0]:+.3f} | {vals[1]:+.3f} |")
    # rank-mean combination of the chosen score and the mask's component count
    for m in MODELS:
        u = np.array([c["**chosen: -U (doubt outside the outline strip)**"] for c in cands[m]])
        k = np.array([c["mask: -components (>=128)"] for c in cands[m]])
        combo = rho(rankdata(u) + rankdata(k), ious[m])
        print(f"\nrank mean of -U and -components ({m}): {combo:+.3f}", end="")
    print("\n")

    # the family the chosen score was picked from, and split-half selection
    fam = {m: [family(normalised(r["raw"])) for r in data[m]] for m in MODELS}
    configs = list(fam[MODELS[0]][0])
    print("## The chosen family: doubt weight × outline strip radius (map pixels)\n")
    print("| weight | " + " | ".join(f"r={r}" for r in RADII) + " |")
    print("|---|" + "---|" * len(RADII))
    for w in WEIGHTS:
        cells = []
        for r in RADII:
            vals = [rho(np.array([f[(w, r)] for f in fam[m]]), ious[m]) for m in MODELS]
            cells.append(f"{vals[0]:.3f} / {vals[1]:.3f}")
        print(f"| {w} | " + " | ".join(cells) + " |")
    print("\n(u2net / u2netp; the chosen score is 4p(1-p), r=2)\n")

    scores = {m: {cfg: np.array([f[cfg] for f in fam[m]]) for cfg in configs} for m in MODELS}
    n = len(ious[MODELS[0]])

    def select(idx: np.ndarray) -> tuple[str, int]:
        return max(
            configs,
            key=lambda cfg: np.mean([rho(scores[m][cfg][idx], ious[m][idx]) for m in MODELS]),
        )

    print("## Split-half check\n")
    even, odd = np.arange(0, n, 2), np.arange(1, n, 2)
    for fit, check, label in (
        (even, odd, "fit on even, check on odd"),
        (odd, even, "fit on odd, check on even"),
    ):
        cfg = select(fit)
        vals = [rho(scores[m][cfg][check], ious[m][check]) for m in MODELS]
        fixed = [rho(scores[m][("4p(1-p)", 2)][check], ious[m][check]) for m in MODELS]
        print(
            f"- {label}: selected {cfg}; held-out Spearman u2net {vals[0]:.3f}, "
            f"u2netp {vals[1]:.3f} (the chosen formula on the same half: "
            f"{fixed[0]:.3f} / {fixed[1]:.3f})"
        )
    rng = np.random.default_rng(20261201)
    held: dict[str, list[float]] = {m: [] for m in MODELS}
    fixed_half: dict[str, list[float]] = {m: [] for m in MODELS}
    picks: dict[tuple[str, int], int] = {}
    for _ in range(args.splits):
        perm = rng.permutation(n)
        fit, check = perm[: n // 2], perm[n // 2 :]
        cfg = select(fit)
        picks[cfg] = picks.get(cfg, 0) + 1
        for m in MODELS:
            held[m].append(rho(scores[m][cfg][check], ious[m][check]))
            fixed_half[m].append(rho(scores[m][("4p(1-p)", 2)][check], ious[m][check]))
    print(
        f"- {args.splits} random 50/50 splits, config selected on the fit half among "
        f"{len(configs)}, Spearman on the other half:"
    )
    for m in MODELS:
        h, f = np.array(held[m]), np.array(fixed_half[m])
        print(
            f"  - {m}: median {np.median(h):.3f}, 5th percentile {np.percentile(h, 5):.3f}, "
            f"min {h.min():.3f}, share >= 0.5: {np.mean(h >= 0.5):.3f}; the chosen formula "
            f"on random halves: median {np.median(f):.3f}, 5th pct {np.percentile(f, 5):.3f}"
        )
    top = sorted(picks.items(), key=lambda kv: -kv[1])[:4]
    print("  - configs selected most often: " + ", ".join(f"{c} ×{k}" for c, k in top))
    for m in MODELS:
        u = scores[m][("4p(1-p)", 2)]
        boot = []
        for _ in range(2000):
            idx = rng.integers(0, n, n)
            boot.append(rho(u[idx], ious[m][idx]))
        lo, hi = np.percentile(boot, [2.5, 97.5])
        print(f"- bootstrap 95 % interval of the chosen score's Spearman, {m}: {lo:.3f} - {hi:.3f}")

    print("\n## The score as shipped: confidence = 1 / (1 + U / 0.1)\n")
    print(
        "| model | mean confidence | Spearman | share < 0.5 | mean IoU when < 0.5 | "
        "mean IoU when >= 0.5 | IoU < 0.8 caught (conf < 0.5) |"
    )
    print("|---|---|---|---|---|---|---|")
    for m in MODELS:
        conf = np.array([refine.confidence(r["raw"]) for r in data[m]])
        low = conf < 0.5
        bad = ious[m] < 0.8
        print(
            f"| {m} | {conf.mean():.3f} | {rho(conf, ious[m]):.3f} | {low.mean():.2f} | "
            f"{ious[m][low].mean() if low.any() else float('nan'):.3f} | "
            f"{ious[m][~low].mean():.3f} | {np.count_nonzero(low & bad)} of "
            f"{np.count_nonzero(bad)} |"
        )
    raw = data["u2net"][0]["raw"][np.newaxis, np.newaxis]
    times = []
    for _ in range(50):
        t = time.perf_counter()
        refine.confidence(raw)
        times.append((time.perf_counter() - t) * 1e3)
    print(
        f"\nconfidence() on a 1×1×320×320 map: median {statistics.median(times):.2f} ms, "
        f"min {min(times):.2f} ms\n"
    )


# --- decontamination quality ------------------------------------------------------------------


def box(x: np.ndarray, r: int) -> np.ndarray:
    size = (2 * r + 1, 2 * r + 1) + ((1,) if x.ndim == 3 else ())
    return ndimage.uniform_filter(x, size=size, mode="nearest")


def blur_fusion_reference(image: np.ndarray, alpha: np.ndarray, r1: int, r2: int) -> np.ndarray:
    """Forte & Pitié's two-pass estimator at full resolution (their published code, in scipy)."""

    def fb(i: np.ndarray, f: np.ndarray, b: np.ndarray, a: np.ndarray, r: int):
        a3 = a[..., None]
        ba = box(a, r)[..., None]
        fh = box(f * a3, r) / (ba + 1e-5)
        bh = box(b * (1 - a3), r) / ((1 - ba) + 1e-5)
        return np.clip(fh + a3 * (i - a3 * fh - (1 - a3) * bh), 0, 1), bh

    f, bh = fb(image, image, image, alpha, r1)
    return fb(image, f, bh, alpha, r2)[0]


def am_scene(eval_dir: Path, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(photo 0..1, true alpha uint8, a new background 0..1) of alphamatting image i."""
    d = eval_dir / "alphamatting-8"
    photo = np.asarray(Image.open(d / "images" / f"GT0{i}.png").convert("RGB"), np.float32) / 255
    alpha8 = np.asarray(Image.open(d / "masks" / f"GT0{i}.png").convert("L"))
    other = Image.open(d / "images" / f"GT0{i % 8 + 1}.png").convert("RGB")
    other = other.resize(photo.shape[1::-1], Image.Resampling.BICUBIC).transpose(
        Image.Transpose.FLIP_LEFT_RIGHT
    )
    return photo, alpha8, np.asarray(other, np.float32) / 255


def edge_errors(est: np.ndarray, truth: np.ndarray, alpha8: np.ndarray) -> tuple[float, float]:
    """Mean |F̂ − F| (0..255 levels, mean of channels) where 0 < α < 1: plain and α-weighted."""
    soft = (alpha8 > 0) & (alpha8 < 255)
    err = np.abs(est.astype(np.float32) - truth).mean(-1)[soft] * 255
    w = alpha8[soft].astype(np.float32)
    return float(err.mean()), float((err * w).sum() / w.sum())


def run_quality(args: argparse.Namespace) -> None:
    from pymatting import estimate_foreground_ml

    refine.warm_up()
    estimate_foreground_ml(np.zeros((8, 8, 3)), np.full((8, 8), 0.5))  # numba compile
    print("## Edge colours on alphamatting-8 (re-composited over another photo)\n")
    print(
        "True α; true F = an estimate on the original photo (ML: pymatting's, BF: full-res "
        "blur fusion); I = α·F + (1−α)·B with B another of the 8 photos (mirrored), in 8 bits. "
        "Error = mean |F̂ − F| over 0 < α < 1 in levels (0-255), mean of 8 images; "
        "α-weighted = what shows after compositing.\n"
    )
    methods = (
        "photo I (nothing done)",
        "pymatting estimate_foreground_ml",
        "blur fusion, full-res reference",
        "decontaminate (default)",
        "decontaminate(solid=256)",
    )
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    times: dict[str, list[float]] = {"ml": [], "ours": []}
    for i in range(1, 9):
        photo, alpha8, other = am_scene(args.eval, i)
        alpha = alpha8.astype(np.float32) / 255
        short = min(alpha.shape)
        r1, r2 = round(short / 6), round(short / 90)
        truths = {
            "ML": estimate_foreground_ml(photo.astype(np.float64), alpha.astype(np.float64)),
            "BF": blur_fusion_reference(photo, alpha, r1, r2),
        }
        for tname, fg in truths.items():
            fg = fg.astype(np.float32)
            img8 = np.rint((alpha[..., None] * fg + (1 - alpha[..., None]) * other) * 255)
            img8 = img8.astype(np.uint8)
            t = time.perf_counter()
            ml = estimate_foreground_ml(img8 / 255.0, alpha8 / 255.0)
            times["ml"].append(time.perf_counter() - t)
            t = time.perf_counter()
            ours = refine.decontaminate(img8, alpha8, threads=1)
            times["ours"].append(time.perf_counter() - t)
            ests = {
                methods[0]: img8 / 255.0,
                methods[1]: ml,
                methods[2]: blur_fusion_reference(img8.astype(np.float32) / 255, alpha, r1, r2),
                methods[3]: ours / 255.0,
                methods[4]: refine.decontaminate(img8, alpha8, solid=256, threads=1) / 255.0,
            }
            for name, est in ests.items():
                results.setdefault((tname, name), []).append(edge_errors(est, fg, alpha8))
    print("| method | error, ML truth | α-weighted | error, BF truth | α-weighted |")
    print("|---|---|---|---|---|")
    for name in methods:
        ml_t = np.array(results[("ML", name)]).mean(0)
        bf_t = np.array(results[("BF", name)]).mean(0)
        print(f"| {name} | {ml_t[0]:.2f} | {ml_t[1]:.2f} | {bf_t[0]:.2f} | {bf_t[1]:.2f} |")
    print(
        f"\nper image (0.33-0.51 MP), 1 thread: estimate_foreground_ml median "
        f"{statistics.median(times['ml']) * 1e3:.0f} ms, decontaminate median "
        f"{statistics.median(times['ours']) * 1e3:.1f} ms\n"
    )

    if args.skip_grid:
        return
    print("## Grid size at 12 MP (the 8 scenes upscaled 5×, ML truth)\n")
    sides = (256, 384, 512, 768)
    grid_res: dict[str, list[tuple[float, float]]] = {}
    scales: dict[str, set[int]] = {}
    saved = refine._GRID_CELLS_SIDE
    try:
        for i in range(1, 9):
            photo, alpha8, other = am_scene(args.eval, i)
            fg0 = estimate_foreground_ml(photo.astype(np.float64), alpha8 / 255.0)
            size = (alpha8.shape[1] * 5, alpha8.shape[0] * 5)

            def up(arr: np.ndarray, size: tuple[int, int] = size) -> np.ndarray:
                return np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.BICUBIC))

            fg = up(np.rint(fg0 * 255).astype(np.uint8)).astype(np.float32) / 255
            bg = up(np.rint(other * 255).astype(np.uint8)).astype(np.float32) / 255
            a8 = up(alpha8)
            a = a8.astype(np.float32)[..., None] / 255
            img8 = np.rint((a * fg + (1 - a) * bg) * 255).astype(np.uint8)
            grid_res.setdefault("photo I", []).append(edge_errors(img8 / 255.0, fg, a8))
            short = min(a8.shape)
            ref = blur_fusion_reference(
                img8.astype(np.float32) / 255, a[..., 0], round(short / 6), round(short / 90)
            )
            grid_res.setdefault("full-res reference", []).append(edge_errors(ref, fg, a8))
            del ref
            for side in sides:
                refine._GRID_CELLS_SIDE = side
                est = refine.decontaminate(img8, a8, solid=256, threads=1)
                key = f"grid of ~{side}² cells"
                grid_res.setdefault(key, []).append(edge_errors(est / 255.0, fg, a8))
                scales.setdefault(key, set()).add(refine.working_scale(*a8.shape))
    finally:
        refine._GRID_CELLS_SIDE = saved
    print("| local means | cell size s (px) | error | α-weighted |\n|---|---|---|---|")
    for name, vals in grid_res.items():
        v = np.array(vals).mean(0)
        s = (
            "-".join(str(k) for k in sorted(scales[name]))
            if name in scales
            else "1"
            if "ref" in name
            else "-"
        )
        print(f"| {name} | {s} | {v[0]:.2f} | {v[1]:.2f} |")
    print()


# --- timing -------------------------------------------------------------------------------------


def stage_times(rgb: np.ndarray, alpha: np.ndarray) -> dict:
    """CPU ms of decontaminate's steps, one thread (the module's internals, as it runs them)."""
    cell_means, apply = refine._compile()
    h, w = alpha.shape
    s = refine.working_scale(h, w)
    hl, wl = -(-h // s), -(-w // s)
    short = min(h, w)
    r1 = max(1, round(short * refine._R1_FRACTION / s))
    r2 = max(1, round(short * refine._R2_FRACTION / s))
    cells = np.empty((7, hl, wl), dtype=np.float32)
    out = rgb.copy()
    cell_means(rgb, alpha, s, 0, hl, cells)
    grid = refine._local_means(cells, r1, r2)
    steps = {
        "cells": lambda: cell_means(rgb, alpha, s, 0, hl, cells),
        "means": lambda: refine._local_means(cells, r1, r2),
        "apply": lambda: apply(rgb, alpha, grid, s, refine.SOLID, np.float32(32), 0, h, out),
        "copy": lambda: rgb.copy(),
    }
    res: dict = {"grid": f"{hl}×{wl} (s={s})"}
    for key, fn in steps.items():
        best = float("inf")
        for _ in range(5):
            c = time.thread_time()
            fn()
            best = min(best, time.thread_time() - c)
        res[key] = best * 1e3
    return res


def run_timing(args: argparse.Namespace) -> None:
    refine.warm_up()
    engines = {t: Engine(Settings(intra_op_threads=t)) for t in (1, 2)}
    sessions = {t: e.session("u2net") for t, e in engines.items()}
    print("## Time at 4000×3000 (golden photos upscaled LANCZOS, u2net's own mask)\n")
    rows = []
    stages: list[tuple[str, dict[str, float]]] = []
    for name in args.photos:
        im = Image.open(GOLDEN / name).convert("RGB").resize((4000, 3000), Image.Resampling.LANCZOS)
        alpha = np.asarray(engines[2].cut(im, Options(only_mask=True), model="u2net").image)
        rgb = np.asarray(im)
        batch = preprocess(im, sessions[1].spec)
        soft = float(np.mean((alpha > 0) & (alpha < refine.SOLID)))
        sessions[1].run(batch), sessions[2].run(batch)
        samples: dict[str, list[float]] = {
            k: [] for k in ("inf1", "inf2", "dec1", "dec2", "cpu_inf1", "cpu_dec1")
        }
        for _ in range(args.rounds):  # interleaved: the machine's drift hits all four alike
            for key in ("inf1", "dec1", "inf2", "dec2"):
                threads = int(key[-1])
                t, c = time.perf_counter(), time.thread_time()
                if key.startswith("inf"):
                    sessions[threads].run(batch)
                else:
                    refine.decontaminate(rgb, alpha, threads=threads)
                samples[key].append((time.perf_counter() - t) * 1e3)
                if threads == 1:  # one thread: this thread's CPU time is all the work
                    samples[f"cpu_{key}"].append((time.thread_time() - c) * 1e3)
        stages.append((name, stage_times(rgb, alpha)))
        med = {k: statistics.median(v) for k, v in samples.items()}
        low = {k: min(v) for k, v in samples.items()}
        rows.append((name, soft, med, low))
    print(
        f"{args.rounds} interleaved rounds; median (min) ms; load average now "
        f"{os.getloadavg()[0]:.2f}\n"
    )
    print(
        "| photo | 0 < α < 240 | u2net inference 1 thread | decontaminate 1 thread | ratio | "
        "u2net inference 2 threads | decontaminate 2 threads | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, soft, med, low in rows:
        print(
            f"| {name} | {soft:.1%} | {med['inf1']:.0f} ({low['inf1']:.0f}) | "
            f"{med['dec1']:.0f} ({low['dec1']:.0f}) | {med['dec1'] / med['inf1']:.1%} | "
            f"{med['inf2']:.0f} ({low['inf2']:.0f}) | {med['dec2']:.0f} ({low['dec2']:.0f}) | "
            f"{med['dec2'] / med['inf2']:.1%} |"
        )
    print(
        "\nThe same, CPU time of the calling thread (1 thread: all of the work; less sensitive to "
        "other processes than wall time), median:\n"
    )
    print(
        "| photo | u2net inference 1 thread | decontaminate 1 thread | ratio |\n|---|---|---|---|"
    )
    for name, _, med, _ in rows:
        print(
            f"| {name} | {med['cpu_inf1']:.0f} | {med['cpu_dec1']:.0f} | "
            f"{med['cpu_dec1'] / med['cpu_inf1']:.1%} |"
        )
    print("\nDecontamination by step, 1 thread, CPU ms (min of 5):\n")
    print(
        "| photo | grid | cell means (full res) | local means (scipy, grid) | "
        "edge pixels (full res) | copy |\n|---|---|---|---|---|---|"
    )
    for name, st in stages:
        print(
            f"| {name} | {st['grid']} | {st['cells']:.1f} | {st['means']:.1f} | "
            f"{st['apply']:.1f} | {st['copy']:.1f} |"
        )
    if args.ml_12mp:
        from pymatting import estimate_foreground_ml

        name = args.photos[0]
        im = Image.open(GOLDEN / name).convert("RGB").resize((4000, 3000), Image.Resampling.LANCZOS)
        alpha = np.asarray(engines[2].cut(im, Options(only_mask=True), model="u2net").image)
        estimate_foreground_ml(np.zeros((8, 8, 3)), np.full((8, 8), 0.5))
        t = time.perf_counter()
        estimate_foreground_ml(np.asarray(im) / 255.0, alpha / 255.0)
        ml = time.perf_counter() - t
        t = time.perf_counter()
        sessions[2].run(preprocess(im, sessions[2].spec))
        inf = time.perf_counter() - t
        print(
            f"\npymatting estimate_foreground_ml on the whole 4000×3000 {name}: {ml * 1e3:.0f} ms "
            f"(u2net inference 2 threads just after: {inf * 1e3:.0f} ms)"
        )
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["confidence", "quality", "timing", "all"])
    parser.add_argument("--eval", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "eval")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "cleancut-research-refine"
    )
    parser.add_argument("--splits", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--photos", nargs="+", default=["chelsea.jpg", "astronaut.jpg"])
    parser.add_argument("--skip-grid", action="store_true", help="skip the 12 MP grid-size check")
    parser.add_argument(
        "--ml-12mp",
        action="store_true",
        help="also time pymatting's estimate_foreground_ml on a 12 MP photo",
    )
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    header()
    if args.what in ("confidence", "all"):
        run_confidence(args)
    if args.what in ("quality", "all"):
        run_quality(args)
    if args.what in ("timing", "all"):
        run_timing(args)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
