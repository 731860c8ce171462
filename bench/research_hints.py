"""Research: user hints (keep / remove strokes) and fused masks, measured on the eval samples.

    .venv/bin/python bench/research_hints.py hints   # simulated user on alphamatting-8
    .venv/bin/python bench/research_hints.py fusion  # fused masks on alphamatting-8 and ecssd-100
    .venv/bin/python bench/research_hints.py all
    .venv/bin/python bench/research_hints.py hints --model isnet --set _PRIOR=0.1  # an ablation

The samples are read in place (never copied): ``--eval DIR`` (default: ../shared/eval beside
the checkout) holds
``alphamatting-8/{images,masks,trimaps}`` and ``ecssd-100/{images,masks}``. Every model mask is
the real engine's (``Options(only_mask=True)``, one ONNX Runtime thread); masks and their times
are cached under ``--cache`` (default: a folder in the system's temp dir) so reruns only
re-measure the stages under study. Figures are printed (Markdown); findings are in
bench/results/hints.md.

SAD = Σ|α − α_true| / 1000 with α in [0, 1], over the whole image and inside the trimap's
unknown band (trimap == 128).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from cleancut.engine.fusion import METHODS, fuse  # noqa: E402
from cleancut.engine.hints import apply_hints, force_hints, hint_regions  # noqa: E402

STROKES = 3  # per side (keep, remove), as a user fixing the three worst places would
STROKE_RADIUS = 5  # px: a disk of a few pixels' radius
MIN_ERROR_PX = 50  # an error region smaller than this is not worth a stroke


# --- data ---------------------------------------------------------------------------------------
def cpu_flags() -> str:
    flags: set[str] = set()
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags |= set(line.split(":", 1)[1].split())
            elif line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    wanted = ("avx2", "avx512f", "avx512_vnni", "amx_tile")
    have = ", ".join(f"{w} {'yes' if w in flags else 'no'}" for w in wanted)
    return f"{model}; {os.cpu_count()} logical CPUs; {have}"


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


class MaskCache:
    """Model masks through the real engine, cached as PNG with their seconds."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._engine = None

    def engine(self):
        if self._engine is None:
            from cleancut.config import Settings
            from cleancut.engine import Engine

            self._engine = Engine(Settings(intra_op_threads=1))
        return self._engine

    def mask(self, model: str, image: Path) -> tuple[np.ndarray, float]:
        from cleancut.engine import Options

        folder = self.root / model / image.parent.parent.name
        png, meta = folder / f"{image.stem}.png", folder / f"{image.stem}.json"
        if png.is_file() and meta.is_file():
            return np.asarray(Image.open(png).convert("L")), json.loads(meta.read_text())["s"]
        folder.mkdir(parents=True, exist_ok=True)
        data = image.read_bytes()
        started = time.perf_counter()
        result = self.engine().process(data, Options(only_mask=True), model=model)
        seconds = time.perf_counter() - started
        mask = np.asarray(result.image.convert("L"))
        Image.fromarray(mask, "L").save(png)
        meta.write_text(json.dumps({"s": seconds}))
        return mask, seconds


def matting_set(root: Path) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, Path]]:
    """(name, rgb uint8, true alpha float [0,1], trimap uint8, image path) per photo."""
    out = []
    for image in sorted((root / "images").glob("*.png")):
        rgb = np.asarray(Image.open(image).convert("RGB"))
        gt = np.asarray(Image.open(root / "masks" / image.name).convert("L")) / 255.0
        tri = np.asarray(Image.open(root / "trimaps" / image.name).convert("L"))
        out.append((image.stem, rgb, gt, tri, image))
    return out


def sad(alpha: np.ndarray, gt: np.ndarray, where: np.ndarray | None = None) -> float:
    diff = np.abs(alpha.astype(np.float64) / 255.0 - gt)
    return float(diff[where].sum() if where is not None else diff.sum()) / 1000.0


# --- the simulated user -------------------------------------------------------------------------
def simulated_strokes(mask: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Three keep and three remove disks where the mask is most wrong, as a user would draw.

    Keep: the connected regions where true α ≥ 0.9 and the mask is more than 0.25 below it,
    ranked by their error mass Σ(α_true − mask). Each stroke goes to the region with the most
    error per stroke already in it (so one large miss gets several strokes), at the point that
    is deepest inside it and farthest from its other strokes; a disk of STROKE_RADIUS px there,
    clipped to true α ≥ 0.9. Remove: the same where true α < 0.05 and the mask is more than 0.25
    above it, clipped to true α < 0.05. Regions under MIN_ERROR_PX pixels get no stroke.
    """
    m = mask.astype(np.float64) / 255.0
    hints = np.zeros(mask.shape, dtype=np.int8)
    yy, xx = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    for value, err, allowed in ((1, gt - m, gt >= 0.9), (-1, m - gt, gt < 0.05)):
        wrong = allowed & (err > 0.25)
        labels, count = ndimage.label(wrong, structure=np.ones((3, 3), dtype=bool))
        if count == 0:
            continue
        index = np.arange(1, count + 1)
        mass = ndimage.sum_labels(err * wrong, labels, index=index)
        size = ndimage.sum_labels(wrong, labels, index=index)
        mass[size < MIN_ERROR_PX] = 0.0
        placed = np.zeros(count, dtype=int)
        drawn = np.zeros(mask.shape, dtype=bool)
        for _ in range(STROKES):
            share = mass / (placed + 1)
            best = int(np.argmax(share))
            if share[best] <= 0:
                break
            component = labels == best + 1
            # the photo's border counts as the region's edge: a user strokes inside
            depth = ndimage.distance_transform_edt(np.pad(component, 1))[1:-1, 1:-1]
            if drawn.any():
                depth = np.minimum(depth, ndimage.distance_transform_edt(~drawn) / 2.0)
            cy, cx = np.unravel_index(int(np.argmax(depth)), depth.shape)
            disk = ((yy - cy) ** 2 + (xx - cx) ** 2 <= STROKE_RADIUS**2) & allowed
            hints[disk] = value
            drawn |= disk
            placed[best] += 1
    return hints


def ecssd_set(root: Path) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, Path]]:
    """ECSSD as a matting set: binary truth (0/1 alpha), band = a 5 px ring around its edge."""
    out = []
    for image in sorted((root / "images").glob("*.jpg")):
        rgb = np.asarray(Image.open(image).convert("RGB"))
        fg = np.asarray(Image.open(root / "masks" / f"{image.stem}.png").convert("L")) > 127
        ring = ndimage.binary_dilation(fg, iterations=5) & ~ndimage.binary_erosion(fg, iterations=5)
        tri = np.where(ring, 128, np.where(fg, 255, 0)).astype(np.uint8)
        out.append((image.stem, rgb, fg.astype(np.float64), tri, image))
    return out


def research_hints(args: argparse.Namespace, cache: MaskCache) -> None:
    from cleancut.engine.mask import warm_up_matting

    warm_up_matting()  # numba compilation out of the timings
    print(f"## Hints on alphamatting-8 (model {args.model}, simulated user)\n")
    print(
        f"{STROKES} keep + {STROKES} remove disks of radius {STROKE_RADIUS} px on the "
        f"error regions with the most error mass (≥ {MIN_ERROR_PX} px); "
        f"max_pixels {args.max_pixels:,}.\n"
    )
    hint_table(args, cache, matting_set(args.eval / "alphamatting-8"), rows=True)
    if args.ecssd:
        print(
            f"## Hints on ecssd-100 (held out: binary truth, band = 5 px either side of its "
            f"edge), model {args.model}\n"
        )
        hint_table(args, cache, ecssd_set(args.eval / "ecssd-100"), rows=False)


def hint_table(args, cache, data, *, rows: bool) -> None:
    if rows:
        print(
            "| photo | strokes k/r | stroked px | unknown px | SAD before | naive | solver "
            "| band before | naive | solver | solve s |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    totals = np.zeros(6)
    seconds = []
    better = worse = 0
    deltas = []
    for name, rgb, gt, tri, path in data:
        mask, _ = cache.mask(args.model, path)
        hints = simulated_strokes(mask, gt)
        naive = force_hints(mask, hints)
        started = time.perf_counter()
        solved = apply_hints(rgb, mask, hints, max_pixels=args.max_pixels)
        seconds.append(time.perf_counter() - started)
        band = tri == 128
        row = [sad(mask, gt), sad(naive, gt), sad(solved, gt)]
        row += [sad(mask, gt, band), sad(naive, gt, band), sad(solved, gt, band)]
        totals += row
        if (hints != 0).any():
            deltas.append(row[2] - row[0])
            better += row[2] < row[0] - 0.05
            worse += row[2] > row[0] + 0.05
        if rows:
            unknown = int(hint_regions(rgb, mask, hints).sum())
            n_keep = _count(hints == 1)
            n_remove = _count(hints == -1)
            print(
                f"| {name} | {n_keep}/{n_remove} | {int((hints != 0).sum())} | {unknown:,} | "
                + " | ".join(f"{v:.1f}" for v in row[:3])
                + " | "
                + " | ".join(f"{v:.1f}" for v in row[3:])
                + f" | {seconds[-1]:.2f} |"
            )
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            for tag, arr in (("mask", mask), ("naive", naive), ("solved", solved)):
                Image.fromarray(arr, "L").save(args.save / f"{name}-{tag}.png")
            vis = np.full(mask.shape, 128, np.uint8)
            vis[hints > 0], vis[hints < 0] = 255, 0
            Image.fromarray(vis, "L").save(args.save / f"{name}-hints.png")
    b, nv, sv, bb, nb, sb = totals
    if rows:
        print(
            f"| **total** | | | | {b:.1f} | {nv:.1f} | {sv:.1f} | {bb:.1f} | {nb:.1f} "
            f"| {sb:.1f} | {np.mean(seconds):.2f} (mean) |"
        )
        print()
    print(
        f"Whole image: SAD {b:.1f} → naive {nv:.1f} ({_pct(nv, b)}) → solver {sv:.1f} "
        f"({_pct(sv, b)}); the naive forcing is {_share(b - nv, b - sv)} of the solver's gain."
    )
    print(
        f"Band: SAD {bb:.1f} → naive {nb:.1f} ({_pct(nb, bb)}) → solver {sb:.1f} "
        f"({_pct(sb, bb)}); naive share {_share(bb - nb, bb - sb)}."
    )
    print(
        f"Photos better / worse by more than 0.05 SAD: {better} / {worse} of {len(data)} "
        f"(ΔSAD per stroked photo: median {np.median(deltas):+.2f}, best {min(deltas):+.2f}, "
        f"worst {max(deltas):+.2f})."
    )
    print(f"Solve time per photo: mean {np.mean(seconds):.2f} s, max {np.max(seconds):.2f} s.\n")


def _count(strokes: np.ndarray) -> int:
    return int(ndimage.label(strokes, structure=np.ones((3, 3), dtype=bool))[1])


def _pct(after: float, before: float) -> str:
    return f"{100.0 * (after - before) / before:+.1f} %" if before else "n/a"


def _share(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.0f} %" if whole > 0 else "n/a"


# --- fusion -------------------------------------------------------------------------------------
def installed_models(cache: MaskCache, wanted: list[str] | None) -> list[str]:
    """The models to fuse: those asked for, else every installed one of the catalogue."""
    if wanted:
        return wanted
    store = cache.engine().store
    return [name for name in store.names() if store.is_installed(name)]


def _unit(masks: list[np.ndarray]) -> np.ndarray:
    return np.stack([m.astype(np.float64) / 255.0 for m in masks])


def _byte(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


# fusions tried and not shipped (research only; the shipped ones are cleancut.engine.fusion's)
TRIED = {
    "min": lambda s: s.min(axis=0),
    "geometric mean": lambda s: np.exp(np.log(np.clip(s, 1 / 512, 1)).mean(axis=0)),
    "noisy-or": lambda s: 1.0 - np.prod(1.0 - s, axis=0),
    "weighted 0.8/0.2": lambda s: 0.8 * s[0] + 0.2 * s[1:].mean(axis=0),
    "confidence-weighted mean": lambda s: (
        ((np.abs(2 * s - 1) ** 2 + 1e-3) * s).sum(axis=0)
        / (np.abs(2 * s - 1) ** 2 + 1e-3).sum(axis=0)
    ),
    "max where uncertain, else mean": lambda s: np.where(
        (np.abs(s - 0.5) < 0.4).any(axis=0), s.max(axis=0), s.mean(axis=0)
    ),
}


def model_seconds(cache: MaskCache, models: list[str], images: list[Path], repeats: int) -> dict:
    """Median seconds of one engine call (decode → mask) per model, measured interleaved now."""
    from cleancut.engine import Options

    engine = cache.engine()
    for m in models:  # load and warm each session outside the timings
        engine.process(images[0].read_bytes(), Options(only_mask=True), model=m)
    times: dict[str, list[float]] = {m: [] for m in models}
    for _ in range(repeats):
        for image in images:
            data = image.read_bytes()
            for m in models:
                started = time.perf_counter()
                engine.process(data, Options(only_mask=True), model=m)
                times[m].append(time.perf_counter() - started)
    return {m: float(np.median(t)) for m, t in times.items()}


def research_fusion(args: argparse.Namespace, cache: MaskCache) -> None:
    from cleancut.evaluate import f_beta, mae, pr_curve

    models = installed_models(cache, args.models)
    am = matting_set(args.eval / "alphamatting-8")
    ec_images = sorted((args.eval / "ecssd-100" / "images").glob("*.jpg"))
    ec_gt = [
        np.asarray(Image.open(args.eval / "ecssd-100" / "masks" / f"{p.stem}.png").convert("L"))
        > 127
        for p in ec_images
    ]
    am_masks = {m: [cache.mask(m, p) for *_, p in am] for m in models}
    ec_masks = {m: [cache.mask(m, p) for p in ec_images] for m in models}
    reference = [mae(x, g) for (x, _), g in zip(ec_masks[models[0]], ec_gt, strict=True)]
    load = os.getloadavg()[0]
    sec_am = model_seconds(cache, models, [p for *_, p in am][: args.timing_images], 1)
    sec_ec = model_seconds(cache, models, ec_images[: args.timing_images], 1)

    def score(am_preds, ec_preds):
        whole = sum(sad(p, gt) for p, (_, _, gt, _, _) in zip(am_preds, am, strict=True))
        band = sum(
            sad(p, gt, tri == 128) for p, (_, _, gt, tri, _) in zip(am_preds, am, strict=True)
        )
        curves = [pr_curve(p, g) for p, g in zip(ec_preds, ec_gt, strict=True)]
        f = f_beta(np.mean([c[0] for c in curves], axis=0), np.mean([c[1] for c in curves], axis=0))
        errors = [mae(p, g) for p, g in zip(ec_preds, ec_gt, strict=True)]
        wins = sum(e < r for e, r in zip(errors, reference, strict=True))
        return whole, band, float(f.max()), float(np.mean(errors)), wins

    def line(label, result, seconds):
        w, b, f, e, wins = result
        print(f"| {label} | {w:.1f} | {b:.1f} | {f:.4f} | {e:.4f} | {wins} | {seconds} |")

    print(f"## Fused masks ({' + '.join(models)})\n")
    print(
        "| mask | SAD whole (am-8) | SAD band (am-8) | max Fβ (ecssd-100) | MAE (ecssd-100) "
        f"| ECSSD photos with lower MAE than {models[0]} | s / image (am-8; ecssd) |"
    )
    print("|---|---|---|---|---|---|---|")
    for m in models:
        t_am, t_ec = sec_am[m], sec_ec[m]
        line(
            m,
            score([x for x, _ in am_masks[m]], [x for x, _ in ec_masks[m]]),
            f"{t_am:.2f}; {t_ec:.2f}",
        )
    combos = [models] + (
        [[a, b] for i, a in enumerate(models) for b in models[i + 1 :]] if len(models) > 2 else []
    )
    for combo in combos:
        t_am = sum(sec_am[m] for m in combo)
        t_ec = sum(sec_ec[m] for m in combo)
        for method in args.methods or METHODS:
            spent = []

            def run(stack, method=method, spent=spent):
                started = time.perf_counter()
                out = fuse(stack, method)
                spent.append(time.perf_counter() - started)
                return out

            am_f = [run([am_masks[m][i][0] for m in combo]) for i in range(len(am))]
            ec_f = [run([ec_masks[m][i][0] for m in combo]) for i in range(len(ec_images))]
            extra = float(np.mean(spent))
            line(
                f"{'+'.join(combo)} **{method}**",
                score(am_f, ec_f),
                f"{t_am + extra:.2f}; {t_ec + extra:.2f} (fusion {1e3 * extra:.1f} ms)",
            )
        if args.methods is None:
            for label, fn in TRIED.items():
                am_f = [
                    _byte(fn(_unit([am_masks[m][i][0] for m in combo]))) for i in range(len(am))
                ]
                ec_f = [
                    _byte(fn(_unit([ec_masks[m][i][0] for m in combo])))
                    for i in range(len(ec_images))
                ]
                line(f"{'+'.join(combo)} {label} (tried)", score(am_f, ec_f), "")
    print(
        f"\nSeconds: median of one engine call (decode to mask, 1 ONNX Runtime thread) on the "
        f"first {args.timing_images} photos of each set, models interleaved, measured in this "
        f"run (1-minute load average {load:.1f} at its start on {os.cpu_count()} CPUs); a fused "
        f"name runs its models one after another, so its time is their sum plus the fusion.\n"
    )


# --- main ---------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("hints", "fusion", "all"))
    parser.add_argument("--eval", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "eval")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "cleancut-research-masks"
    )
    parser.add_argument("--model", default="u2net", help="the model whose mask hints correct")
    parser.add_argument("--models", nargs="*", help="models to fuse (default: installed ones)")
    parser.add_argument("--methods", nargs="*", help="fusion methods (default: all)")
    parser.add_argument(
        "--no-ecssd",
        dest="ecssd",
        action="store_false",
        help="hints: skip the held-out ecssd-100 check",
    )
    parser.add_argument("--timing-images", type=int, default=4, help="fusion: photos timed")
    parser.add_argument("--max-pixels", type=int, default=1_000_000)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a tuning constant of cleancut.engine.hints (research)",
    )
    parser.add_argument("--save", type=Path, help="write masks and strokes here (outside the repo)")
    args = parser.parse_args()
    print(
        f"Machine: {cpu_flags()}; Python {platform.python_version()}; "
        f"onnxruntime {_version('onnxruntime')}, pymatting {_version('pymatting')}; "
        f"1 ONNX Runtime thread per session.\n"
    )
    from cleancut.engine import hints as hints_module

    for item in args.set:
        name, value = item.split("=", 1)
        current = getattr(hints_module, name)  # only existing constants
        setattr(hints_module, name, type(current)(float(value)))
        print(f"override: {name} = {value}")
    cache = MaskCache(args.cache)
    if args.what in ("hints", "all"):
        research_hints(args, cache)
    if args.what in ("fusion", "all"):
        research_fusion(args, cache)


if __name__ == "__main__":
    main()
