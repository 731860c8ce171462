"""Quality evaluation: run a model through the real pipeline on a labelled set and score it.

A dataset is a folder with ``images/`` (JPEG, PNG, ...) and ``masks/`` (PNG ground truth, same
stem). Each prediction is the engine's 8-bit mask at the image's size (``only_mask``); the ground
truth is binarised at 128 (``gt > 127``). The metrics are the salient-object-detection ones the
U²-Net paper reports (Qin et al. 2020):

- **MAE**: mean over images of mean |pred/255 − gt|.
- **max Fβ** (β² = 0.3): for each threshold t = 0…255, per-image precision and recall of
  ``pred >= t``, averaged over the dataset; Fβ from the averaged P and R; the maximum over t.
- **IoU**: mean over images of the IoU of ``pred >= 128`` and the ground truth.
- **S-measure** (Fan et al., ICCV 2017), α = 0.5: object-aware plus region-aware structural
  similarity, following the authors' reference code (``StructureMeasure.m``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .engine import Engine, Options, Session
from .engine.pipeline import Models
from .errors import InvalidParameter

__all__ = [
    "BETA2",
    "Scores",
    "ImageScore",
    "pr_curve",
    "mae",
    "iou",
    "s_measure",
    "f_beta",
    "dataset_pairs",
    "load_truth",
    "band_of",
    "sad",
    "evaluate",
]

BETA2 = 0.3  # β² of the F-measure, as in the saliency literature
_EPS = float(np.finfo(np.float64).eps)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


# --- per-image metrics ------------------------------------------------------------------------
def _as_pred(pred: np.ndarray) -> np.ndarray:
    if pred.dtype != np.uint8:
        raise TypeError(f"prediction must be an 8-bit mask, got {pred.dtype}")
    return pred


def _as_gt(gt: np.ndarray) -> np.ndarray:
    return gt if gt.dtype == np.bool_ else gt > 127


def pr_curve(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of ``pred >= t`` for t = 0…255 (two arrays of 256).

    Precision is 0 where nothing is predicted positive; recall is 0 when the ground truth is
    empty (the usual convention of the saliency benchmarks).
    """
    pred, gt = _as_pred(pred), _as_gt(gt)
    fg_hist = np.bincount(pred[gt].ravel(), minlength=256).astype(np.float64)
    bg_hist = np.bincount(pred[~gt].ravel(), minlength=256).astype(np.float64)
    tp = np.cumsum(fg_hist[::-1])[::-1]  # tp[t] = #fg pixels with pred >= t
    fp = np.cumsum(bg_hist[::-1])[::-1]
    predicted = tp + fp
    precision = np.divide(tp, predicted, out=np.zeros(256), where=predicted > 0)
    n_fg = float(gt.sum())
    recall = tp / n_fg if n_fg > 0 else np.zeros(256)
    return precision, recall


def f_beta(precision: np.ndarray, recall: np.ndarray, beta2: float = BETA2) -> np.ndarray:
    """Fβ from precision and recall (0 where both are 0)."""
    num = (1 + beta2) * precision * recall
    den = beta2 * precision + recall
    out: np.ndarray = np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)
    return out


def mae(pred: np.ndarray, gt: np.ndarray) -> float:
    pred, gt = _as_pred(pred), _as_gt(gt)
    return float(np.mean(np.abs(pred.astype(np.float64) / 255.0 - gt)))


def iou(pred: np.ndarray, gt: np.ndarray, threshold: int = 128) -> float:
    """IoU of ``pred >= threshold`` and the ground truth; 1 when both are empty."""
    pred, gt = _as_pred(pred), _as_gt(gt)
    hard = pred >= threshold
    union = int(np.count_nonzero(hard | gt))
    return 1.0 if union == 0 else int(np.count_nonzero(hard & gt)) / union


def s_measure(pred: np.ndarray, gt: np.ndarray, alpha: float = 0.5) -> float:
    """Structure measure S = α·S_object + (1 − α)·S_region (Fan et al. 2017).

    As the authors' code does, the prediction is scaled to [0, 1] and then min-max normalised.
    """
    gt = _as_gt(gt)
    x = _as_pred(pred).astype(np.float64) / 255.0
    low, high = float(x.min()), float(x.max())
    if high > low:
        x = (x - low) / (high - low)
    y = float(gt.mean())
    if y == 0:  # no foreground: reward a dark prediction
        return 1.0 - float(x.mean())
    if y == 1:  # all foreground: reward a bright prediction
        return float(x.mean())
    score = alpha * _s_object(x, gt) + (1 - alpha) * _s_region(x, gt)
    return max(score, 0.0)


def _object(values: np.ndarray) -> float:
    if values.size == 0:
        return 0.0
    mean = float(values.mean())
    sigma = float(values.std(ddof=1)) if values.size > 1 else 0.0  # MATLAB std: N − 1
    return 2.0 * mean / (mean * mean + 1.0 + sigma + _EPS)


def _s_object(x: np.ndarray, gt: np.ndarray) -> float:
    o_fg = _object(x[gt])  # prediction on the foreground
    o_bg = _object(1.0 - x[~gt])  # inverted prediction on the background
    u = float(gt.mean())
    return u * o_fg + (1 - u) * o_bg


def _centroid(gt: np.ndarray) -> tuple[int, int]:
    """1-based centroid (column X, row Y), rounded half away from zero as MATLAB does."""
    rows, cols = gt.shape
    total = float(gt.sum())
    if total == 0:
        return int(math.floor(cols / 2 + 0.5)), int(math.floor(rows / 2 + 0.5))
    cx = float((gt.sum(axis=0) * np.arange(1, cols + 1)).sum()) / total
    cy = float((gt.sum(axis=1) * np.arange(1, rows + 1)).sum()) / total
    return int(math.floor(cx + 0.5)), int(math.floor(cy + 0.5))


def _ssim(x: np.ndarray, gt: np.ndarray) -> float:
    """The whole-block SSIM of the S-measure's region term."""
    n = x.size
    if n == 0:
        return 0.0  # an empty quadrant has weight 0
    y = gt.astype(np.float64)
    mx, my = float(x.mean()), float(y.mean())
    dx, dy = x - mx, y - my
    var_x = float((dx * dx).sum()) / (n - 1 + _EPS)
    var_y = float((dy * dy).sum()) / (n - 1 + _EPS)
    cov = float((dx * dy).sum()) / (n - 1 + _EPS)
    a = 4 * mx * my * cov
    b = (mx * mx + my * my) * (var_x + var_y)
    if a != 0:
        return a / (b + _EPS)
    return 1.0 if b == 0 else 0.0


def _s_region(x: np.ndarray, gt: np.ndarray) -> float:
    rows, cols = gt.shape
    cx, cy = _centroid(gt)
    area = rows * cols
    w1 = cx * cy / area
    w2 = (cols - cx) * cy / area
    w3 = cx * (rows - cy) / area
    w4 = 1.0 - w1 - w2 - w3
    quads = (
        (slice(0, cy), slice(0, cx)),
        (slice(0, cy), slice(cx, cols)),
        (slice(cy, rows), slice(0, cx)),
        (slice(cy, rows), slice(cx, cols)),
    )
    return float(sum(w * _ssim(x[q], gt[q])
                     for w, q in zip((w1, w2, w3, w4), quads, strict=True)))


# --- dataset-level ----------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageScore:
    name: str
    mae: float
    iou: float
    s_measure: float
    precision: np.ndarray  # 256 thresholds
    recall: np.ndarray
    sad: float | None = None  # whole image, against the true alpha (8-bit ground truth only)
    sad_band: float | None = None  # in the trimap's unknown band, where one is given


def score_image(name: str, pred: np.ndarray, gt: np.ndarray,
                band: np.ndarray | None = None) -> ImageScore:
    alpha_sad = band_sad = None
    if gt.dtype == np.uint8 and pred.shape == gt.shape:
        alpha_sad = sad(pred, gt)
        if band is not None and band.shape == gt.shape:
            band_sad = sad(pred, gt, band)
    gt = _as_gt(gt)
    if pred.shape != gt.shape:
        raise InvalidParameter(
            "dataset",
            f"{name}: prediction is {pred.shape[1]}×{pred.shape[0]} but its mask is "
            f"{gt.shape[1]}×{gt.shape[0]}",
        )
    p, r = pr_curve(pred, gt)
    return ImageScore(name, mae(pred, gt), iou(pred, gt), s_measure(pred, gt), p, r,
                      alpha_sad, band_sad)


@dataclass
class Scores:
    """Dataset-level figures, accumulated image by image."""

    images: list[ImageScore] = field(default_factory=list)
    elapsed_s: float = 0.0

    def add(self, score: ImageScore) -> None:
        self.images.append(score)

    @property
    def count(self) -> int:
        return len(self.images)

    def summary(self) -> dict[str, Any]:
        if not self.images:
            raise InvalidParameter("dataset", "no image/mask pairs were scored")
        precision = np.mean([s.precision for s in self.images], axis=0)
        recall = np.mean([s.recall for s in self.images], axis=0)
        f = f_beta(precision, recall)
        best = int(np.argmax(f))
        return {
            "count": self.count,
            "max_f": float(f[best]),
            "max_f_threshold": best,
            "mean_f": float(f.mean()),
            "mae": float(np.mean([s.mae for s in self.images])),
            "iou": float(np.mean([s.iou for s in self.images])),
            "s_measure": float(np.mean([s.s_measure for s in self.images])),
            "sad": _mean([s.sad for s in self.images]),
            "sad_band": _mean([s.sad_band for s in self.images]),
            "elapsed_s": round(self.elapsed_s, 3),
            "ms_per_image": round(1e3 * self.elapsed_s / self.count, 1),
        }


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known and len(known) == len(values) else None


def dataset_pairs(root: Path, limit: int | None = None) -> tuple[list[tuple[Path, Path]], int]:
    """(image, mask) pairs matched by stem, sorted by name; and how many images lack a mask."""
    images_dir, masks_dir = root / "images", root / "masks"
    for d in (images_dir, masks_dir):
        if not d.is_dir():
            raise InvalidParameter(
                "dataset", f"{d} is not a folder; a dataset has images/ and masks/ (PNG, same stem)"
            )
    masks = {p.stem: p for p in masks_dir.iterdir() if p.suffix.lower() == ".png"}
    pairs, unmatched = [], 0
    for img in sorted(images_dir.iterdir()):
        if img.suffix.lower() not in IMAGE_SUFFIXES or img.name.startswith("."):
            continue
        if img.stem in masks:
            pairs.append((img, masks[img.stem]))
        else:
            unmatched += 1
    if not pairs:
        raise InvalidParameter("dataset", f"no image in {images_dir} has a mask in {masks_dir}")
    if limit is not None:
        pairs = pairs[: max(limit, 0)]
    return pairs, unmatched


def load_truth(path: Path) -> np.ndarray:
    """The ground truth as stored (8-bit): an alpha matte, or a mask binarised when scored."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def band_of(mask_path: Path) -> np.ndarray | None:
    """The unknown region of the trimap beside the mask (``trimaps/<stem>.png``), if any."""
    trimap = mask_path.parent.parent / "trimaps" / mask_path.name
    if not trimap.is_file():
        return None
    levels = load_truth(trimap)
    band: np.ndarray = (levels > 0) & (levels < 255)
    return band


def sad(pred: np.ndarray, gt: np.ndarray, where: np.ndarray | None = None) -> float:
    """Sum of absolute differences of alpha in [0, 1], / 1000 (alpha matting's SAD)."""
    diff = np.abs(pred.astype(np.float64) - gt.astype(np.float64)) / 255.0
    return float((diff if where is None else diff[where]).sum() / 1000.0)


def iter_predictions(
    engine: Engine, session: Session | Models, pairs: list[tuple[Path, Path]]
) -> Iterator[tuple[str, np.ndarray, np.ndarray, float, np.ndarray | None]]:
    """(name, predicted 8-bit mask, 8-bit ground truth, seconds, trimap band or None) for each
    pair, through the pipeline."""
    options = Options.create(only_mask=True)
    for image_path, mask_path in pairs:
        started = time.perf_counter()
        decoded = engine.decode(image_path.read_bytes())
        result = engine.cut(decoded.image, options, model=session)
        seconds = time.perf_counter() - started
        pred = np.asarray(result.image.convert("L"))
        yield image_path.stem, pred, load_truth(mask_path), seconds, band_of(mask_path)


def evaluate(
    engine: Engine,
    model: str | Session | Models,
    pairs: list[tuple[Path, Path]],
    *,
    on_each: Callable[[str], None] | None = None,
) -> Scores:
    """Score ``model`` (a name in the engine's store, models joined by ``+``, or loaded
    sessions) on ``pairs``.

    ``elapsed_s`` counts decode and the pipeline, not the scoring.
    """
    session = engine.models(model) if isinstance(model, str) else model
    scores = Scores()
    for name, pred, gt, seconds, band in iter_predictions(engine, session, pairs):
        scores.add(score_image(name, pred, gt, band))
        scores.elapsed_s += seconds
        if on_each is not None:
            on_each(name)
    return scores


# --- the command ------------------------------------------------------------------------------
METRICS = {
    "max_f": "max over thresholds t of Fβ (β²=0.3) from dataset-averaged precision/recall of "
    "pred >= t",
    "mae": "mean over images of mean |pred/255 - gt|",
    "iou": "mean over images of IoU(pred >= 128, gt)",
    "s_measure": "structure measure, Fan et al. 2017, alpha 0.5",
    "mean_f": "mean over thresholds of the same Fβ curve",
    "sad": "mean over images of Σ|α − α_true| / 1000, α in [0, 1] (alpha matting's SAD)",
    "sad_band": "the same within the trimap's unknown band (trimaps/<stem>.png), if given",
}
