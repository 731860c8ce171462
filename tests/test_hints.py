"""Hints: keep / remove marks turned into a map, then forced and re-matted from the photo.

The photos are synthetic: a red disk (which the "model" found) and a blue disk (which it
missed) on a green background, with anti-aliased edges and a little noise, so the right answer
is known to the pixel.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cleancut.engine.hints import (
    KEEP,
    REMOVE,
    apply_hints,
    force_hints,
    hint_map,
    hint_regions,
)
from cleancut.errors import InvalidParameter

W, H = 160, 120
RED = ((45, 60), 22)  # (centre x, y), radius
BLUE = ((115, 58), 18)
MAX_PIXELS = 1_000_000


def _coverage(centre: tuple[int, int], radius: float) -> np.ndarray:
    """Anti-aliased disk: 1 inside, 0 outside, a 2 px linear ramp across the edge."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    d = np.hypot(xx - centre[0], yy - centre[1])
    return np.clip(radius - d + 1.0, 0.0, 2.0) / 2.0


def _photo(extra: tuple[tuple[int, int], float, tuple[int, int, int]] | None = None):
    rng = np.random.default_rng(7)
    green = np.array([40, 150, 60], dtype=np.float64)
    img = np.broadcast_to(green, (H, W, 3)).copy()
    layers = [(RED, (200, 40, 35)), (BLUE, (40, 60, 210))]
    if extra is not None:
        layers.append(((extra[0], extra[1]), extra[2]))
    for (centre, radius), colour in layers:
        a = _coverage(centre, radius)[..., None]
        img = img * (1 - a) + np.asarray(colour, dtype=np.float64) * a
    img += rng.normal(0, 3.0, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _model_mask() -> np.ndarray:
    """What the model said: the red disk with soft edges, the blue disk missed entirely."""
    return np.rint(_coverage(*RED) * 255).astype(np.uint8)


def _disk(centre: tuple[int, int], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2


def _stroke(centre: tuple[int, int], value: int, radius: float = 2.5) -> np.ndarray:
    hints = np.zeros((H, W), dtype=np.int8)
    hints[_disk(centre, radius)] = value
    return hints


# --- hint_map -----------------------------------------------------------------------------------
def test_no_hint_is_an_empty_map():
    out = hint_map(None, [], [], size=(W, H))
    assert out.shape == (H, W) and out.dtype == np.int8
    assert not out.any()


def test_white_is_keep_black_is_remove_anything_else_no_opinion():
    hint = np.full((H, W, 4), (128, 128, 128, 255), dtype=np.uint8)
    hint[10:20, 10:20] = (255, 255, 255, 255)
    hint[30:40, 30:40] = (0, 0, 0, 255)
    hint[50:60, 50:60] = (255, 0, 0, 255)  # a colour: no opinion
    hint[70:80, 70:80] = (255, 255, 255, 0)  # transparent white: no opinion
    out = hint_map(Image.fromarray(hint, "RGBA"), size=(W, H))
    assert (out[10:20, 10:20] == KEEP).all()
    assert (out[30:40, 30:40] == REMOVE).all()
    assert int((out != 0).sum()) == 200


def test_a_smaller_hint_of_the_same_aspect_is_scaled_with_nearest():
    small = np.full((H // 4, W // 4), 128, dtype=np.uint8)
    small[5, 7] = 255
    small[20, 30] = 0
    out = hint_map(Image.fromarray(small, "L"), size=(W, H))
    assert (out[20:24, 28:32] == KEEP).all()
    assert (out[80:84, 120:124] == REMOVE).all()
    assert int((out == KEEP).sum()) == 16 and int((out == REMOVE).sum()) == 16


def test_a_hint_of_another_aspect_ratio_is_refused_with_both_sizes():
    with pytest.raises(InvalidParameter) as info:
        hint_map(Image.new("L", (100, 100), 128), size=(W, H))
    assert info.value.field == "hints"
    assert info.value.code == "invalid_hints"
    assert "100×100" in str(info.value) and f"{W}×{H}" in str(info.value)


def test_a_hint_a_pixel_off_in_aspect_is_accepted():
    hint_map(Image.new("L", (81, 60), 128), size=(W, H))  # 1.35 vs 1.333: a rounded scale
    hint_map(Image.new("L", (W + 1, H), 128), size=(W, H))  # 0.6 % off


def test_a_tiny_hint_is_not_let_through_by_rounding():
    with pytest.raises(InvalidParameter):
        hint_map(Image.new("L", (3, 1), 128), size=(1000, 10))


def test_boxes_mark_pixels_and_a_remove_box_cuts_a_hole_in_a_keep_box():
    out = hint_map(None, keep=[(10, 20, 30, 40)], remove=[(15, 25, 5, 5)], size=(W, H))
    assert (out[20:60, 10:40] != 0).all()
    assert (out[25:30, 15:20] == REMOVE).all()
    assert int((out == KEEP).sum()) == 30 * 40 - 25
    assert int((out != 0).sum()) == 30 * 40


@pytest.mark.parametrize("field", ["keep", "remove"])
@pytest.mark.parametrize(
    "box",
    [
        (0, 0, 0, 10),  # empty
        (0, 0, 10, 0),  # empty
        (-1, 0, 10, 10),  # left of the photo
        (0, -1, 10, 10),  # above it
        (W - 5, 0, 10, 10),  # past its right edge
        (0, H - 5, 10, 10),  # past its bottom
        (0, 0, 10),  # not four numbers
        (0, 0, 1.5, 10),  # not whole
        (0, 0, True, 10),  # not a number
        "0,0,10,10",  # not a box
    ],
)
def test_bad_boxes_are_refused_with_their_field(field, box):
    with pytest.raises(InvalidParameter) as info:
        hint_map(None, size=(W, H), **{field: [box]})
    assert info.value.field == field
    assert info.value.code == f"invalid_{field}"


def test_a_box_filling_the_photo_is_accepted():
    out = hint_map(None, keep=[(0, 0, W, H)], size=(W, H))
    assert (out == KEEP).all()


# --- apply_hints --------------------------------------------------------------------------------
def test_a_keep_stroke_brings_back_the_whole_missing_disk_with_soft_edges():
    rgb, mask = _photo(), _model_mask()
    hints = _stroke(BLUE[0], KEEP)
    out = apply_hints(rgb, mask, hints, max_pixels=MAX_PIXELS)

    (cx, cy), r = BLUE
    inside = _disk((cx, cy), r - 2)
    outside = ~_disk((cx, cy), r + 3) & ~_disk(*RED[:1], RED[1] + 3)
    assert inside.sum() > 15 * (hints != 0).sum()  # far more than the stroked pixels
    assert np.mean(out[inside]) > 240
    assert np.percentile(out[inside], 5) > 220
    assert np.max(out[outside]) < 40  # the background stays background
    # soft edges: along the disk's edge the matte takes intermediate values, as the photo does
    edge = _disk((cx, cy), r + 1) & ~_disk((cx, cy), r - 1)
    assert np.mean((out[edge] > 30) & (out[edge] < 225)) > 0.5
    truth = _coverage(*BLUE) * 255
    ring = _disk((cx, cy), r + 4) & ~_disk((cx, cy), r - 4)
    assert np.mean(np.abs(out[ring] - truth[ring])) < 25


def test_the_naive_forcing_alone_does_not_bring_the_disk_back():
    """The comparison the solver must beat: only the stroked pixels change."""
    rgb, mask = _photo(), _model_mask()
    hints = _stroke(BLUE[0], KEEP)
    inside = _disk(BLUE[0], BLUE[1] - 2)
    assert np.mean(force_hints(mask, hints)[inside]) < 40
    assert np.mean(apply_hints(rgb, mask, hints, max_pixels=MAX_PIXELS)[inside]) > 240


def test_a_remove_stroke_removes_a_false_region():
    # a yellow blob in the background that the "model" wrongly kept
    blob = ((120, 25), 12.0)
    rgb = _photo(extra=(blob[0], blob[1], (220, 210, 40)))
    mask = np.maximum(_model_mask(), np.rint(_coverage(*blob) * 255).astype(np.uint8))
    hints = _stroke(blob[0], REMOVE)
    out = apply_hints(rgb, mask, hints, max_pixels=MAX_PIXELS)
    assert np.mean(mask[_disk(blob[0], blob[1] - 1)]) > 240  # it was there
    assert np.max(out[_disk(blob[0], blob[1] + 2)]) < 40  # and is gone, edges included
    assert np.mean(out[_disk(RED[0], RED[1] - 2)]) > 250  # the red disk is untouched


def test_pixels_away_from_the_strokes_keep_the_models_value_exactly():
    rgb, mask = _photo(), _model_mask()
    hints = _stroke(BLUE[0], KEEP)
    out = apply_hints(rgb, mask, hints, max_pixels=MAX_PIXELS)
    changed = hint_regions(rgb, mask, hints) | (hints != 0)
    assert changed.any() and not changed.all()
    assert np.array_equal(out[~changed], mask[~changed])


def test_stroked_pixels_are_forced():
    rgb, mask = _photo(), _model_mask()
    hints = _stroke(BLUE[0], KEEP) + _stroke(RED[0], REMOVE)
    out = apply_hints(rgb, mask, hints, max_pixels=MAX_PIXELS)
    assert (out[hints == KEEP] == 255).all()
    assert (out[hints == REMOVE] == 0).all()


def test_no_hint_changes_nothing():
    rgb, mask = _photo(), _model_mask()
    hints = np.zeros((H, W), dtype=np.int8)
    out = apply_hints(rgb, mask, hints, max_pixels=MAX_PIXELS)
    assert np.array_equal(out, mask)


def test_an_all_grey_hint_image_changes_nothing():
    rgb, mask = _photo(), _model_mask()
    hints = hint_map(Image.new("L", (W, H), 128), size=(W, H))
    assert not hints.any()
    assert np.array_equal(apply_hints(rgb, mask, hints, max_pixels=MAX_PIXELS), mask)


def test_the_inputs_are_not_modified():
    rgb, mask = _photo(), _model_mask()
    hints = _stroke(BLUE[0], KEEP)
    copies = rgb.copy(), mask.copy(), hints.copy()
    apply_hints(rgb, mask, hints, max_pixels=MAX_PIXELS)
    for before, after in zip(copies, (rgb, mask, hints), strict=True):
        assert np.array_equal(before, after)


def test_a_scaled_down_solve_still_honours_a_thin_stroke():
    """Under a small max_pixels the region is solved at a lower scale; a 1 px stroke survives."""
    rgb, mask = _photo(), _model_mask()
    hints = np.zeros((H, W), dtype=np.int8)
    hints[BLUE[0][1], BLUE[0][0] - 6 : BLUE[0][0] + 6] = KEEP
    out = apply_hints(rgb, mask, hints, max_pixels=1_500)
    assert np.mean(out[_disk(BLUE[0], BLUE[1] - 3)]) > 200
    assert (out[hints == KEEP] == 255).all()


def test_a_stroke_whose_colour_is_all_over_the_background_stays_local():
    """A keep stroke on the green background: its colour is no evidence, so no flood."""
    rgb, mask = _photo(), _model_mask()
    hints = _stroke((80, 105), KEEP)
    out = apply_hints(rgb, mask, hints, max_pixels=MAX_PIXELS)
    far = ~_disk((80, 105), 12) & ~_disk(*RED[:1], RED[1] + 3)
    assert np.mean(out[far] > 128) < 0.01


def test_mismatched_arrays_are_a_programming_error():
    rgb, mask = _photo(), _model_mask()
    with pytest.raises(ValueError):
        apply_hints(rgb, mask, np.zeros((H, W + 1), np.int8), max_pixels=MAX_PIXELS)
    with pytest.raises(ValueError):
        apply_hints(rgb[..., :2], mask, np.zeros((H, W), np.int8), max_pixels=MAX_PIXELS)


def test_many_scattered_dots_act_as_strokes():
    """A speckled hint (many tiny strokes, grouped internally) still brings the disk back."""
    rgb, mask = _photo(), _model_mask()
    rng = np.random.default_rng(3)
    hints = np.zeros((H, W), dtype=np.int8)
    inside = np.argwhere(_disk(BLUE[0], BLUE[1] - 4))
    for y, x in inside[rng.choice(len(inside), 80, replace=False)]:
        hints[y, x] = KEEP
    out = apply_hints(rgb, mask, hints, max_pixels=MAX_PIXELS)
    assert np.mean(out[_disk(BLUE[0], BLUE[1] - 2)]) > 235
    assert (out[hints == KEEP] == 255).all()
