"""Refinements: the confidence score of a prediction and edge colour decontamination.

Decontamination is checked on synthetic photos whose true foreground is known: I = α·F + (1−α)·B
with smooth or textured F and B and a soft alpha (a disk with a wide soft edge, hair-like stripes).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from cleancut.engine import refine
from cleancut.engine.pipeline import preprocess
from cleancut.engine.refine import confidence, decontaminate, doubt

from .conftest import GOLDEN

# --- confidence ----------------------------------------------------------------------------------


def _disk_map(size: int = 320, edge: float = 1.0, radius: float = 90.0) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    d = np.hypot(yy - size / 2, xx - size / 2) - radius
    return (1.0 / (1.0 + np.exp(d / edge))).astype(np.float32)


def test_a_decisive_map_is_confident() -> None:
    assert confidence(_disk_map(edge=0.5)) > 0.95


def test_doubt_on_the_outline_itself_does_not_count() -> None:
    # a one-pixel anti-aliased edge is what every good mask has
    assert doubt(_disk_map(edge=0.5)) < 0.005


def test_grey_areas_away_from_the_outline_lower_the_confidence() -> None:
    sharp = _disk_map()
    fogged = sharp.copy()
    fogged[20:80, 20:300] = 0.45  # a wide band the model could not decide
    half_grey = sharp.copy()
    half_grey[20:80, 20:300] = 0.2
    assert confidence(fogged) < confidence(half_grey) < confidence(sharp)
    assert confidence(fogged) < 0.5


def test_a_wide_soft_edge_is_less_sure_than_a_sharp_one() -> None:
    assert (
        confidence(_disk_map(edge=12.0))
        < confidence(_disk_map(edge=3.0))
        < confidence(_disk_map(edge=1.0))
    )


def test_confidence_reads_the_raw_map_as_to_mask_does() -> None:
    raw = _disk_map(edge=4.0)
    expected = confidence(raw)
    assert confidence(raw * 3.0 + 1.5) == pytest.approx(expected, abs=1e-6)  # min-max normalised
    assert confidence(raw[np.newaxis, np.newaxis]) == pytest.approx(expected, abs=1e-9)


def test_a_flat_map_has_no_confidence() -> None:
    assert confidence(np.full((320, 320), 0.7, dtype=np.float32)) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_confidence_is_between_0_and_1(seed: int) -> None:
    rng = np.random.default_rng(seed)
    raw = ndimage.gaussian_filter(rng.normal(size=(320, 320)), 1 + 4 * seed).astype(np.float32)
    assert 0.0 <= confidence(raw) <= 1.0


def test_a_map_of_another_size_scales_the_outline_strip() -> None:
    small = confidence(_disk_map(size=320, edge=1.0, radius=90))
    large = confidence(_disk_map(size=1024, edge=3.2, radius=288))  # the same picture, 3.2×
    assert large == pytest.approx(small, abs=0.02)


def test_confidence_rejects_what_is_not_a_map() -> None:
    with pytest.raises(ValueError):
        confidence(np.zeros(10, dtype=np.float32))


@pytest.mark.parametrize("model", ["u2net", "u2netp"])
def test_real_models_are_sure_of_a_clear_subject_and_not_of_noise(engine, model: str) -> None:
    session = engine.session(model)

    def score(image: Image.Image) -> float:
        return confidence(session.run(preprocess(image, session.spec)))

    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (320, 320, 3), dtype=np.uint8), "RGB")
    for name in ("coffee.jpg", "logo.png"):
        with Image.open(GOLDEN / "inputs" / name) as im:
            assert score(im.convert("RGB")) > 0.9, name
    assert score(noise) < 0.2


# --- decontamination -----------------------------------------------------------------------------


def _smooth_field(
    shape: tuple[int, int], seed: int, low: int, high: int, scale: float
) -> np.ndarray:
    """A colour field: random values on a grid of ``scale``-pixel cells, bicubic-interpolated and
    stretched to low..high per channel (a texture for a small scale, a smooth field for a large)."""
    h, w = shape
    rng = np.random.default_rng(seed)
    coarse = rng.random((max(2, round(h / scale)), max(2, round(w / scale)), 3), dtype=np.float32)
    field = np.stack(
        [
            np.asarray(Image.fromarray(coarse[..., c], "F").resize((w, h), Image.BICUBIC))
            for c in range(3)
        ],
        axis=-1,
    )
    field -= field.min(axis=(0, 1))
    field /= field.max(axis=(0, 1))
    return (low + (high - low) * field).astype(np.float32)


def _soft_disk(shape: tuple[int, int], soft: float) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(yy - h / 2, xx - w / 2) - min(h, w) * 0.3
    return np.clip(0.5 - d / soft, 0.0, 1.0).astype(np.float32)


def _hair(shape: tuple[int, int]) -> np.ndarray:
    """A disk with thin strands of partial alpha standing out of its upper half."""
    h, w = shape
    alpha = _soft_disk(shape, soft=3.0)
    yy, xx = np.mgrid[0:h, 0:w]
    angle = np.arctan2(yy - h / 2, xx - w / 2)
    r = np.hypot(yy - h / 2, xx - w / 2) / (min(h, w) * 0.3)
    strands = 0.5 + 0.5 * np.cos(angle * 90)  # ~29 strands on the upper half
    reach = np.clip(1.35 - r, 0.0, 1.0) / 0.35  # fade out over 35 % of the radius
    hair = np.where((yy < h / 2) & (r > 1.0), strands**3 * reach, 0.0)
    return np.maximum(alpha, hair).astype(np.float32)


def _photo(alpha: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    alpha8 = np.rint(alpha * 255).astype(np.uint8)
    a = alpha8.astype(np.float32)[..., None] / 255
    rgb = np.rint(a * fg + (1 - a) * bg).astype(np.uint8)
    return rgb, alpha8


def _edge_error(colours: np.ndarray, fg: np.ndarray, alpha8: np.ndarray) -> float:
    soft = (alpha8 > 0) & (alpha8 < 255)
    return float(np.abs(colours.astype(np.float32) - fg)[soft].mean())


SCENE_MAKERS = {
    # warm smooth foreground over a cold smooth background, wide soft edge
    "soft disk, smooth fields": lambda shape: (
        _soft_disk(shape, soft=shape[0] / 12),
        _smooth_field(shape, 1, 150, 255, shape[0] / 8) * np.float32([1.0, 0.6, 0.3]),
        _smooth_field(shape, 2, 0, 200, shape[0] / 8) * np.float32([0.2, 0.6, 1.0]),
    ),
    # textured foreground and background, the soft edge narrower
    "soft disk, textures": lambda shape: (
        _soft_disk(shape, soft=shape[0] / 30),
        _smooth_field(shape, 3, 120, 255, 3.0) * np.float32([1.0, 0.8, 0.5]),
        _smooth_field(shape, 4, 0, 255, 2.0) * np.float32([0.3, 1.0, 0.4]),
    ),
    # hair-like strands of partial alpha over a textured, contrasting background
    "hair strands": lambda shape: (
        _hair(shape),
        _smooth_field(shape, 5, 60, 140, shape[0] / 10) * np.float32([1.0, 0.7, 0.4]),
        _smooth_field(shape, 6, 150, 255, 4.0),
    ),
}


@functools.cache
def _scene(name: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(alpha, foreground, background) of a scene, made once per test session."""
    alpha, fg, bg = SCENE_MAKERS[name](shape)
    return alpha, fg, bg


SCENES = list(SCENE_MAKERS)


@pytest.fixture(scope="module", params=[(240, 320), (1200, 1600)], ids=["small", "grid"])
def shape(request) -> tuple[int, int]:
    # "grid" is large enough for the local means to be taken on a grid of cells
    assert (refine.working_scale(*request.param) > 1) == (request.param[0] > 600)
    return request.param


@pytest.mark.parametrize("scene", SCENES)
def test_edge_colours_come_closer_to_the_true_foreground(shape, scene: str) -> None:
    alpha, fg, bg = _scene(scene, shape)
    rgb, alpha8 = _photo(alpha, fg, bg)
    out = decontaminate(rgb, alpha8)
    before = _edge_error(rgb, fg, alpha8)
    after = _edge_error(out, fg, alpha8)
    assert after < before
    assert after < 0.5 * before, f"edge error {before:.1f} -> {after:.1f}"


@pytest.mark.parametrize("scene", SCENES)
def test_colours_where_alpha_is_0_or_255_are_kept_exactly(shape, scene: str) -> None:
    alpha, fg, bg = _scene(scene, shape)
    rgb, alpha8 = _photo(alpha, fg, bg)
    out = decontaminate(rgb, alpha8)
    hard = (alpha8 == 0) | (alpha8 == 255)
    assert hard.any() and (~hard).any()
    np.testing.assert_array_equal(out[hard], rgb[hard])
    np.testing.assert_array_equal(out[alpha8 >= refine.SOLID], rgb[alpha8 >= refine.SOLID])


def test_the_inside_of_a_u2net_mask_is_not_an_edge() -> None:
    # u2net's truncated output puts the inside of an object at 243-254
    alpha, fg, bg = _scene("soft disk, smooth fields", (240, 320))
    rgb, alpha8 = _photo(alpha, fg, bg)
    inside = alpha8 == 255
    alpha8[inside] = np.random.default_rng(0).integers(243, 255, int(inside.sum()), dtype=np.uint8)
    out = decontaminate(rgb, alpha8)
    np.testing.assert_array_equal(out[inside], rgb[inside])


def test_a_hard_mask_changes_nothing() -> None:
    alpha, fg, bg = _scene("soft disk, textures", (240, 320))
    rgb, _ = _photo(alpha, fg, bg)
    hard = np.where(alpha >= 0.5, 255, 0).astype(np.uint8)
    np.testing.assert_array_equal(decontaminate(rgb, hard), rgb)


def test_the_input_is_not_modified_and_the_output_is_new() -> None:
    alpha, fg, bg = _scene("hair strands", (240, 320))
    rgb, alpha8 = _photo(alpha, fg, bg)
    rgb_before, alpha_before = rgb.copy(), alpha8.copy()
    out = decontaminate(rgb, alpha8)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    assert not np.shares_memory(out, rgb)
    np.testing.assert_array_equal(rgb, rgb_before)
    np.testing.assert_array_equal(alpha8, alpha_before)


def test_threads_do_not_change_the_result(shape) -> None:
    alpha, fg, bg = _scene("hair strands", shape)
    rgb, alpha8 = _photo(alpha, fg, bg)
    one = decontaminate(rgb, alpha8, threads=1)
    np.testing.assert_array_equal(decontaminate(rgb, alpha8, threads=2), one)
    np.testing.assert_array_equal(decontaminate(rgb, alpha8, threads=7), one)


def test_an_image_of_odd_size_and_one_pixel_is_handled() -> None:
    alpha, fg, bg = _scene("soft disk, smooth fields", (1001, 1333))
    rgb, alpha8 = _photo(alpha, fg, bg)
    assert refine.working_scale(1001, 1333) > 1
    out = decontaminate(rgb, alpha8)
    assert _edge_error(out, fg, alpha8) < 0.5 * _edge_error(rgb, fg, alpha8)
    tiny = decontaminate(np.full((1, 1, 3), 7, np.uint8), np.full((1, 1), 128, np.uint8))
    assert tiny.shape == (1, 1, 3)


@pytest.mark.parametrize(
    "rgb, alpha",
    [
        (np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8)),
        (np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4), np.uint8)),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), np.uint8)),
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.float32)),
    ],
)
def test_decontaminate_rejects_wrong_arrays(rgb: np.ndarray, alpha: np.ndarray) -> None:
    with pytest.raises(ValueError):
        decontaminate(rgb, alpha)


def test_in_place_gives_the_same_colours_in_the_callers_array() -> None:
    rng = np.random.default_rng(11)
    rgb = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:90, 0:120]
    alpha = np.clip((30 - np.hypot(yy - 45, xx - 60)) * 20 + 128, 0, 255).astype(np.uint8)
    copied = decontaminate(rgb, alpha)
    own = rgb.copy()
    assert decontaminate(own, alpha, in_place=True) is own
    assert np.array_equal(own, copied) and not np.array_equal(rgb, copied)
