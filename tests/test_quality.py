"""The cut beyond the reference: fused models, clean edge colours, a confidence score, hints."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import cleancut
from cleancut.config import Settings
from cleancut.engine import Engine, Options
from cleancut.errors import InvalidParameter, UnknownModel

from .imagetools import alpha, encode, input_bytes, open_image

PHOTO = "chelsea.jpg"


def _mask(settings: Settings, model: str, **options: object) -> np.ndarray:
    return alpha(open_image(cleancut.remove(input_bytes(PHOTO), model=model, settings=settings,
                                            only_mask=True, **options)))


# --- fused models --------------------------------------------------------------------------------
def test_a_fused_model_runs_each_model_once_and_averages_their_masks(
    settings: Settings, model_dir
) -> None:
    a, b = _mask(settings, "u2net"), _mask(settings, "u2netp")
    fused = _mask(settings, "u2net+u2netp", fusion="mean")
    mean = (a.astype(np.float64) + b) / 2
    assert np.abs(fused - mean).mean() < 1.0  # 8-bit rounding before and after the upscale
    result = cleancut.process(input_bytes(PHOTO), model="u2net+u2netp", settings=settings)
    assert result.model == "u2net+u2netp"


def test_fusion_methods_differ_as_their_rows_say(settings: Settings, model_dir) -> None:
    a, b = _mask(settings, "u2net"), _mask(settings, "u2netp")
    union = _mask(settings, "u2net+u2netp", fusion="max")
    # the union at the models' resolution, then one LANCZOS upscale (which rings a little)
    assert (union.astype(int) < np.maximum(a, b).astype(int) - 3).mean() < 0.01
    assert union.mean() > _mask(settings, "u2net+u2netp", fusion="mean").mean()
    surer = _mask(settings, "u2net+u2netp")  # the default: per pixel, the surer model
    far = np.where(np.abs(a.astype(int) - 128) >= np.abs(b.astype(int) - 128), a, b)
    assert np.abs(surer.astype(int) - far).mean() < 2.0


def test_best_is_a_preset_fusion(settings: Settings, model_dir) -> None:
    result = cleancut.process(input_bytes(PHOTO), model="best", settings=settings)
    assert result.model == "u2netp+isnet" and result.confidence is not None


@pytest.mark.parametrize(("model", "error"), [
    ("u2net+u2net", InvalidParameter), ("u2net+", InvalidParameter),
    ("u2net+nosuchmodel", UnknownModel),
])
def test_a_bad_fused_name_is_a_clear_error(model: str, error: type, settings: Settings,
                                           model_dir) -> None:
    with pytest.raises(error):
        cleancut.remove(input_bytes(PHOTO), model=model, settings=settings)


# --- clean edge colours --------------------------------------------------------------------------
def test_decontamination_moves_edge_colours_away_from_the_background(
    settings: Settings, model_dir
) -> None:
    # a red subject on a green lawn: the soft edge of the plain cutout carries green
    rng = np.random.default_rng(3)
    h, w = 240, 320
    yy, xx = np.mgrid[0:h, 0:w]
    subject = np.hypot(yy - h / 2, xx - w / 2) < 70
    photo = np.where(subject[..., None], [200, 40, 40], [40, 160, 40]).astype(np.float64)
    photo += rng.normal(0, 4, photo.shape)
    data = encode(Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)))
    plain = np.asarray(open_image(cleancut.remove(data, model="u2netp", settings=settings,
                                                  decontaminate=False)), dtype=np.float64)
    clean = np.asarray(open_image(cleancut.remove(data, model="u2netp", settings=settings)),
                       dtype=np.float64)
    edge = (plain[..., 3] > 10) & (plain[..., 3] < 230)
    assert edge.sum() > 50
    assert clean[..., 1][edge].mean() < plain[..., 1][edge].mean() - 5  # less green
    assert np.array_equal(plain[..., 3], clean[..., 3])


# --- confidence ----------------------------------------------------------------------------------
def test_every_result_has_a_confidence_in_the_unit_interval(settings: Settings,
                                                            model_dir) -> None:
    sure = cleancut.process(input_bytes(PHOTO), model="u2netp", settings=settings).confidence
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    unsure = cleancut.process(encode(Image.fromarray(noise)), model="u2netp",
                              settings=settings).confidence
    assert sure is not None and unsure is not None
    assert 0.0 <= unsure < sure <= 1.0


# --- hints ---------------------------------------------------------------------------------------
def _two_disks() -> tuple[bytes, np.ndarray]:
    """A photo with a big subject the model finds and a small one it tends to drop."""
    h, w = 240, 320
    yy, xx = np.mgrid[0:h, 0:w]
    big = np.hypot(yy - 120, xx - 110) < 70
    small = np.hypot(yy - 60, xx - 270) < 22
    photo = np.full((h, w, 3), (235, 235, 235), dtype=np.uint8)
    photo[big] = (200, 30, 30)
    photo[small] = (30, 30, 200)
    return encode(Image.fromarray(photo)), small


def test_a_keep_box_brings_back_a_region_with_its_edges(settings: Settings, model_dir) -> None:
    data, small = _two_disks()
    before = alpha(open_image(cleancut.remove(data, model="u2netp", settings=settings,
                                              only_mask=True)))
    after = alpha(open_image(cleancut.remove(data, model="u2netp", settings=settings,
                                             only_mask=True, keep=[(265, 55, 10, 10)])))
    assert after[small].mean() > max(200, before[small].mean() + 30)
    soft = (after > 10) & (after < 245)
    assert soft.any()  # re-solved edges, not a hard-edged patch


def test_a_hint_image_removes_what_it_marks_black(settings: Settings, model_dir) -> None:
    data = input_bytes(PHOTO)
    mask = _mask(settings, "u2netp")
    h, w = mask.shape
    hint = np.full((h, w, 4), 0, dtype=np.uint8)  # transparent: no opinion
    ys, xs = np.nonzero(mask > 200)
    cy, cx = int(ys.mean()), int(xs.mean())
    hint[cy - 5:cy + 5, cx - 5:cx + 5] = (0, 0, 0, 255)
    out = alpha(open_image(cleancut.remove(data, model="u2netp", settings=settings,
                                           only_mask=True, hints=Image.fromarray(hint))))
    assert out[cy - 5:cy + 5, cx - 5:cx + 5].max() == 0
    far = np.ones_like(mask, dtype=bool)
    far[max(0, cy - 120):cy + 120, max(0, cx - 120):cx + 120] = False
    assert np.array_equal(out[far], mask[far])  # away from the stroke nothing changes


@pytest.mark.parametrize(("hints", "keep", "field"), [
    (Image.new("L", (10, 90)), (), "hints"),  # another aspect ratio
    (b"not an image", (), "hints"),
    (None, [(0, 0, 0, 5)], "keep"),  # empty box
    (None, [(440, 0, 50, 50)], "keep"),  # outside the photo
])
def test_bad_hints_are_clear_errors(hints: object, keep: object, field: str,
                                    settings: Settings, model_dir) -> None:
    with pytest.raises(InvalidParameter) as info:
        cleancut.remove(input_bytes(PHOTO), model="u2netp", settings=settings, hints=hints,
                        keep=keep)
    assert info.value.field == field


def test_no_hint_and_no_box_runs_no_hint_stage(engine: Engine) -> None:
    result = engine.process(input_bytes(PHOTO), Options.create(model="u2netp"))
    assert result.confidence is not None and "hints" not in result.timings_ms
