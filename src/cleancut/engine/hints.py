"""User hints that correct a cut: pixels marked *keep* or *remove*, re-matted from the photo.

Two pure stages, meant to sit between ``mask`` and ``compose``:

- :func:`hint_map` turns what a client sent (a hint image and/or ``keep`` / ``remove`` boxes)
  into one ``int8`` map at the photo's size: ``+1`` keep, ``-1`` remove, ``0`` no opinion.
- :func:`apply_hints` forces the marked pixels (keep → 255, remove → 0) and re-solves the region
  around them with closed-form matting (Levin et al. 2008, pymatting's Laplacian and solver), so
  a few strokes bring back a dropped region *with its soft edges* instead of a hard-edged patch.

What one stroke affects (the trimap design). For every connected stroke, the pixels where the
model disagrees with it (keep: model α ≤ 240; remove: model α ≥ 10) become *unknown* when they
lie within the stroke's radius (4 × its half thickness, at least 4 % of √(H·W)) or in its
*colour region*: the pixels connected to the stroke, within 45 % of √(H·W), whose colour is at
least 4× likelier among the stroke's pixels than among the pixels the model confidently put on
the other side (smoothed 16-level RGB histograms), plus an edge margin. Solved per unknown
pixel i, with the matting Laplacian L (Levin et al. 2008):

    minimise αᵀLα + Σᵢ mᵢ(αᵢ − modelᵢ)² + Σᵢ cᵢ(αᵢ − sideᵢ)²

- the stroked pixels are fixed at 1 (keep) / 0 (remove); every pixel outside the unknown region
  is fixed at the model's value, so the re-solved patch meets the untouched mask without a seam;
- cᵢ, the colour region's pull to the stroke's side: 0.1 × (1 − distance / reach)² × trust,
  where trust falls from 1 to 0 as the share of the model's other side (outside the region)
  with the stroke's colours goes from 0 to 5 %: a colour that is everywhere on the other side
  (rocks the colour of the fur) is no evidence;
- mᵢ, the model's pull: 0.01 × its confidence |2α − 1| × (distance to the stroke / radius)²
  (capped at 1) × (1 − cᵢ / 0.1): free next to the stroke and where a full-strength claim
  replaces it, the model's word a radius away.

So a keep stroke on hair the model dropped re-opens the connected hair of that colour, edges
included, while a stroke whose colour is common in the background only re-mats its
neighbourhood. Only the bounding boxes of the unknown regions (plus a margin) are solved, all
together scaled to at most ``max_pixels`` like the matting stage (and on a photo larger than
that, the regions are found on a copy of that size), so the cost is bounded whatever the photo's
size. The constants were chosen on
alphamatting-8 with ecssd-100 held out (bench/results/hints.md).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..errors import InvalidParameter

__all__ = [
    "Box",
    "KEEP",
    "REMOVE",
    "MAX_BOXES",
    "hint_map",
    "hint_regions",
    "apply_hints",
    "force_hints",
]

Box = tuple[int, int, int, int]  # left, top, width, height, in photo pixels

KEEP, REMOVE = 1, -1
MAX_BOXES = 1000  # per list; more is not a hint, it is a mask

# a hint image's pixel is "white" (keep) when every channel is at least this, "black" (remove)
# when every channel is at most 255 - this; anything else (grey, colours, transparent) is no opinion
_WHITE = 224
_ASPECT_TOLERANCE = 0.01

# the model's confident classes, as the matting stage's default trimap thresholds
_CONFIDENT_FG = 240
_CONFIDENT_BG = 10

# region of influence of one stroke (lengths in photo pixels; "scale" is sqrt(H·W))
_RADIUS_PER_THICKNESS = 4.0  # × the stroke's half thickness (its largest inscribed radius)
_RADIUS_PER_IMAGE = 0.04  # × scale: the least radius of any stroke
_REACH_PER_IMAGE = 0.45  # × scale: the farthest a stroke's colour region may extend
_EDGE_MARGIN_PER_IMAGE = 0.01  # × scale: unknown margin around a colour region (≥ 3 px)
_COLOUR_LEVELS = 16  # colour histogram bins per channel
_COLOUR_RATIO = 4.0  # a colour is the stroke's when this much likelier there than opposite
_AMBIGUITY = 0.05  # claims fade out as this share of the other side has the stroke's colours
_COLOUR_PRIOR = 0.1  # pull of a stroke's colour region towards the stroke's side
_CLAIM_FADE = 2.0  # that pull × (1 − distance / reach) ** this
_PRIOR = 0.01  # pull of an unknown pixel to the model's value, × confidence × distance factor

_MAX_GROUPS = 32  # strokes of one side handled one by one; more are grouped by distance
_SOLVE_MARGIN = 8  # known pixels around each unknown region's bounding box
_EPSILON = 1e-7  # the closed-form Laplacian's regulariser (pymatting's default)
_CG_RTOL = 1e-5  # far below what 8 bits of alpha can show
_CG_MAXITER = 2000


# --- the hint map -------------------------------------------------------------------------------
def hint_map(
    hint: Image.Image | None,
    keep: Sequence[Sequence[int]] = (),
    remove: Sequence[Sequence[int]] = (),
    *,
    size: tuple[int, int],
) -> np.ndarray:
    """The hints as one ``int8`` array of shape (height, width): +1 keep, −1 remove, 0 none.

    ``size`` is the photo's (width, height). ``hint`` is an optional image: white pixels mean
    keep, black remove, anything else (grey, colour, transparent) no opinion; when it is not the
    photo's size it is scaled with NEAREST, which needs the same aspect ratio within 1 %
    (otherwise :class:`InvalidParameter` ``"hints"``). ``keep`` and ``remove`` are boxes
    (left, top, width, height) in photo pixels, each non-empty and inside the photo (otherwise
    :class:`InvalidParameter` ``"keep"`` / ``"remove"``). Later sources win where they overlap:
    the hint image, then the keep boxes, then the remove boxes (a remove box inside a keep box
    cuts a hole in it).
    """
    width, height = _check_size(size)
    out = np.zeros((height, width), dtype=np.int8)
    if hint is not None:
        out[...] = _image_hints(hint, width, height)
    for field, boxes, value in (("keep", keep, KEEP), ("remove", remove, REMOVE)):
        for left, top, w, h in _check_boxes(field, boxes, width, height):
            out[top : top + h, left : left + w] = value
    return out


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    width, height = (int(v) for v in size)
    if width < 1 or height < 1:
        raise ValueError(f"photo size must be positive, got {width}×{height}")
    return width, height


def _image_hints(hint: Image.Image, width: int, height: int) -> np.ndarray:
    hw, hh = hint.size
    if (hw, hh) != (width, height) and not _same_aspect(hw, hh, width, height):
        raise InvalidParameter(
            "hints",
            f"the hint image is {hw}×{hh} but the photo is {width}×{height}; a hint image "
            f"must have the photo's size or its aspect ratio (within 1 %) to be scaled onto it",
        )
    rgba = np.asarray(hint.convert("RGBA"))
    opaque = rgba[..., 3] >= 128
    low = rgba[..., :3].min(axis=-1)
    high = rgba[..., :3].max(axis=-1)
    codes = np.zeros((hh, hw), dtype=np.uint8)  # 0 none, 1 keep, 2 remove
    codes[opaque & (low >= _WHITE)] = 1
    codes[opaque & (high <= 255 - _WHITE)] = 2
    if (hw, hh) != (width, height):
        codes = np.asarray(
            Image.fromarray(codes, "L").resize((width, height), Image.Resampling.NEAREST)
        )
    out = np.zeros((height, width), dtype=np.int8)
    out[codes == 1] = KEEP
    out[codes == 2] = REMOVE
    return out


def _same_aspect(hw: int, hh: int, width: int, height: int) -> bool:
    if hw < 1 or hh < 1:
        return False
    relative = abs(hw * height - hh * width) / float(hh * width)
    # a hint drawn at a rounded scale may be a pixel off on either side
    near = abs(hw - hh * width / height) <= 1 and abs(hh - hw * height / width) <= 1
    return relative <= _ASPECT_TOLERANCE or near


def _check_boxes(field: str, boxes: Sequence[Sequence[int]], width: int, height: int) -> list[Box]:
    if boxes is None:
        return []
    if isinstance(boxes, str | bytes) or not isinstance(boxes, Sequence):
        raise InvalidParameter(field, f"{field} must be a list of (left, top, width, height) boxes")
    if len(boxes) > MAX_BOXES:
        raise InvalidParameter(field, f"{field} has {len(boxes)} boxes; at most {MAX_BOXES}")
    out: list[Box] = []
    for n, box in enumerate(boxes, 1):
        values = _box_values(field, n, box)
        left, top, w, h = values
        shown = f"{field} box {n} ({left}, {top}, {w}, {h})"
        if w < 1 or h < 1:
            raise InvalidParameter(
                field, f"{shown} is empty: its width and height must be at least 1 pixel"
            )
        if left < 0 or top < 0 or left + w > width or top + h > height:
            raise InvalidParameter(
                field,
                f"{shown} is not inside the photo ({width}×{height}): it needs left ≥ 0, "
                f"top ≥ 0, left + width ≤ {width} and top + height ≤ {height}",
            )
        out.append(values)
    return out


def _box_values(field: str, n: int, box: object) -> Box:
    bad = InvalidParameter(
        field, f"{field} box {n} must be four whole numbers (left, top, width, height), got {box!r}"
    )
    if isinstance(box, str | bytes) or not isinstance(box, Sequence) or len(box) != 4:
        raise bad
    values = []
    for v in box:
        whole = isinstance(v, int | np.integer) or (
            isinstance(v, float | np.floating) and float(v).is_integer()
        )
        if isinstance(v, bool) or not whole:
            raise bad
        values.append(int(v))
    return values[0], values[1], values[2], values[3]


# --- applying hints -----------------------------------------------------------------------------
def force_hints(alpha: np.ndarray, hints: np.ndarray) -> np.ndarray:
    """Only the marked pixels: keep → 255, remove → 0 (the naive correction, no matting)."""
    _check_pair(alpha, hints)
    out = alpha.copy()
    out[hints > 0] = 255
    out[hints < 0] = 0
    return out


def hint_regions(
    rgb: np.ndarray, alpha: np.ndarray, hints: np.ndarray, *, max_pixels: int | None = None
) -> np.ndarray:
    """The pixels :func:`apply_hints` re-solves (bool, H×W): the trimap's unknown region.

    For each connected stroke, the pixels where the model disagrees with it, within the stroke's
    radius or in its colour region (plus an edge margin). Stroked pixels are never unknown: they
    are the constraints. With ``max_pixels`` (as :func:`apply_hints` passes it) a larger photo's
    regions are found at a scale of at most that many pixels and scaled back.
    """
    _check_triple(rgb, alpha, hints)
    return _scaled_problem(rgb, alpha, hints, max_pixels)[0]


def _scaled_problem(
    rgb: np.ndarray, alpha: np.ndarray, hints: np.ndarray, max_pixels: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_problem`, found at a scale of at most ``max_pixels`` for a larger photo.

    The regions, weights and targets are coarse by nature (radii of tens of pixels, colour
    histograms), so finding them on a smaller copy costs little; the solve itself still works
    on the full-resolution crops (scaled to ``max_pixels`` in all only when they are larger).
    """
    from scipy import ndimage

    height, width = alpha.shape
    if max_pixels is None or height * width <= max_pixels:
        return _problem(rgb, alpha, hints)
    scale = math.sqrt(max_pixels / float(height * width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small_rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))
    small_alpha = np.asarray(Image.fromarray(alpha).resize(size, Image.Resampling.BOX))
    small_hints = np.zeros((size[1], size[0]), dtype=np.int8)
    keep = _resize_float(hints == KEEP, size, Image.Resampling.BOX)
    remove = _resize_float(hints == REMOVE, size, Image.Resampling.BOX)
    small_hints[(keep > 0) & (keep >= remove)] = KEEP
    small_hints[(remove > 0) & (remove > keep)] = REMOVE
    unknown, weight, target = _problem(small_rgb, small_alpha, small_hints)
    full = (width, height)
    # one small pixel more, so that no edge of a region is lost to the rounding of the scale
    unknown = ndimage.binary_dilation(unknown, structure=np.ones((3, 3), dtype=bool))
    unknown = np.asarray(Image.fromarray(unknown).resize(full, Image.Resampling.NEAREST))
    unknown = unknown & (hints == 0)
    weight = _resize_float(weight, full, Image.Resampling.BILINEAR).astype(np.float32)
    target = _resize_float(target, full, Image.Resampling.BILINEAR).astype(np.float32)
    weight[~unknown] = 0.0
    return unknown, weight, target


def _problem(
    rgb: np.ndarray, alpha: np.ndarray, hints: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unknown bool, weight float32, target float32), all H×W: the hint matting problem.

    An unknown pixel i costs ``weight[i] · (α_i − target[i])²`` besides the Laplacian's
    smoothness: the sum of the model's pull (towards the model's value) and the colour region's
    pull (towards the stroke's side), as the module's docstring says.
    """
    from scipy import ndimage

    height, width = alpha.shape
    scale = math.sqrt(height * width)
    unknown = np.zeros(alpha.shape, dtype=bool)
    factor = np.ones(alpha.shape, dtype=np.float32)  # distance factor of the model's pull
    claims = {side: np.zeros(alpha.shape, dtype=np.float32) for side in (KEEP, REMOVE)}
    for side in (KEEP, REMOVE):
        strokes = hints == side
        if not strokes.any():
            continue
        if side == KEEP:
            disagree, opposite = alpha <= _CONFIDENT_FG, alpha < _CONFIDENT_BG
        else:
            disagree, opposite = alpha >= _CONFIDENT_BG, alpha > _CONFIDENT_FG
        labels = _stroke_groups(strokes)
        for index, box in enumerate(ndimage.find_objects(labels), 1):
            if box is None:
                continue
            window, area, near, claim = _stroke_region(
                rgb, labels, index, (box[0], box[1]), scale, opposite
            )
            unknown[window] |= area & disagree[window]
            np.minimum(factor[window], near, out=factor[window])
            np.maximum(claims[side][window], claim * disagree[window], out=claims[side][window])
    unknown &= hints == 0
    model = alpha.astype(np.float32) / 255.0
    confidence = np.abs(2.0 * model - 1.0)
    # where keep and remove strokes both claim a pixel, neither claim counts
    pull_keep = np.where(claims[REMOVE] > 0, 0.0, claims[KEEP]).astype(np.float32)
    pull_remove = np.where(claims[KEEP] > 0, 0.0, claims[REMOVE]).astype(np.float32)
    # a claim replaces the model's word in proportion to its strength
    strength = np.minimum((pull_keep + pull_remove) / max(_COLOUR_PRIOR, 1e-12), 1.0)
    pull_model = _PRIOR * confidence * factor * (1.0 - strength)
    weight = pull_model + pull_keep + pull_remove
    target = np.divide(pull_model * model + pull_keep, weight, out=model.copy(), where=weight > 0)
    weight[~unknown] = 0.0
    return unknown, weight.astype(np.float32), target.astype(np.float32)


def _stroke_groups(strokes: np.ndarray) -> np.ndarray:
    """Labels of the connected strokes, near ones grouped when there are more than a few dozen.

    Each group costs one pass over its window, so a speckled hint image (a thousand dots) must
    not cost a thousand passes: strokes closer than 2, 4, 8, … px are merged until at most
    ``_MAX_GROUPS`` remain, and at worst all the strokes of one side form a single group.
    """
    from scipy import ndimage

    eight = np.ones((3, 3), dtype=bool)
    labels, count = ndimage.label(strokes, structure=eight)
    gap = 1
    while count > _MAX_GROUPS and gap <= 64:
        grown = ndimage.binary_dilation(strokes, structure=eight, iterations=gap)
        labels, count = ndimage.label(grown, structure=eight)
        labels[~strokes] = 0
        gap *= 2
    if count > _MAX_GROUPS:
        labels = strokes.astype(np.int32)
    return labels


def _stroke_region(
    rgb: np.ndarray,
    labels: np.ndarray,
    index: int,
    box: tuple[slice, slice],
    scale: float,
    opposite: np.ndarray,
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray, np.ndarray]:
    """One stroke's (window, area it may change, distance factor, colour pull), in its window."""
    from scipy import ndimage

    height, width = labels.shape
    reach = max(4, int(math.ceil(_REACH_PER_IMAGE * scale)))
    window = (
        slice(max(box[0].start - reach, 0), min(box[0].stop + reach, height)),
        slice(max(box[1].start - reach, 0), min(box[1].stop + reach, width)),
    )
    stroke = labels[window] == index
    opposite = opposite[window] & ~stroke

    thickness = float(ndimage.distance_transform_edt(np.pad(stroke, 1)).max())
    radius = min(max(_RADIUS_PER_THICKNESS * thickness, _RADIUS_PER_IMAGE * scale), float(reach))
    distance = ndimage.distance_transform_edt(~stroke)
    area = distance <= radius
    near = np.minimum((distance / radius) ** 2, 1.0).astype(np.float32)

    colours = _stroke_colours(rgb[window], stroke, opposite)
    grown, _ = ndimage.label(
        (colours & (distance <= reach)) | stroke, structure=np.ones((3, 3), dtype=bool)
    )
    touched = np.unique(grown[stroke])
    region = np.isin(grown, touched[touched > 0]) & ~stroke
    pull = np.zeros(stroke.shape, dtype=np.float32)
    if region.any():
        # how common the stroke's colours are on the model's other side away from the region
        elsewhere = opposite & ~region
        ambiguity = float((colours & elsewhere).sum()) / max(1.0, float(elsewhere.sum()))
        trust = max(0.0, 1.0 - ambiguity / _AMBIGUITY)
        margin = max(3, int(round(_EDGE_MARGIN_PER_IMAGE * scale)))
        area |= ndimage.distance_transform_edt(~region) <= margin
        fade = np.clip(1.0 - distance / reach, 0.0, 1.0) ** _CLAIM_FADE
        pull[region] = (_COLOUR_PRIOR * trust * fade[region]).astype(np.float32)
    return window, area, near, pull


def _stroke_colours(rgb: np.ndarray, stroke: np.ndarray, opposite: np.ndarray) -> np.ndarray:
    """Pixels whose colour is ``_COLOUR_RATIO``× likelier among the stroke's than ``opposite``'s.

    Both distributions are RGB histograms of ``_COLOUR_LEVELS`` levels per channel, smoothed
    over neighbouring bins, so a colour near the stroke's counts as the stroke's.
    """
    from scipy import ndimage

    levels = _COLOUR_LEVELS
    bins = (rgb.astype(np.int32) * levels) >> 8
    code = (bins[..., 0] * levels + bins[..., 1]) * levels + bins[..., 2]
    shape = (levels, levels, levels)
    hists = []
    for where in (stroke, opposite):
        counts = np.bincount(code[where], minlength=levels**3).astype(np.float64)
        smooth = ndimage.uniform_filter(counts.reshape(shape), size=3, mode="constant").ravel()
        hists.append(smooth / max(float(smooth.sum()), 1e-12))
    mine, other = hists
    claimed: np.ndarray = (mine > _COLOUR_RATIO * other + 1e-12)[code]
    return claimed


def apply_hints(
    rgb: np.ndarray,
    alpha: np.ndarray,
    hints: np.ndarray,
    *,
    max_pixels: int,
    notes: list[str] | None = None,
) -> np.ndarray:
    """The model's alpha corrected by the hints (uint8, H×W); the inputs are not modified.

    ``rgb`` is the photo (uint8, H×W×3), ``alpha`` the model's mask (uint8, H×W), ``hints`` a
    :func:`hint_map` (int8, H×W). Marked pixels are forced (keep → 255, remove → 0); the region
    each stroke affects (:func:`hint_regions`) is re-solved with closed-form matting, on the
    regions' bounding boxes, scaled so that together they hold at most ``max_pixels`` (the
    matting stage's budget, ``Settings.matting_max_pixels``). Every pixel outside those regions
    keeps the model's value exactly; with no hint the result equals ``alpha``. Should the solver
    fail, the forced pixels alone are returned and a sentence saying so is appended to ``notes``
    (when given).
    """
    _check_triple(rgb, alpha, hints)
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    forced = force_hints(alpha, hints)
    if not (hints != 0).any():
        return forced
    unknown, weight, target = _scaled_problem(rgb, alpha, hints, max_pixels)
    if not unknown.any():
        return forced
    values = forced.astype(np.float64) / 255.0
    values[unknown] = target[unknown]  # known pixels: their fixed value; unknown: their target
    out = values.copy()
    try:
        windows = _solve_windows(unknown)
        # one budget for all the windows: each is scaled by the same factor
        total = sum((w[0].stop - w[0].start) * (w[1].stop - w[1].start) for w in windows)
        scale = min(1.0, math.sqrt(max_pixels / float(total)))
        for window in windows:
            _solve_window(rgb, values, unknown, weight, hints, window, out, scale)
    except Exception as exc:  # pymatting/numba raise assorted errors; never fail the request
        if notes is not None:
            notes.append(
                f"hint matting failed ({type(exc).__name__}: {exc}); only the marked pixels "
                f"were changed"
            )
        return forced
    result = np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
    result[~unknown] = forced[~unknown]
    return result


def _solve_windows(unknown: np.ndarray) -> list[tuple[slice, slice]]:
    """Bounding boxes (+ margin) of the unknown regions, overlapping boxes merged."""
    from scipy import ndimage

    height, width = unknown.shape
    grown = ndimage.binary_dilation(unknown, iterations=2)
    labels, _ = ndimage.label(grown, structure=np.ones((3, 3), dtype=bool))
    boxes = [
        [
            max(box[0].start - _SOLVE_MARGIN, 0),
            min(box[0].stop + _SOLVE_MARGIN, height),
            max(box[1].start - _SOLVE_MARGIN, 0),
            min(box[1].stop + _SOLVE_MARGIN, width),
        ]
        for box in ndimage.find_objects(labels)
        if box is not None
    ]
    merged = True
    while merged:  # boxes are few; merge any two that overlap until none do
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]:
                    boxes[i] = [min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return [(slice(t, b), slice(left, r)) for t, b, left, r in boxes]


def _solve_window(
    rgb: np.ndarray,
    values: np.ndarray,
    unknown: np.ndarray,
    weight: np.ndarray,
    hints: np.ndarray,
    window: tuple[slice, slice],
    out: np.ndarray,
    scale: float,
) -> None:
    crop_unknown = unknown[window]
    ch, cw = crop_unknown.shape
    if scale >= 1.0:
        solved = _closed_form(
            rgb[window].astype(np.float64) / 255.0, values[window], crop_unknown, weight[window]
        )
    else:
        size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
        small_rgb = np.asarray(Image.fromarray(rgb[window]).resize(size, Image.Resampling.LANCZOS))
        small_values = _resize_float(values[window], size, Image.Resampling.BOX)
        small_weight = _resize_float(weight[window], size, Image.Resampling.BOX)
        # unknown at the small scale when any part of it is: no constraint is made up ...
        small_unknown = _resize_float(crop_unknown, size, Image.Resampling.BOX) > 0.0
        # ... except the strokes, which must survive the scaling however thin they are
        crop_hints = hints[window].astype(np.float64)
        for side in (KEEP, REMOVE):
            share = _resize_float(crop_hints == side, size, Image.Resampling.BOX)
            other = _resize_float(crop_hints == -side, size, Image.Resampling.BOX)
            stroked = (share > 0.0) & (share >= other)
            small_values[stroked] = 1.0 if side == KEEP else 0.0
            small_unknown[stroked] = False
        solved = _closed_form(
            small_rgb.astype(np.float64) / 255.0, small_values, small_unknown, small_weight
        )
        solved = _resize_float(solved, (cw, ch), Image.Resampling.BILINEAR)
    out[window][crop_unknown] = np.clip(solved, 0.0, 1.0)[crop_unknown]


def _closed_form(
    image: np.ndarray, values: np.ndarray, unknown: np.ndarray, weight: np.ndarray
) -> np.ndarray:
    """Minimise αᵀLα + Σ wᵢ(αᵢ − vᵢ)² over the unknown pixels; known pixels stay at ``values``.

    L is the closed-form matting Laplacian (pymatting, 3×3 windows); the system
    (L_UU + W) α_U = W v_U − L_UK v_K is solved by conjugate gradients with an incomplete
    Cholesky preconditioner, as pymatting's own ``estimate_alpha_cf`` does.
    """
    import scipy.sparse
    from pymatting import cf_laplacian, cg, ichol

    known = ~unknown
    laplacian = cf_laplacian(image, epsilon=_EPSILON, radius=1, is_known=known)
    flat_unknown, flat_known = unknown.ravel(), known.ravel()
    rows = laplacian[flat_unknown, :]
    w = weight.ravel()[flat_unknown].astype(np.float64)
    system = (rows[:, flat_unknown] + scipy.sparse.diags(w)).tocsc()
    x = values.ravel().astype(np.float64)
    rhs = w * x[flat_unknown] - rows[:, flat_known].dot(x[flat_known])
    # pymatting print()s its notes; they must never reach a stdout that carries images
    with contextlib.redirect_stdout(io.StringIO()):
        x[flat_unknown] = cg(system, rhs, M=ichol(system), rtol=_CG_RTOL, maxiter=_CG_MAXITER)
    return x.reshape(values.shape)


def _resize_float(arr: np.ndarray, size: tuple[int, int], method: Image.Resampling) -> np.ndarray:
    image = Image.fromarray(np.asarray(arr, dtype=np.float32), "F")
    return np.asarray(image.resize(size, method)).astype(np.float64)


def _check_pair(alpha: np.ndarray, hints: np.ndarray) -> None:
    if alpha.ndim != 2 or alpha.dtype != np.uint8:
        raise ValueError(f"alpha must be uint8 H×W, got {alpha.dtype} {alpha.shape}")
    if hints.shape != alpha.shape:
        raise ValueError(f"hints are {hints.shape} but alpha is {alpha.shape}")


def _check_triple(rgb: np.ndarray, alpha: np.ndarray, hints: np.ndarray) -> None:
    _check_pair(alpha, hints)
    if rgb.dtype != np.uint8 or rgb.shape != (*alpha.shape, 3):
        raise ValueError(f"rgb must be uint8 H×W×3 matching alpha, got {rgb.dtype} {rgb.shape}")
